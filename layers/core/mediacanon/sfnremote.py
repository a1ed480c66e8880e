"""Run the deployed backfill state machine on AWS: start it, follow its map runs, return its report line."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mediacanon.backfill import PHASES, _child_error
from mediacanon.core.errors import RetryableError

FAILED_ITEM_COUNTS = ("failed", "timedOut", "aborted")  # a map run's itemCounts that count as failed


@dataclass(frozen=True)
class BackfillResult:
    execution_arn: str
    status: str  # the execution's, or FAILED when a map run's failures exceed its tolerance (moto does not check)
    report_line: str | None
    report_keys: list[str]
    map_run_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # map run ARN -> itemCounts
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    source_line: str | None = None  # the objects phase's source (Prepare's sourceLine, as the report task returns it)

    @property
    def failed_items(self) -> int:
        return sum(c.get(k, 0) for c in self.map_run_counts.values() for k in FAILED_ITEM_COUNTS)


def run_remote(
    state_machine_arn: str,
    *,
    dry_run: bool,
    phases: list[str] | None,
    fields: list[str] | None,
    max_deletes: int,
    timeout: float,
    client: Any = None,
    poll_seconds: float = 5.0,
    inventory: str | None = None,
    inventory_max_age_days: float | None = None,
) -> BackfillResult:
    import boto3
    from rich.console import Console

    sfn = client or boto3.client("stepfunctions")
    payload: dict[str, Any] = {"dryRun": dry_run, "maxDeletes": max_deletes, "phases": phases or list(PHASES)}
    if fields:
        payload["fields"] = fields
    if inventory:  # an S3 Inventory manifest as the objects phase's source (backfill.tasks.objects_source)
        payload["inventory"] = inventory
    if inventory_max_age_days is not None:
        payload["inventoryMaxAgeDays"] = inventory_max_age_days
    name = f"backfill-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))["executionArn"]
    console = Console(stderr=True, markup=False, emoji=False, highlight=False)
    console.print(f"started {arn}", highlight=False)
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    while True:
        execution = sfn.describe_execution(executionArn=arn)
        counts = _map_run_counts(sfn, arn)
        for run, items in counts.items():
            line = " ".join(f"{k}={items.get(k, 0)}" for k in ("total", "succeeded", "failed", "running", "pending"))
            if seen.get(run) != line:
                seen[run] = line
                console.print(f"map run {run.rsplit(':', 1)[-1]}: {line}", highlight=False)
        if execution["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise RetryableError(f"{arn} still RUNNING after {timeout:.0f}s: follow it with `mediacanon report {name}` later")
        time.sleep(poll_seconds)  # a remote execution: nothing to wait on but its status
    output = json.loads(execution.get("output") or "{}")
    return BackfillResult(
        execution_arn=arn,
        status=execution["status"],
        report_line=output.get("line"),
        report_keys=list(output.get("keys", [])),
        map_run_counts=counts,
        error=None if execution["status"] == "SUCCEEDED" else failure(sfn, execution),
        counts=output.get("counts", {}),
        source_line=output.get("source"),
    )


HISTORY_PAGES = 5  # a failed execution's failing events are among its last ones


def failure(sfn: Any, execution: Any) -> str:
    """Why the execution did not succeed, one line: the earliest failure among its last events (the failed task's
    `ErrorType: message`, which says more than the Fail state it led to), else the execution's own error and cause."""
    found: dict[str, Any] | None = None
    params: dict[str, Any] = {"executionArn": execution["executionArn"], "reverseOrder": True, "maxResults": 1000}
    for _ in range(HISTORY_PAGES):
        page = sfn.get_execution_history(**params)
        for event in page.get("events", []):
            for key, details in event.items():
                if key.endswith("EventDetails") and isinstance(details, dict) and details.get("error"):
                    found = details  # newest first: the last one kept is the earliest
        if not page.get("nextToken"):
            break
        params["nextToken"] = page["nextToken"]
    if found is None:
        found = {"error": execution.get("error"), "cause": execution.get("cause")}
    if not found.get("error"):
        return f"the execution ended {execution['status']}"
    return " ".join(_child_error({"Error": found["error"], "Cause": found.get("cause")}).split())


def _map_run_counts(sfn: Any, execution_arn: str) -> dict[str, dict[str, int]]:
    """The itemCounts of every map run of the execution and of the child executions it started (each prefix's
    objects map runs in an execution of the objects state machine, started with startExecution.sync:2)."""
    counts: dict[str, dict[str, int]] = {}
    for arn in (execution_arn, *child_executions(sfn, execution_arn)):
        for run in sfn.list_map_runs(executionArn=arn).get("mapRuns", []):
            counts[run["mapRunArn"]] = sfn.describe_map_run(mapRunArn=run["mapRunArn"]).get("itemCounts", {})
    return counts


def child_executions(sfn: Any, execution_arn: str) -> list[str]:
    """The executions the execution started through the Step Functions integration, from its history: each
    `TaskSubmitted` event of a `startExecution` task carries StartExecution's response (its ExecutionArn). The
    parent's history is short (a few events per prefix), so it is read whole."""
    found: list[str] = []
    params: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**params)
        for event in page.get("events", []):
            details = event.get("taskSubmittedEventDetails") or {}
            if details.get("resourceType") == "states" and str(details.get("resource", "")).startswith("startExecution"):
                output = json.loads(details.get("output") or "{}")
                arn = output.get("ExecutionArn") or output.get("executionArn")
                if arn and arn not in found:
                    found.append(str(arn))
        if not page.get("nextToken"):
            return found
        params["nextToken"] = page["nextToken"]
