"""Pictures of the autodiff graph: Graphviz DOT text of what a tensor was computed from.

    text = tinyseq.viz.to_dot(loss, params=model)          # DOT text; needs nothing installed
    tinyseq.viz.render(loss, "graph.svg", params=model)    # needs Graphviz's ``dot`` program

Each op is a box with its name and its output's shape; each leaf that requires a gradient is
an ellipse, named as in ``params`` (a Module's dotted parameter names, or a dict) when it is
there. Edges run from an op's inputs to the op, the way values flow (gradients flow back
along them). The ops of one unrolled time step of a graph-backend recurrent layer sit in a
box of their own ("LSTM_l0 t=2"); a fused layer is one op. Tensors that need no gradient
(inputs, constants) are left out: they are not part of what backward walks.

Draw the graph before ``backward()``, which frees it (or after ``backward(retain_graph=True)``).
"""

import bisect
import os
import shutil
import subprocess

#: the file formats ``render`` asks ``dot`` for, by file suffix
FORMATS = ("svg", "png", "pdf")


def mark_time_step(tensor, label, t, first):
    """Record that the ops made since ``tinyseq.tensor.creation_mark()`` returned ``first``, up
    to the one that made ``tensor``, are step ``t`` of the layer-direction ``label`` (the
    recurrent layers call it once per step; nothing is recorded outside the graph)."""
    if tensor._ctx is not None:
        tensor._ctx.time_step = (label, t, first)


def to_dot(tensor, params=None):
    """The graph behind ``tensor`` as Graphviz DOT text (a ``digraph``).

    ``params``: a Module (its ``named_parameters()`` name the leaves) or a dict of name to
    Tensor. ``tensor`` must require grad (else it has no graph).
    """
    if not getattr(tensor, "requires_grad", False):
        that = " that does not" if hasattr(tensor, "requires_grad") else ""
        raise ValueError(f"to_dot: expected a Tensor that requires grad (the output of recorded ops), "
                         f"got {type(tensor).__name__}{that}")
    names = _names(params)
    nodes = _walk(tensor)
    steps = _time_steps(nodes)
    lines = ["digraph tinyseq {", '  graph [fontname="Helvetica", fontsize=10];',
             '  node [shape=box, fontname="Helvetica", fontsize=10];']
    clusters = {}
    for node in nodes:
        fn = node._ctx
        if fn is None:
            label, extra = names.get(id(node), "leaf"), ", shape=ellipse"
        else:
            label, extra = getattr(fn, "label", type(fn).__name__), ""
        if node is tensor:
            extra += ', style=filled, fillcolor="#dddddd"'
        line = f'  n{node._seq} [label="{_escape(label)}\\n{tuple(node.shape)}"{extra}];'
        step = steps(node)
        (clusters.setdefault(step, []) if step is not None else lines).append(line)
    for k, (step, members) in enumerate(clusters.items()):
        lines.append(f'  subgraph cluster_{k} {{\n    label="{_escape(step)}";\n    color="#999999";')
        lines += ["  " + line for line in members]
        lines.append("  }")
    for node in nodes:
        if node._ctx is not None:
            lines += [f"  n{p._seq} -> n{node._seq};" for p in node._ctx.parents if p.requires_grad]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(tensor, path, params=None):
    """Draw the graph behind ``tensor`` into ``path`` (.svg, .png or .pdf) with Graphviz's
    ``dot`` program; returns the path. Raises a RuntimeError saying how to install it where
    ``dot`` is missing (``to_dot`` needs nothing)."""
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"render: path must end in one of {['.' + f for f in FORMATS]}, got {path!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("render: drawing needs Graphviz's `dot` program, which is not on PATH (install "
                           "Graphviz: apt-get install graphviz, brew install graphviz, conda install graphviz); "
                           "viz.to_dot(tensor) gives the DOT text without it")
    text = to_dot(tensor, params)
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{os.getpid()}.tmp")
    done = subprocess.run([dot, f"-T{fmt}", "-o", tmp], input=text.encode(), capture_output=True)
    if done.returncode != 0:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise RuntimeError(f"render: dot failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    os.replace(tmp, path)
    return path


def _names(params):
    """{id(tensor): name} from a Module or a dict of name -> Tensor."""
    if params is None:
        return {}
    if hasattr(params, "named_parameters"):
        params = dict(params.named_parameters())
    if not isinstance(params, dict):
        raise TypeError(f"to_dot: params must be a Module or a dict of name -> Tensor, got {type(params).__name__}")
    return {id(t): name for name, t in params.items()}


def _walk(root):
    """Every tensor requiring grad that ``root`` was computed from (``root`` too), oldest first."""
    seen, stack = {id(root): root}, [root]
    while stack:
        fn = stack.pop()._ctx
        for parent in () if fn is None else fn.parents:
            if parent.requires_grad and id(parent) not in seen:
                seen[id(parent)] = parent
                stack.append(parent)
    return sorted(seen.values(), key=lambda t: t._seq)


def _time_steps(nodes):
    """A function from a node to the label of the time step its op was made in, or None.

    A marked step runs from its ``first`` creation number to its last op's; the steps of a
    layer do not overlap, so the one a node falls in is the first ending at or after it.
    """
    marks = sorted((n._seq, n._ctx.time_step) for n in nodes if n._ctx is not None and hasattr(n._ctx, "time_step"))
    ends = [end for end, _ in marks]

    def step(node):
        k = bisect.bisect_left(ends, node._seq)
        if node._ctx is None or k == len(marks):
            return None
        label, t, first = marks[k][1]
        return f"{label} t={t}" if node._seq > first else None

    return step


def _escape(text):
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
