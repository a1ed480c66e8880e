"""Hypothesis profiles for the schedule suites, chosen by HYPOTHESIS_PROFILE (default: ci).

- ci: derandomized (a fixed seed: the same schedules on every run), a bounded number of examples, no example
  database, so CI runs in bounded time and a failure reproduces byte for byte.
- long: `make reliability-long`, 1,000 random schedules per test; a failure prints its seed and the shrunk schedule.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings

# each example builds its own buckets and empties its tables: the fixtures are per test, the state per example
_COMMON: dict[str, Any] = {
    "deadline": None,  # a schedule talks to a moto server and PostgreSQL: wall time says nothing about a bug
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
settings.register_profile("ci", max_examples=50, derandomize=True, database=None, **_COMMON)
# no example database: nothing is written into the checkout; a failure prints its reproduce blob (print_blob)
settings.register_profile(
    "long", max_examples=1000, database=None, phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink], **_COMMON
)
settings.register_profile("dev", max_examples=5, derandomize=True, database=None, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
