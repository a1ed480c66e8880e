"""The objects phase runs every prefix side by side: the backfill's inline Map starts the objects state machine
(statemachines/backfill-objects.asl.json) once per prefix with startExecution.sync:2, each a Distributed Map of its own
(mediacanon.local.sfnlocal runs both machines on moto)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mediacanon.backfill import run_task
from mediacanon.local import sfnlocal

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_backfill = _load("backfill_integration_site", ROOT / "tests" / "integration" / "test_backfill.py")
site = _backfill.site  # the same site: messy names under icons/ and mastheads/, a staged download under downloads/


def test_the_prefixes_map_runs_overlap_in_time(site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each objects batch holds its worker for a while; a batch of one prefix runs while another prefix's does. The
    loop this replaced (one map run after another) never had two prefixes' batches in flight at once."""
    real = run_task  # what sfnlocal's invoke calls
    lock = threading.Lock()
    running: dict[str, int] = {}
    together: set[frozenset[str]] = set()

    def slow_objects(event: dict[str, Any], make_steps: Any) -> Any:
        if event.get("action") != "objects":
            return real(event, make_steps)
        prefix = str(event["items"][0]["Key"]).split("/", 1)[0]
        with lock:
            running[prefix] = running.get(prefix, 0) + 1
            together.add(frozenset(p for p, n in running.items() if n))
        try:
            time.sleep(1.5)
            return real(event, make_steps)
        finally:
            with lock:
                running[prefix] -= 1

    monkeypatch.setattr(sfnlocal, "run_task", slow_objects)
    started = time.monotonic()
    result = site.run()
    took = time.monotonic() - started

    assert (result.status, result.error, result.failed_items) == ("SUCCEEDED", None, 0)
    labels = sorted(arn.rsplit("/", 1)[1].split(":")[0] for arn in result.map_run_counts)
    assert labels == ["objects", "objects", "objects", "rows"]  # a map run per prefix, and the rows map
    assert max(len(s) for s in together) >= 2, f"no two prefixes' batches ran at once: {together}"
    _backfill.assert_final_state(site)
    assert took < 3 * 1.5 + 30  # three prefixes one after another would take at least 4.5 s of batches alone
