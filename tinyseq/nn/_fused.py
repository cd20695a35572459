"""A layer-direction's fused kernels as one node of the autodiff graph.

The kernels ``tinyseq_jit.compiler`` generates from a cell's step run a whole
layer-direction in two calls: a forward over all T steps and its BPTT backward.
``CompiledRecurrence`` wraps such a pair as a single ``Function``, so ``loss.backward()`` and
mixing with other ops work unchanged; ``run_compiled`` is what a layer calls (through
``nn.recurrent.run_step``), for the built-in cells' steps and yours alike.
"""

import numpy as np

from ..tensor import Function


class CompiledRecurrence(Function):
    """One ``Recurrent`` layer-direction run by the kernels ``tinyseq_jit.compiler`` generated
    for its cell: the fused forward, and its BPTT as this node's backward.

    Inputs: x (T, B, I), the initial states (B, n) each, then the weights (``names``:
    parameters, or values the engine made from them). The kernels read those, the views
    ``views`` maps to (the name of the input they view, the ops that make them: slices and
    transposes of it, taken here as NumPy views; their gradients are added back into the
    input's) and the constant arrays ``constants`` maps to. The output packs out and the final
    states along the first axis, (T + S, B, widest), as ``FusedRecurrence``'s.
    """

    def forward(self, x, *arrays, kernel, states, names, views, constants, lengths, reverse, grad_norms=None):
        module = kernel.module
        initial = tuple(np.ascontiguousarray(a) for a in arrays[:states])
        given = dict(zip(names, arrays[states:]))
        weights = dict(given, **constants)
        weights.update((name, _view(given[of], ops)) for name, (of, ops) in views.items())
        out, finals, saved = module.forward(np.ascontiguousarray(x), initial, weights, lengths, reverse)
        widths = [out.shape[2]] + [f.shape[1] for f in finals]
        shapes = {of: given[of].shape for of, _ in views.values()}
        self.save(saved, module, names, views, shapes, x.shape[0], widths, grad_norms)
        self.label = f"{type(self).__name__}\n{kernel.program.cell_class.__name__}, T={x.shape[0]}"  # for tinyseq.viz
        packed = np.zeros((x.shape[0] + len(finals), x.shape[1], max(widths)), dtype=out.dtype)
        for rows, array in zip(_packing(x.shape[0], widths), [out, *finals]):
            packed[rows] = array
        return packed

    def backward(self, g):
        saved, module, names, views, shapes, steps, widths, grad_norms = self.saved
        d_out, *d_finals = (g[rows] for rows in _packing(steps, widths))
        dx, d_initial, grads = module.backward(saved, d_out, d_finals, need_dx=self.needs_input_grad[0],
                                               grad_norms=grad_norms)
        summed = set()  # the inputs whose gradient is an array of this node's own
        for name, (of, ops) in views.items():
            if of not in summed:
                grads[of] = np.zeros(shapes[of], grads[name].dtype) if of not in grads else np.array(grads[of])
                summed.add(of)
            _view(grads[of], ops)[...] += grads[name]
        return (dx, *d_initial, *(grads[name] for name in names))


def run_compiled(kernel, x, states, params, lengths, reverse, grad_norms=None):
    """Run one ``Recurrent`` layer-direction on a compiled ``kernel``: x (T, B, I) and the
    ``states`` (a tuple of (B, n) Tensors), ``params`` the cell's parameters by name,
    ``lengths`` None or (B,) ints, ``grad_norms`` None or the (S, T, B) telemetry array.
    Returns (out (T, B, n), the tuple of final states)."""
    call = _call_of(kernel)
    values = kernel.program.weight_values(params, call.made) if call.made else params
    steps, batch = x.shape[:2]
    lengths = np.full(batch, steps, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    packed = CompiledRecurrence.apply(x, *states, *(values[n] for n in call.names), kernel=kernel, states=len(states),
                                      names=call.names, views=call.views, constants=call.constants, lengths=lengths,
                                      reverse=reverse, grad_norms=grad_norms)
    widths = [call.y_width or 1] + [s.shape[1] for s in states]
    out, *finals = (packed[rows] for rows in _packing(steps, widths))
    return (out if call.y_width else out.reshape(steps, batch)), tuple(finals)


class _Call:
    """What ``run_compiled`` works out once per kernel: the weights the node takes as inputs
    (``names``), those of them the engine makes from parameters (``made``), the views of
    parameters the node takes itself (``views``: name -> (parameter, the slices and transposes
    that make it), as ``weight_hh[:2 * H].T``), the constant arrays the kernels read besides
    (``constants``: by name, a ``where``'s fixed mask as "<op>.mask") and y_t's width (None
    for one number per sequence)."""

    def __init__(self, kernel):
        program, weights = kernel.program, kernel.module.WEIGHTS
        by_name = {op.name: op for op in program.ops}
        self.views = {}
        for name in weights:
            ops, at = [], name
            while at in by_name and by_name[at].kind in ("getitem", "transpose") and not by_name[at].batched:
                ops.insert(0, by_name[at])
                at = by_name[at].inputs[0]
            if ops and at in program.param_names:
                self.views[name] = (at, tuple(ops))
        taken = [n for n in weights if n not in program.constants and n not in self.views]
        self.names = tuple(dict.fromkeys(taken + [of for of, _ in self.views.values()]))
        self.made = tuple(n for n in self.names if n not in program.param_names)
        self.constants = {n: program.constants[n] for n in weights if n in program.constants}
        self.constants.update((f"{op.name}.mask", op.attr("cond")) for op in program.ops
                              if op.kind == "where" and len(op.inputs) == 2)
        y_shape = program.shape_of(program.y)
        self.y_width = y_shape[-1] if y_shape else None


_calls = {}  # id(kernel) -> (kernel, its _Call): the kernel kept, so that its id is not reused


def _call_of(kernel):
    entry = _calls.get(id(kernel))
    if entry is None or entry[0] is not kernel:
        entry = _calls[id(kernel)] = (kernel, _Call(kernel))
    return entry[1]


def _view(array, ops):
    """``array`` through ``ops`` (non-batched slices and transposes, in order): a NumPy view."""
    for op in ops:
        if op.kind == "transpose":
            array = array.transpose(op.attr("axes"))
        else:
            array = array[tuple(i if isinstance(i, int) else slice(*i) for i in op.attr("index"))]
    return array


def _packing(steps, widths):
    """Where a packed (T + S, B, widest) array holds out (T rows, ``widths[0]`` columns) and
    each final state (one row each)."""
    return [(slice(0, steps), slice(None), slice(0, widths[0]))] + [
        (steps + k, slice(None), slice(0, w)) for k, w in enumerate(widths[1:])]
