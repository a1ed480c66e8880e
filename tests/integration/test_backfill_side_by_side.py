"""The objects phase runs every prefix side by side: the backfill's inline Map starts the objects state machine
(statemachines/backfill-objects.asl.json) once per prefix with startExecution.sync:2, each a Distributed Map of its own
(mediacanon.local.sfnlocal runs both machines on moto)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from support.helpers import load_test_module

from mediacanon.backfill import run_task
from mediacanon.local import sfnlocal

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


_backfill = load_test_module("backfill_integration_site", ROOT / "tests" / "integration" / "test_backfill.py")
site = _backfill.site  # the same site: messy names under icons/ and mastheads/, a staged download under downloads/


def test_the_prefixes_map_runs_overlap_in_time(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each objects batch holds its worker for a while; a batch of one prefix runs while another prefix's does. The
    loop this replaced (one map run after another) never had two prefixes' batches in flight at once."""
    real = run_task  # what sfnlocal's invoke calls
    lock = threading.Lock()
    running: dict[str, int] = {}
    together: set[frozenset[str]] = set()
    overlapped = threading.Event()  # set once two prefixes' batches are in flight together

    def slow_objects(event: dict[str, Any], make_steps: Any) -> Any:
        if event.get("action") != "objects":
            return real(event, make_steps)
        prefix = str(event["items"][0]["Key"]).split("/", 1)[0]
        with lock:
            running[prefix] = running.get(prefix, 0) + 1
            in_flight = frozenset(p for p, n in running.items() if n)
            together.add(in_flight)
            if len(in_flight) >= 2:
                overlapped.set()
        try:
            # a batch holds its worker until another prefix's batch runs too; one prefix after another never gets
            # there, and each batch lets go after 10 s
            overlapped.wait(10)
            return real(event, make_steps)
        finally:
            with lock:
                running[prefix] -= 1

    monkeypatch.setattr(sfnlocal, "run_task", slow_objects)
    result = site.run()

    assert (result.status, result.error, result.failed_items) == ("SUCCEEDED", None, 0)
    labels = sorted(arn.rsplit("/", 1)[1].split(":")[0] for arn in result.map_run_counts)
    assert labels == ["objects", "objects", "objects", "rows"]  # a map run per prefix, and the rows map
    assert max(len(s) for s in together) >= 2, f"no two prefixes' batches ran at once: {together}"
    _backfill.assert_final_state(site)
