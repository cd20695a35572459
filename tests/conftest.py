"""Shared test set-up: hypothesis profiles, and a summary of what was skipped and how to run it.

CI (``CI`` set in the environment) runs deterministically with no deadline, so a test
never fails on a slow shared machine and the same examples run every time.
Pick another profile with ``HYPOTHESIS_PROFILE=dev`` (more examples) or ``thorough``.

Tests that need something optional skip without it; at the end of a run, one line per group
of skipped tests says which extra, variable or tool runs them (``SKIP_GROUPS``).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.register_profile("thorough", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

#: (group, whether a skipped test belongs to it: f(markers, reason), what runs it); first match wins.
SKIP_GROUPS = (
    ("torch", lambda marks, reason: "torch" in marks or "'torch'" in reason,
     'pip install -e ".[interop]", then: python -m pytest -m torch'),
    ("ptx", lambda marks, reason: "ptx" in marks or "compile_ptx" in reason,
     'pip install -e ".[ptx]", then: python -m pytest -m ptx (not under the simulator)'),
    ("cuda at full size", lambda marks, reason: "cuda" in marks and "real GPU" in reason,
     "a machine with an NVIDIA GPU: python -m pytest -m cuda"),
    ("cuda", lambda marks, reason: "cuda" in marks,
     "NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda (in a process of its own)"),
    ("graphviz", lambda marks, reason: "graphviz" in reason.lower(),
     "install Graphviz's dot (apt install graphviz, brew install graphviz), then: python -m pytest tests/test_viz.py"),
)


def skip_group(report):
    """The SKIP_GROUPS entry a skipped test's report belongs to, or None."""
    marks = set(getattr(report, "keywords", {}))  # a module skipped whole has none: its reason decides
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return next((group for group in SKIP_GROUPS if group[1](marks, reason)), None)


def pytest_terminal_summary(terminalreporter):
    """One line per group of skipped tests: how many, and what would run them."""
    counts, others = {}, {}
    for report in terminalreporter.stats.get("skipped", []):
        group = skip_group(report)
        counts[group] = counts.get(group, 0) + 1
        if group is None:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            others[reason] = others.get(reason, 0) + 1
    if not counts:
        return
    terminalreporter.section("skipped, and what runs them")
    for (name, _, how), n in sorted(((g, n) for g, n in counts.items() if g), key=lambda gn: gn[0][0]):
        terminalreporter.write_line(f"{n} {name}: {how}")
    for reason, n in sorted(others.items()):
        terminalreporter.write_line(f"{n} other: {reason}")
