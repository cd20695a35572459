"""The built-in cells' committed kernels (tinyseq_jit/generated): what the compiler writes now,
byte for byte, and what the layers run."""

import numpy as np
import pytest

from tinyseq import nn
from tinyseq.nn import rnn

from tinyseq_jit import generated


@pytest.mark.parametrize("device", ["numba", "cuda"])
@pytest.mark.parametrize("name", sorted(generated.FORMS))
def test_each_committed_module_is_what_the_compiler_writes_from_its_step(name, device):
    with open(generated.path(name, device), encoding="utf-8") as f:
        committed = f.read()
    assert committed == generated.source(name, device), (
        f"tinyseq_jit/generated/{name}{generated.DEVICES[device]}.py is stale: run python -m tinyseq_jit.generated")


def test_every_form_of_the_built_in_layers_is_committed_or_generated():
    """The default forms load the committed files; another form (no bias, a projection, float64)
    gets a module generated into the kernel cache, one per form whatever the sizes."""
    committed = {generated.path(n, "numba") for n in generated.FORMS}
    kinds = [(nn.LSTM, {}, True), (nn.GRU, {"reset_after": False}, True), (nn.RNN, {"nonlinearity": "relu"}, True),
             (nn.LSTM, {"bias": False}, False), (nn.LSTM, {"proj_size": 2}, False),
             (nn.GRU, {"dtype": np.float64}, False)]
    for layer_class, options, is_committed in kinds:
        paths = set()
        for inputs, hidden in ((3, 4), (5, 7)):
            layer = layer_class(inputs, hidden, backend="numba", **options)
            kernel = rnn._kernel(layer.step(), "numba")
            paths.add(kernel.path)
        assert len(paths) == 1, (layer_class, options)  # one module for every size
        assert (paths.pop() in committed) == is_committed, (layer_class, options)


def test_a_committed_module_names_what_the_step_names():
    with open(generated.path("lstm", "numba"), encoding="utf-8") as f:
        text = f.read()
    for line in ("f = sigmoid(f_in)", "c_1 = t6 + t7", "for j in range(H):", "I, H = x.shape[2], states[0].shape[1]"):
        assert any(line in row for row in text.splitlines()), line


def test_finding_and_making_a_forms_kernels_draws_no_random_numbers():
    """The steps built to trace a form (and to match it with a committed file) are made
    without moving the library's random stream: a seeded run draws the same numbers whether
    or not a layer compiled first."""
    import tinyseq as ts
    from tinyseq_jit import compiler

    generated_form = nn.GRU(3, 4, bias=False, backend="numba", dtype=np.float64).step()
    committed_form = nn.LSTM(3, 4).step()
    rnn._kernels.clear()
    compiler.clear_cache()
    ts.manual_seed(5)
    rnn._kernel(generated_form, "numba")
    rnn._kernel(committed_form, "numba")
    after = ts.rand(4).data
    ts.manual_seed(5)
    np.testing.assert_array_equal(ts.rand(4).data, after)


def _backward_text(name):
    with open(generated.path(name, "numba"), encoding="utf-8") as f:
        text = f.read()
    return text[text.index("def _backward"):text.index("\ndef forward")]


def test_the_lstm_backward_writes_each_gates_gradient_where_it_is_made_in_two_loops():
    """What made the LSTM's backward as fast as the hand-written one (RESULTS, issue 24): a
    gate's gradient is stored into d_gates as it is made (not kept in d_o_in and copied at the
    loop's end), the loop over the gates is cut where nothing scalar crosses (o's part, then
    c's), and x_w and h_w, which get the same gradient, share one array."""
    text = _backward_text("lstm")
    assert "d_gates[b, 3 * H + j] = d_o * o[t, b, j] * (1.0 - o[t, b, j])  # d_o_in" in text
    assert "d_o_in" not in text.replace("# d_o_in", "")
    between = text[text.index("# d_o_in"):text.index("# d_g_in")]
    assert "for j in range(H):" in between  # c's part is a loop of its own
    assert "d_h_w" not in text and "product_into(d_x_w[t]" in text


def test_a_loop_is_cut_only_where_no_scalar_crosses():
    from tinyseq_jit.compiler.cpu import _split

    pieces = [("a", ["# line 1: a", "d_a = d_y[b, j] * 2.0"], {"d_a"}),
              ("b", ["d_x[b, j] += d_a"], set()),  # reads d_a: stays with a
              ("c", ["# line 2: c", "d_u[b, H + j] = d_z[b, j]"], set()),
              ("d", [], set()),  # no lines: it joins the next loop
              ("e", ["d_v = d_z[b, j]", "d_w[b, j] = d_v"], {"d_v"})]
    loops = _split(pieces)
    assert [[name for name, _, _ in loop] for loop in loops] == [["a", "b"], ["c"], ["d", "e"]]
    assert _split(pieces[:2]) == [pieces[:2]]
