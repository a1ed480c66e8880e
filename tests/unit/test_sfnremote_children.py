"""`mediacanon backfill --state-machine-arn` counts the failed items of every map run, the objects map runs too:
those run in executions of the objects state machine that the backfill starts per prefix (startExecution.sync:2),
so they are found through the parent's history, not its own map runs."""

from __future__ import annotations

import json
from typing import Any

from mediacanon.sfnremote import BackfillResult, _map_run_counts, child_executions

PARENT = "arn:aws:states:us-east-1:123456789012:execution:backfill:b-1"
CHILD = "arn:aws:states:us-east-1:123456789012:execution:backfill-objects:5f0c"


class _FakeSfn:
    """The Step Functions API as the deployed machines answer: the parent's history (two pages), map runs."""

    def get_execution_history(self, **params: Any) -> dict[str, Any]:
        assert params["executionArn"] == PARENT
        submitted = {
            "type": "TaskSubmitted",
            "taskSubmittedEventDetails": {
                "resourceType": "states",
                "resource": "startExecution.sync:2",
                "output": json.dumps({"ExecutionArn": CHILD, "StartDate": "2026-12-03T12:00:00Z"}),
            },
        }
        lambda_task = {
            "type": "TaskSubmitted",
            "taskSubmittedEventDetails": {"resourceType": "lambda", "resource": "invoke", "output": "{}"},
        }
        if "nextToken" not in params:
            return {"events": [lambda_task], "nextToken": "page-2"}
        return {"events": [submitted, submitted]}

    def list_map_runs(self, executionArn: str) -> dict[str, Any]:
        return {"mapRuns": [{"mapRunArn": f"{executionArn}/map"}]}

    def describe_map_run(self, mapRunArn: str) -> dict[str, Any]:
        failed = 3 if mapRunArn.startswith(CHILD) else 0  # an objects batch that failed for good
        return {"itemCounts": {"total": 10, "succeeded": 10 - failed, "failed": failed}}


def test_the_objects_map_runs_of_the_child_executions_are_counted() -> None:
    sfn = _FakeSfn()
    assert child_executions(sfn, PARENT) == [CHILD]  # every page read; each child once; the Lambda task ignored
    counts = _map_run_counts(sfn, PARENT)
    assert set(counts) == {f"{PARENT}/map", f"{CHILD}/map"}
    result = BackfillResult(execution_arn=PARENT, status="SUCCEEDED", report_line=None, report_keys=[], map_run_counts=counts)
    assert result.failed_items == 3
