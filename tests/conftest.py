"""Shared test set-up: hypothesis profiles.

CI (``CI`` set in the environment) runs deterministically with no deadline, so a test
never fails on a slow shared machine and the same examples run every time.
Pick another profile with ``HYPOTHESIS_PROFILE=dev`` (more examples) or ``thorough``.
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
