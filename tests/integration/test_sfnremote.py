"""`mediacanon backfill --state-machine-arn` follows a deployed execution to its report line (here: on moto)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
import requests

from mediacanon.sfnremote import run_remote

pytestmark = [
    pytest.mark.integration,
    pytest.mark.moto_only(
        reason="moto's Step Functions executor, switched on through POST /moto-api/config; LocalStack's Step Functions "
        "is not started (it rejects the ASL's ItemBatcher)"
    ),
]


def test_run_remote_starts_follows_and_returns_the_report_line(moto_endpoint: str) -> None:
    requests.post(f"{moto_endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
    sfn: Any = boto3.client("stepfunctions", endpoint_url=moto_endpoint)
    definition = {
        "StartAt": "Report",
        "States": {
            "Report": {
                "Type": "Pass",
                "Parameters": {
                    "line": "DONE | migrated=1 linked=0 missing=0 skipped=0 failed=0",
                    "keys": ["r/report.json"],
                    "dry.$": "$.dryRun",
                    "phases.$": "$.phases",
                },
                "End": True,
            }
        },
    }
    arn = sfn.create_state_machine(
        name="backfill-remote-test", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    result = run_remote(
        arn, dry_run=True, phases=["objects"], fields=None, max_deletes=5, timeout=30, client=sfn, poll_seconds=0.05
    )
    assert result.status == "SUCCEEDED"
    assert result.report_line == "DONE | migrated=1 linked=0 missing=0 skipped=0 failed=0"
    assert result.report_keys == ["r/report.json"]
    assert result.failed_items == 0


def test_run_remote_passes_the_inventory_and_returns_the_source_line(moto_endpoint: str) -> None:
    """`--inventory` on AWS: the execution input carries the manifest and the maximum age Prepare checks it against,
    and the result the report task's source line (the Done state's output is the Report state's selection)."""
    requests.post(f"{moto_endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
    sfn: Any = boto3.client("stepfunctions", endpoint_url=moto_endpoint)
    definition = {
        "StartAt": "Report",
        "States": {
            "Report": {
                "Type": "Pass",
                "Parameters": {"line": "DONE", "keys": [], "source.$": "$.inventory", "age.$": "$.inventoryMaxAgeDays"},
                "End": True,
            }
        },
    }
    arn = sfn.create_state_machine(
        name="backfill-remote-inventory", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    manifest = "s3://inv/inventory/media/daily/2026-12-01T00-00Z/manifest.json"
    result = run_remote(
        arn,
        dry_run=False,
        phases=None,
        fields=None,
        max_deletes=5,
        timeout=30,
        client=sfn,
        poll_seconds=0.05,
        inventory=manifest,
        inventory_max_age_days=2.5,
    )
    assert result.status == "SUCCEEDED" and result.source_line == manifest
    (execution,) = sfn.list_executions(stateMachineArn=arn)["executions"]
    given = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert (given["inventory"], given["inventoryMaxAgeDays"]) == (manifest, 2.5)
