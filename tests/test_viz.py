"""tinyseq.viz: the DOT text of known graphs (nodes, edges, clusters, labels), parsed back by
pydot, and rendering with Graphviz's dot where it is installed."""

import shutil

import numpy as np
import pydot
import pytest

from tinyseq import Tensor, nn, viz

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydot's use of older pyparsing names


def parse(text):
    (graph,) = pydot.graph_from_dot_data(text)
    clusters = graph.get_subgraph_list()
    nodes = [n for g in [graph, *clusters] for n in g.get_node_list() if n.get_name() not in ("node", "graph")]
    return graph, nodes, graph.get_edge_list(), clusters


def labels(nodes):
    return [n.get_label().strip('"') for n in nodes]


def test_a_small_expression_has_one_node_per_op_and_per_leaf():
    a, b, c = (Tensor(np.ones((2, 3)), requires_grad=True) for _ in range(3))
    constant = np.full((2, 3), 2.0)  # needs no gradient: left out
    loss = ((a * b + c) * constant).sum()
    _, nodes, edges, clusters = parse(viz.to_dot(loss, params={"a": a, "b": b}))
    assert len(nodes) == 7 and len(edges) == 6 and not clusters  # a, b, c; Mul, Add, Mul, Sum
    assert sorted(labels(nodes)) == sorted(["a\\n(2, 3)", "b\\n(2, 3)", "leaf\\n(2, 3)", "Mul\\n(2, 3)",
                                            "Add\\n(2, 3)", "Mul\\n(2, 3)", "Sum\\n()"])


def test_a_three_step_rnn_draws_each_step_in_its_own_cluster():
    class Model(nn.Module):
        def __init__(self):
            self.rnn = nn.RNN(2, 3, backend="graph")
            self.head = nn.Linear(3, 1)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[-1])

    model = Model()
    loss = model(np.ones((3, 4, 2), dtype=np.float32)).sum()
    _, nodes, edges, clusters = parse(viz.to_dot(loss, params=model))
    assert [c.get_label().strip('"') for c in clusters] == ["RNN_l0 t=0", "RNN_l0 t=1", "RNN_l0 t=2"]
    steps = [sorted(n.get_label().split("\\n")[0].strip('"') for n in c.get_node_list()) for c in clusters]
    # one step: step t of x's projection, h W_hh^T + b_hh (one Affine node), the sum, tanh; the
    # first step also made what serves every step (nn.functional.linear inside unroll): W_ih^T,
    # W_hh^T, x W_ih^T + b_ih
    assert steps[1] == steps[2] == ["Add", "Affine", "GetItem", "Tanh"]
    assert steps[0] == sorted(steps[1] + ["Permute", "Permute", "Affine"])
    # 6 parameters; 3 steps of 4 ops and the 3 made once; after the loop stack, out[-1], the
    # head's W^T, its matmul and + bias (outside unroll: two nodes), and the sum.
    assert len(nodes) == 6 + 3 * 4 + 3 + 6
    # An edge for each input that needs a gradient: made once 1 + 1 + 2 (x needs none); step 0
    # has 1 + 2 (h0 needs none) + 2 + 1, steps 1 and 2 have 7 each; then 3 + 1 + (1 + 2 + 2) + 1.
    assert len(edges) == 4 + 6 + 7 + 7 + 3 + 1 + 5 + 1
    names = labels(nodes)
    assert "rnn.weight_hh_l0\\n(3, 3)" in names and "head.weight\\n(1, 3)" in names


def test_a_fused_layer_is_one_node():
    layer = nn.LSTM(2, 3, backend="numba")
    out, _ = layer(np.ones((5, 2, 2), dtype=np.float32))
    _, nodes, _, clusters = parse(viz.to_dot(out.sum(), params=layer))
    fused = [n for n in labels(nodes) if n.startswith("CompiledRecurrence")]
    assert fused == ["CompiledRecurrence\\nLSTMStep, T=5\\n(7, 2, 3)"]  # out, h_n and c_n packed
    assert not clusters


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="requires grad"):
        viz.to_dot(Tensor(np.ones(3)))
    t = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match="params must be a Module or a dict"):
        viz.to_dot(t * 2, params=[t])
    with pytest.raises(ValueError, match="must end in one of"):
        viz.render(t * 2, "graph.jpg")


def test_render_without_dot_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    t = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        viz.render(t * 2, tmp_path / "graph.svg")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (.ci/run installs it)")
def test_render_writes_an_svg_and_a_png(tmp_path):
    layer = nn.GRU(2, 3, backend="graph")
    out, _ = layer(np.ones((3, 1, 2), dtype=np.float32))
    svg = viz.render(out.sum(), tmp_path / "gru.svg", params=layer)
    assert "<svg" in open(svg).read() and "GRU_l0 t=2" in open(svg).read()
    png = viz.render(out.sum(), tmp_path / "gru.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru.png", "gru.svg"]  # no temporaries left
