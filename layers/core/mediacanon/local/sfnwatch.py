"""What a local backfill execution is watched by: the data endpoint's watchdog, the map runs' progress, and the
failure its history names."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from mediacanon.sfnremote import FAILED_ITEM_COUNTS


def endpoint_answers(endpoint_url: str, timeout: float = 2.0) -> bool:
    """Whether the endpoint is still there: it answers HTTP (an error status counts), or it is only slow to (a
    timeout: a moto server listing 100,000 keys holds its interpreter for seconds, and is not gone). Refused or
    reset connections, unknown hosts: gone."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(endpoint_url, timeout=timeout).close()  # noqa: S310 (the configured endpoint)
    except urllib.error.HTTPError:
        return True
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, TimeoutError)
    except TimeoutError:
        return True
    except OSError:
        return False
    return True


class Watchdog:
    """Whether the data endpoint (the local emulator the tasks read and write) still answers: asked every
    `every` seconds, gone after `misses` refusals in a row."""

    def __init__(self, endpoint_url: str, *, every: float = 2.0, misses: int = 3) -> None:
        self.endpoint_url, self.every, self.misses = endpoint_url, every, misses
        self._next, self._missed = time.monotonic() + every, 0
        self.cause = ""

    def gone(self) -> bool:
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.every
        if endpoint_answers(self.endpoint_url, timeout=self.every):
            self._missed = 0
        else:
            self._missed += 1
            self.cause = f"Could not connect to the endpoint URL {self.endpoint_url} ({self._missed} checks in a row)"
        return self._missed >= self.misses


def map_runs(sfn: Any, execution_arn: str, children_of: str | None = None) -> dict[str, dict[str, Any]]:
    """The map runs of the execution and, given `children_of` (the objects state machine the backfill starts once per
    prefix), those of that machine's executions: one map run per prefix, side by side. Locally every execution of that
    machine is this backfill's (a control plane per run)."""
    executions = [execution_arn]
    if children_of is not None:
        executions += [e["executionArn"] for e in _executions(sfn, children_of)]
    out: dict[str, dict[str, Any]] = {}
    for arn in executions:
        out.update(_map_runs_of(sfn, arn))
    return out


def final_map_runs(sfn: Any, seen: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The map runs seen, described once more where moto still has them (their counts at their end)."""
    from botocore.exceptions import ClientError

    out = {}
    for arn in seen:
        with contextlib.suppress(ClientError):
            out[arn] = sfn.describe_map_run(mapRunArn=arn)
    return out


def _executions(sfn: Any, machine_arn: str) -> list[dict[str, Any]]:
    from botocore.exceptions import ClientError

    try:
        return list(sfn.list_executions(stateMachineArn=machine_arn).get("executions", []))
    except ClientError:
        return []


def _map_runs_of(sfn: Any, execution_arn: str) -> dict[str, dict[str, Any]]:
    from botocore.exceptions import ClientError

    try:
        runs = sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", [])
        return {run["mapRunArn"]: sfn.describe_map_run(mapRunArn=run["mapRunArn"]) for run in runs}
    except ClientError:  # the execution ended between the two calls (see _execute)
        return {}


def first_failure(sfn: Any, execution_arn: str) -> str:
    """The first failure the history names (the Fail state's own error says less than the phase's)."""
    for event in sfn.get_execution_history(executionArn=execution_arn, reverseOrder=False)["events"]:
        for key, details in event.items():
            if key.endswith("EventDetails") and isinstance(details, dict) and details.get("error"):
                return f"{details['error']}: {details.get('cause', '')}"[:2000]
    return "the execution did not succeed"


class MapRunProgress:
    """A bar per map run on a terminal; elsewhere a plain line whenever a map run's counts change."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled
        self.tty = enabled and self.console.is_terminal
        self.tasks: dict[str, Any] = {}
        self.last: dict[str, tuple[int, ...]] = {}
        self.progress: Any = None

    def __enter__(self) -> MapRunProgress:
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, runs: dict[str, dict[str, Any]]) -> None:
        if not self.enabled:
            return
        for i, (arn, run) in enumerate(runs.items(), start=1):
            items = run["itemCounts"]
            done = items.get("succeeded", 0) + sum(items.get(k, 0) for k in FAILED_ITEM_COUNTS)
            label = f"map run {i} ({run['status'].lower()}, {sum(items.get(k, 0) for k in FAILED_ITEM_COUNTS)} failed)"
            if self.progress is not None:
                if arn not in self.tasks:
                    self.tasks[arn] = self.progress.add_task(label, total=items.get("total", 0))
                self.progress.update(self.tasks[arn], description=label, total=items.get("total", 0), completed=done)
                continue
            state = (done, items.get("total", 0), hash(run["status"]))
            if self.last.get(arn) != state:
                self.last[arn] = state
                self.console.print(f"{label}: {done}/{items.get('total', 0)} batches", highlight=False)
