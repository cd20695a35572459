"""What the example scripts share: their common flags, a summary table, JSON and PNG output,
and how a script reports a user's mistake.

Each example is one file that reads top to bottom; this module keeps the plumbing out of
them. ``matplotlib`` comes with the ``examples`` extra (``pip install -e ".[examples]"``).

Every script ends in ``common.run(main)``: a mistake in what the user asked for (a bad flag,
a missing or unreadable file, an occupied --out) raises :class:`UsageError` and becomes one
line on stderr, ``<script>: error: <what is wrong and the fix>``, and exit status 2, as
argparse does for a flag it cannot parse. Anything else is a bug and keeps its traceback.
``TINYSEQ_DEBUG=1`` shows the traceback of a UsageError too.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import sys
import time

import numpy as np

import tinyseq as ts
from tinyseq import nn

#: The recurrent layers the examples compare, by their flag names.
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class UsageError(ValueError):
    """A mistake in how a script was called (a flag, a file, an --out): ``run`` prints the
    message as one line and exits 2. The message names the flag and says how to fix it."""


def run(main):
    """Call ``main()`` as a script: a :class:`UsageError` becomes ``prog: error: message`` on
    stderr and exit status 2 (its traceback only with ``TINYSEQ_DEBUG=1``); any other
    exception is a bug and propagates with its traceback."""
    try:
        check_environment()
        main()
    except UsageError as e:
        if os.environ.get("TINYSEQ_DEBUG") == "1":
            raise
        prog = pathlib.Path(sys.argv[0]).name
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)


def check_environment():
    """A ``TINYSEQ_BLAS`` that cannot run here is the user's mistake too: said before any work."""
    blas = os.environ.get("TINYSEQ_BLAS")
    if blas and importlib.util.find_spec("numba") is not None:
        from tinyseq_jit.cpu._gemm import check_choice

        try:
            check_choice(blas)
        except ValueError as e:
            raise UsageError(f"{e} (or unset TINYSEQ_BLAS: the fastest installed is then measured)") from None


def require(module, extra, what):
    """Raise a :class:`UsageError` saying which extra installs ``module``, which ``what``
    needs, unless it is importable (checked before any work, without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise UsageError(f'{what} needs {module}, which is not installed: pip install -e ".[{extra}]"')


def require_torch(what):
    """``require`` PyTorch, which comes with the ``interop`` extra."""
    require("torch", "interop", what)


def parser(description, out):
    """An ``ArgumentParser`` with the flags every example takes: --quick, --out, --seed, --backend."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small run for smoke tests (well under a minute)")
    p.add_argument("--out", default=out, help=f"directory for the PNG and JSON (default {out})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=ts.backend.BACKENDS,
                   help="how recurrent layers run (default auto: numba when it imports)")
    return p


def defaults(args, **flags):
    """Set each flag ``name=(full, quick)`` the user left out (None) to its default for this run
    (``quick`` with --quick). A value given, 0 included, stays, for the script to check."""
    for name, (full, quick) in flags.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def names(text, allowed, flag):
    """The comma-separated names in ``text`` (e.g. "lstm,gru"), each one of ``allowed``, or a
    ValueError naming the flag, the unknown names and the allowed ones."""
    chosen = [name.strip() for name in text.split(",")]
    unknown = [name for name in chosen if name not in allowed]
    if unknown:
        raise UsageError(f"{flag}: unknown {unknown}; choose {flag} from {', '.join(allowed)}")
    return chosen


def start(args):
    """Check the examples extra is installed, seed tinyseq and NumPy, set the backend, make the
    out directory; print what runs (and, with --quick, that it is a smoke run)."""
    for module in ("matplotlib", "tqdm", "sklearn"):
        require(module, "examples", "the examples")
    ts.manual_seed(args.seed)
    ts.backend.set_backend(args.backend)
    make_out(args.out)
    print(f"backend: {ts.backend.resolve('auto')}  seed: {args.seed}  out: {args.out}")
    if args.quick:
        print(SMOKE)
    return np.random.default_rng(args.seed)


#: What --quick runs are: printed when one starts and under its summary table.
SMOKE = "--quick: a smoke run (small and short), not the real results; run without --quick for those"


def make_out(out, flag="--out"):
    """Make the directory ``out`` (and its parents), or a UsageError naming ``flag``."""
    try:
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{flag} {out}: a file is in the way of this directory; choose another {flag}") from None
    except PermissionError:
        raise UsageError(f"{flag} {out}: no permission to create it here; choose another {flag}") from None


def summary(args, headers, rows):
    """Print the results table (see ``table``), and under it the smoke-run line with --quick."""
    print(table(headers, rows))
    if args.quick:
        print(SMOKE)


def table(headers, rows):
    """Rows (lists of values) as an aligned text table; floats get 4 significant digits."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def write_json(path, obj):
    """Write ``obj`` as JSON atomically (temporary file, then rename)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or a clear error if it is missing."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError('the examples draw with matplotlib: pip install -e ".[examples]"') from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path):
    """Check the figure is readable (see ``check_figure``), save it as PNG (atomically), close it."""
    path = pathlib.Path(path)
    check_figure(fig, path.name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    pyplot().close(fig)
    print(f"wrote {path}")


def check_figure(fig, name="figure"):
    """Raise a ValueError naming the axes unless every visible axes of ``fig`` has a title (or
    the figure a suptitle), an x and a y label (its own, a shared axis's, or the figure's
    supxlabel/supylabel), and a legend when it draws more than one labelled series. Axes drawn
    without axis lines (``ax.axis("off")``: an image) need only the title."""
    suptitle = fig._suptitle is not None and fig._suptitle.get_text()
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or not hasattr(ax, "get_xlabel") or ax.get_label() == "<colorbar>":
            continue
        where = f"{name}: axes {i} ({ax.get_title() or 'untitled'!r})"
        missing = [] if ax.get_title() or suptitle else ["a title (or a suptitle)"]
        if ax.axison:
            for axis, sup in (("x", fig._supxlabel), ("y", fig._supylabel)):
                shared = getattr(ax, f"get_shared_{axis}_axes")().get_siblings(ax)
                if not any(getattr(a, f"get_{axis}label")() for a in shared) and not (sup and sup.get_text()):
                    missing.append(f"a {axis} label")
            series = [a for a in (*ax.get_lines(), *ax.collections) if not a.get_label().startswith("_")]
            if len(series) > 1 and ax.get_legend() is None and not fig.legends:
                missing.append(f"a legend for its {len(series)} labelled series")
        if missing:
            raise ValueError(f"save_figure: {where} lacks {', '.join(missing)}")


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
