"""statemachines/backfill.asl.json checked in CI: cfn-lint does not look behind DefinitionUri, so this does —
structure, the template's substitutions, and moto's own parser (what the local backfill runs)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mediacanon.backfill import prefixes_to_scan
from mediacanon.core import mediamap
from mediacanon.local.sfnlocal import ASL_PATH, Batching, item_batching, load_definition, moto_compatible
from mediacanon.local.topology import load_template

ROOT = Path(__file__).resolve().parents[2]
SUBSTITUTIONS = {
    "BackfillFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:backfill",
    "PrimaryBucketName": "archive-media",
    "Partition": "aws",
    "ReportsPrefix": "mediacanon-reports/",
}
RETRIED = "RetryableError"


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return load_definition(SUBSTITUTIONS)


def scopes(node: dict[str, Any], where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """The top-level machine and every Map/Parallel body: each has its own StartAt and States."""
    yield where or "<root>", node
    for name, state in node["States"].items():
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if isinstance(nested, dict):
                yield from scopes(nested, f"{where}/{name}")


def targets(state: dict[str, Any]) -> set[str]:
    out = {state[k] for k in ("Next", "Default") if k in state}
    out |= {c["Next"] for c in state.get("Choices", [])}
    out |= {c["Next"] for c in state.get("Catch", [])}
    return out


def all_states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, scope in scopes(definition):
        for name, state in scope["States"].items():
            yield f"{where}/{name}", state


def test_the_file_is_json_with_placeholders_only_where_substituted() -> None:
    raw = ASL_PATH.read_text(encoding="utf-8")
    json.loads(raw)
    assert set(re.findall(r"\$\{(\w+)\}", raw)) == set(SUBSTITUTIONS)


def test_every_placeholder_is_provided_by_the_template() -> None:
    template = load_template(ROOT / "template.yaml")
    machine = template["Resources"]["BackfillStateMachine"]
    props = machine["Properties"]
    assert machine["Type"] == "AWS::Serverless::StateMachine" and props["Type"] == "STANDARD"
    assert props["DefinitionUri"] == "statemachines/backfill.asl.json"
    placeholders = set(re.findall(r"\$\{(\w+)\}", (ROOT / props["DefinitionUri"]).read_text(encoding="utf-8")))
    assert placeholders == set(props["DefinitionSubstitutions"])


@pytest.mark.parametrize("scope", ["<root>", "/Objects", "/Rows"])
def test_every_target_exists_every_state_is_reachable_and_the_scope_can_end(definition: dict[str, Any], scope: str) -> None:
    body = dict(scopes(definition))[scope]
    states = body["States"]
    assert body["StartAt"] in states
    for name, state in states.items():
        assert targets(state) <= set(states), f"{scope}/{name} goes to a state that does not exist"
        terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
        assert terminal or targets(state), f"{scope}/{name} neither ends nor goes anywhere"
        assert not (terminal and "Next" in state), f"{scope}/{name} both ends and has a Next"
    seen, todo = set(), [body["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(targets(states[name]))
    assert seen == set(states), f"unreachable in {scope}: {set(states) - seen}"
    assert any(states[n]["Type"] in ("Succeed", "Fail") or states[n].get("End") for n in seen)


def test_the_objects_map_is_distributed_batched_and_tolerant(definition: dict[str, Any]) -> None:
    objects = definition["States"]["Objects"]
    assert objects["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert objects["ItemReader"]["Parameters"]["Bucket"] == SUBSTITUTIONS["PrimaryBucketName"]
    # moto rejects EXPRESS inside a Distributed Map
    assert objects["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert set(objects["ItemBatcher"]["BatchInput"]) == {"dryRun.$", "execution.$"}
    # moto's grammar takes a tolerated percentage only as a decimal literal (5.0, not 5); AWS takes both
    assert isinstance(objects["ToleratedFailurePercentage"], float)
    assert objects["ResultPath"] is None, "the map's output must stay small at millions of objects"


def test_every_task_retries_retryable_errors(definition: dict[str, Any]) -> None:
    tasks = [(name, s) for name, s in all_states(definition) if s["Type"] == "Task"]
    assert {name.rsplit("/", 1)[1] for name, _ in tasks} == {"Prepare", "ProcessBatch", "ProcessRows", "Mirror", "Report"}
    for name, task in tasks:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name  # Partition substituted: aws
        assert task["Parameters"]["FunctionName"] == SUBSTITUTIONS["BackfillFunctionArn"], name
        assert any(RETRIED in r["ErrorEquals"] for r in task.get("Retry", [])), name
        assert "States.ALL" not in {e for r in task.get("Retry", []) for e in r["ErrorEquals"]}, (
            f"{name} retries permanent errors"
        )


def test_a_failed_phase_still_reaches_the_report(definition: dict[str, Any]) -> None:
    for phase in ("Objects", "Rows", "Mirror"):
        assert [c["Next"] for c in definition["States"][phase]["Catch"]] == ["ReportWanted"]


def test_moto_compatible_only_turns_the_batcher_into_the_same_envelope(definition: dict[str, Any]) -> None:
    compatible, definition = moto_compatible(definition, {"resultsPrefix": "r/x/results"}), copy.deepcopy(definition)
    objects, original = compatible["States"]["Objects"], definition["States"]["Objects"]
    assert "ItemBatcher" not in objects
    # each item the local reader hands the map is already a batch (sfnlocal._PagedS3, item_batching)
    assert objects["ItemSelector"] == {"Items.$": "$$.Map.Item.Value", "BatchInput": original["ItemBatcher"]["BatchInput"]}
    batcher = original["ItemBatcher"]
    assert item_batching(definition) == Batching(batcher["MaxItemsPerBatch"], batcher["MaxInputBytesPerBatch"])
    del objects["ItemSelector"]
    del original["ItemBatcher"]
    # moto reads a ResultWriter's paths from the map's result, AWS from its input: the local run gives it the value
    for name in ("Objects", "Rows"):
        assert definition["States"][name]["ResultWriter"]["Parameters"].pop("Prefix.$") == "$.resultsPrefix"
        assert compatible["States"][name]["ResultWriter"]["Parameters"].pop("Prefix") == "r/x/results"
    assert compatible == definition


@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
def test_moto_accepts_the_compatible_definition_and_still_rejects_item_batcher(definition: dict[str, Any]) -> None:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/backfill"
    compatible = moto_compatible(definition, {"resultsPrefix": "mediacanon-reports/x/results"})
    created = sfn.create_state_machine(name="backfill", definition=json.dumps(compatible), roleArn=role)
    assert created["stateMachineArn"].endswith(":backfill")
    # when moto learns ItemBatcher, moto_compatible can go and the local run becomes the exact deployed ASL
    with pytest.raises(ClientError, match="ItemBatcher"):
        sfn.create_state_machine(name="as-deployed", definition=json.dumps(definition), roleArn=role)


# -- what Prepare hands the objects loop ---------------------------------------------------------------------------


def media_map(*fields: dict[str, Any]) -> mediamap.MediaMap:
    base = {"table": "t", "column": "c", "slug_column": "slug"}
    return mediamap.parse({"buckets": {"primary": "media", "cdn": "cdn"}, "fields": [base | f for f in fields]})


def test_prefixes_are_upload_to_then_staging_roots() -> None:
    m = media_map(
        {"name": "a.A.icon", "column": "icon", "upload_to": "icons/", "canonical": "icons/{slug}{ext}",
         "staging": ["downloads/{slug}/*favicon*/*"]},
        {"name": "a.A.masthead", "column": "masthead", "upload_to": "mastheads/", "canonical": "mastheads/{slug}{ext}"},
    )  # fmt: skip
    assert prefixes_to_scan(m) == ["icons/", "mastheads/", "downloads/"]
    assert prefixes_to_scan(m, ["a.A.masthead"]) == ["mastheads/"]


def test_nested_prefixes_collapse_so_nothing_is_listed_twice() -> None:
    m = media_map(
        {"name": "a.A.icon", "column": "icon", "upload_to": "media/", "canonical": "media/{slug}{ext}",
         "staging": ["media/incoming/{slug}/*"]},
        {"name": "a.A.thumb", "column": "thumb", "upload_to": "media/thumbs/", "canonical": "media/thumbs/{slug}{ext}"},
    )  # fmt: skip
    assert prefixes_to_scan(m) == ["media/"]


def test_a_tenant_location_is_scanned_from_its_literal_part() -> None:
    m = media_map(
        {"name": "a.A.icon", "column": "icon", "upload_to": "icons/", "canonical": "icons/{slug}{ext}",
         "location": "sites/{tenant}/", "tenant_column": "site"},
    )  # fmt: skip
    assert prefixes_to_scan(m) == ["sites/"]
