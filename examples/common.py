"""What the example scripts share: their common flags, a summary table, JSON and PNG output.

Each example is one file that reads top to bottom; this module keeps the plumbing out of
them. ``matplotlib`` comes with the ``examples`` extra (``pip install -e ".[examples]"``).
"""

import argparse
import json
import os
import pathlib
import time

import numpy as np

import tinyseq as ts
from tinyseq import nn

#: The recurrent layers the examples compare, by their flag names.
CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def parser(description, out):
    """An ``ArgumentParser`` with the flags every example takes: --quick, --out, --seed, --backend."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small run for smoke tests (well under a minute)")
    p.add_argument("--out", default=out, help=f"directory for the PNG and JSON (default {out})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=ts.backend.BACKENDS,
                   help="how recurrent layers run (default auto: numba when it imports)")
    return p


def names(text, allowed, flag):
    """The comma-separated names in ``text`` (e.g. "lstm,gru"), each one of ``allowed``, or a
    ValueError naming the flag, the unknown names and the allowed ones."""
    chosen = [name.strip() for name in text.split(",")]
    unknown = [name for name in chosen if name not in allowed]
    if unknown:
        raise ValueError(f"{flag}: unknown {unknown}; choose {flag} from {', '.join(allowed)}")
    return chosen


def start(args):
    """Seed tinyseq and NumPy, set the backend, make the out directory; print what runs."""
    ts.manual_seed(args.seed)
    ts.backend.set_backend(args.backend)
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"backend: {ts.backend.resolve('auto')}  seed: {args.seed}  out: {args.out}")
    return np.random.default_rng(args.seed)


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
    """Save a figure as PNG (atomically) and close it."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    pyplot().close(fig)
    print(f"wrote {path}")


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
