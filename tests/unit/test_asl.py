"""statemachines/backfill.asl.json and backfill-objects.asl.json (the objects phase of one prefix, which the backfill
starts once per prefix) checked in CI: cfn-lint does not look behind DefinitionUri, so this does — structure, the
template's substitutions, and moto's own parser (what the local backfill runs)."""

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
from mediacanon.local.sfnlocal import ASL_PATH, OBJECTS_ASL_PATH, Batching, item_batching, load_definition, moto_compatible
from mediacanon.local.topology import load_template

ROOT = Path(__file__).resolve().parents[2]
SUBSTITUTIONS = {
    "BackfillFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:backfill",
    "PrimaryBucketName": "archive-media",
    "Partition": "aws",
    "ReportsPrefix": "mediacanon-reports/",
    "BackfillObjectsStateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:stack-backfill-objects",
}
RETRIED = "RetryableError"
# the template's state machines: logical id -> definition file
MACHINES = {"BackfillStateMachine": ASL_PATH, "BackfillObjectsStateMachine": OBJECTS_ASL_PATH}


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return load_definition(SUBSTITUTIONS)


@pytest.fixture(scope="module")
def objects_definition() -> dict[str, Any]:
    return load_definition(SUBSTITUTIONS, OBJECTS_ASL_PATH)


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


def test_the_files_are_json_with_placeholders_only_where_substituted() -> None:
    raw = ASL_PATH.read_text(encoding="utf-8")
    json.loads(raw)
    assert set(re.findall(r"\$\{(\w+)\}", raw)) == set(SUBSTITUTIONS)
    objects = OBJECTS_ASL_PATH.read_text(encoding="utf-8")
    json.loads(objects)
    assert set(re.findall(r"\$\{(\w+)\}", objects)) == {"BackfillFunctionArn", "PrimaryBucketName", "Partition"}


@pytest.mark.parametrize(("logical_id", "path"), MACHINES.items())
def test_every_placeholder_is_provided_by_the_template(logical_id: str, path: Path) -> None:
    template = load_template(ROOT / "template.yaml")
    machine = template["Resources"][logical_id]
    props = machine["Properties"]
    assert machine["Type"] == "AWS::Serverless::StateMachine" and props["Type"] == "STANDARD"
    assert ROOT / props["DefinitionUri"] == path
    placeholders = set(re.findall(r"\$\{(\w+)\}", (ROOT / props["DefinitionUri"]).read_text(encoding="utf-8")))
    assert placeholders == set(props["DefinitionSubstitutions"])


def test_the_backfill_starts_the_objects_machine_of_the_template() -> None:
    template = load_template(ROOT / "template.yaml")
    given = template["Resources"]["BackfillStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert given["BackfillObjectsStateMachineArn"] == {"Ref": "BackfillObjectsStateMachine"}


@pytest.mark.parametrize(
    ("machine", "scope"),
    [
        ("backfill", "<root>"),
        ("backfill", "/Objects"),
        ("backfill", "/Rows"),
        ("objects", "<root>"),
        ("objects", "/Objects"),
        ("objects", "/ObjectsFromInventory"),
    ],
)
def test_every_target_exists_every_state_is_reachable_and_the_scope_can_end(
    definition: dict[str, Any], objects_definition: dict[str, Any], machine: str, scope: str
) -> None:
    body = dict(scopes(definition if machine == "backfill" else objects_definition))[scope]
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


def test_the_objects_map_is_distributed_batched_and_tolerant(objects_definition: dict[str, Any]) -> None:
    objects = objects_definition["States"]["Objects"]
    assert objects["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert objects["ItemReader"]["Parameters"] == {"Bucket": SUBSTITUTIONS["PrimaryBucketName"], "Prefix.$": "$.prefix"}
    # its workers are Prepare's per-prefix figure (mediacanon.backfill.concurrency), not a constant of the file
    assert objects["MaxConcurrencyPath"] == "$.maxConcurrency" and "MaxConcurrency" not in objects
    assert objects.get("End") is True and objects_definition["States"]["Source"]["Default"] == "Objects"
    # moto rejects EXPRESS inside a Distributed Map
    assert objects["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert set(objects["ItemBatcher"]["BatchInput"]) == {"dryRun.$", "execution.$"}
    # moto's grammar takes a tolerated percentage only as a decimal literal (5.0, not 5); AWS takes both
    assert isinstance(objects["ToleratedFailurePercentage"], float)
    assert objects["ResultPath"] is None, "the map's output must stay small at millions of objects"


def test_the_prefixes_run_side_by_side_each_in_an_objects_execution_of_its_own(definition: dict[str, Any]) -> None:
    """ "Using Map state in Inline mode": "the Map state supports up to 40 concurrent iterations" and "Step Functions
    adds the execution history of these iterations to the parent workflow's execution history" (a few events per
    prefix: tests/unit/test_aws_rules.py bounds them). "Start a new AWS Step Functions state machine from a running
    execution": a Task with "Resource":"arn:aws:states:::states:startExecution.sync:2" "starts an execution of another
    state machine and waits for it to complete"; the same page associates a nested execution with the parent that
    started it by an input field named AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID holding $$.Execution.Id."""
    objects = definition["States"]["Objects"]
    assert objects["Type"] == "Map" and objects["ItemProcessor"]["ProcessorConfig"] == {"Mode": "INLINE"}
    assert objects["ItemsPath"] == "$.prefixes" and 1 < objects["MaxConcurrency"] <= 40
    assert objects["ItemSelector"]["prefix.$"] == "$$.Map.Item.Value"
    assert objects["ItemSelector"]["maxConcurrency.$"] == "$.objectsMaxConcurrency"
    assert objects["ResultPath"] is None
    body = objects["ItemProcessor"]["States"]
    (start,) = body.values()
    assert start["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    parameters = start["Parameters"]
    assert parameters["StateMachineArn"] == SUBSTITUTIONS["BackfillObjectsStateMachineArn"]
    assert parameters["Name.$"] == "States.UUID()"  # a retry or redrive never collides with a finished child's name
    assert parameters["Input"]["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$"] == "$$.Execution.Id"
    assert set(parameters["Input"]) - {"AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$"} == set(objects["ItemSelector"])
    # the child's description (its input and output) stays out of the state: a constant per prefix (no path, so
    # nothing hangs on the description's field names either)
    assert start["ResultSelector"] == {"done": True} and "ResultPath" not in start
    # a failed prefix is a failed objects phase: no retry re-runs a child that failed (States.TaskFailed)
    retried = {e for r in start.get("Retry", []) for e in r["ErrorEquals"]}
    assert retried and not retried & {"States.ALL", "States.TaskFailed"}
    # the loop it replaced is gone
    assert not {"PickPrefix", "NextPrefix"} & set(definition["States"])


def test_every_task_retries_retryable_errors(definition: dict[str, Any], objects_definition: dict[str, Any]) -> None:
    tasks = [
        (name, s)
        for d in (definition, objects_definition)
        for name, s in all_states(d)
        if s["Type"] == "Task" and "startExecution" not in s["Resource"]
    ]
    assert {name.rsplit("/", 1)[1] for name, _ in tasks} == {"Prepare", "ProcessBatch", "ProcessRows", "Mirror", "Report"}
    for name, task in tasks:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name  # Partition substituted: aws
        assert task["Parameters"]["FunctionName"] == SUBSTITUTIONS["BackfillFunctionArn"], name
        assert any(RETRIED in r["ErrorEquals"] for r in task.get("Retry", [])), name
        assert "States.ALL" not in {e for r in task.get("Retry", []) for e in r["ErrorEquals"]}, (
            f"{name} retries permanent errors"
        )


def test_a_failed_phase_still_reaches_the_report(definition: dict[str, Any]) -> None:
    for phase in ("Objects", "ObjectsFromInventory", "Rows", "Mirror"):
        assert [c["Next"] for c in definition["States"][phase]["Catch"]] == ["ReportWanted"]


def test_moto_compatible_only_turns_the_batcher_into_the_same_envelope(
    definition: dict[str, Any], objects_definition: dict[str, Any]
) -> None:
    known = {"resultsPrefix": "r/x/results"}
    assert moto_compatible(definition, known)["States"]["Objects"] == definition["States"]["Objects"]  # an inline Map
    compatible, definition = moto_compatible(objects_definition, known), copy.deepcopy(objects_definition)
    objects, original = compatible["States"]["Objects"], definition["States"]["Objects"]
    assert "ItemBatcher" not in objects
    # each item the local reader hands the map is already a batch (sfnlocal._PagedS3, item_batching)
    assert objects["ItemSelector"] == {"Items.$": "$$.Map.Item.Value", "BatchInput": original["ItemBatcher"]["BatchInput"]}
    batcher = original["ItemBatcher"]
    assert item_batching(definition) == Batching(batcher["MaxItemsPerBatch"], batcher["MaxInputBytesPerBatch"])
    del objects["ItemSelector"]
    del original["ItemBatcher"]
    # moto reads a ResultWriter's paths from the map's result, AWS from its input: the local run gives it the value
    assert definition["States"]["Objects"]["ResultWriter"]["Parameters"].pop("Prefix.$") == "$.resultsPrefix"
    assert compatible["States"]["Objects"]["ResultWriter"]["Parameters"].pop("Prefix") == "r/x/results"
    # the inventory map: the same envelope, its manifest read as JSON (test_moto_compatible_reads_an_inventory_...)
    inventory = compatible["States"].pop("ObjectsFromInventory")
    original = definition["States"].pop("ObjectsFromInventory")
    assert inventory["ItemSelector"] == {"Items.$": "$$.Map.Item.Value", "BatchInput": original["ItemBatcher"]["BatchInput"]}
    assert compatible == definition


def test_an_inventory_is_read_once_for_the_whole_bucket_by_one_objects_execution(definition: dict[str, Any]) -> None:
    """Prepare's source chooses: "inventory" starts the objects machine once (a manifest lists the whole bucket, not
    a prefix), with the inventory and the prefixes to scan; anything else lists each prefix as before."""
    states = definition["States"]
    assert states["ObjectsWanted"]["Choices"][0]["Next"] == "ObjectsSource"
    source = states["ObjectsSource"]
    assert source["Type"] == "Choice" and source["Default"] == "Objects"
    assert source["Choices"] == [{"Variable": "$.source", "StringEquals": "inventory", "Next": "ObjectsFromInventory"}]
    start, per_prefix = states["ObjectsFromInventory"], states["Objects"]["ItemProcessor"]["States"]["ObjectsUnderPrefix"]
    assert start["Resource"] == per_prefix["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    assert {k: v for k, v in start["Parameters"].items() if k != "Input"} == {
        k: v for k, v in per_prefix["Parameters"].items() if k != "Input"
    }
    given = start["Parameters"]["Input"]
    assert given["source"] == "inventory" and given["inventory.$"] == "$.inventory" and given["prefixes.$"] == "$.prefixes"
    assert given["maxConcurrency.$"] == "$.objectsMaxConcurrency" and "prefix.$" not in given
    assert start["ResultSelector"] == {"done": True} and start["ResultPath"] is None and start["Next"] == "RowsWanted"
    assert start["Retry"] == per_prefix["Retry"]
    # the report says which source the objects came from, and how stale an inventory was
    assert states["Report"]["Parameters"]["Payload"]["sourceLine.$"] == "$.sourceLine"
    assert states["Report"]["ResultSelector"]["source.$"] == "$.Payload.source"


def test_the_inventory_map_reads_the_manifest_as_step_functions_documents(objects_definition: dict[str, Any]) -> None:
    """Step Functions developer guide, "ItemReader (Map)", S3 inventory example: "ItemReader": {"ReaderConfig":
    {"InputType": "MANIFEST"}, "Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket":
    "amzn-s3-demo-destination-bucket", "Key": "destination-prefix/amzn-s3-demo-bucket/config-id/YYYY-MM-DDTHH-MMZ/
    manifest.json"}}; "The output format of your Amazon S3 inventory report must be CSV" (read_manifest checks it).
    The rest of the map is the listing map's: the same batches, worker, tolerance, workers and result export."""
    states = objects_definition["States"]
    choice = states[objects_definition["StartAt"]]
    assert choice["Type"] == "Choice" and choice["Default"] == "Objects"
    (rule,) = choice["Choices"]
    assert rule["Next"] == "ObjectsFromInventory"
    assert rule["And"] == [{"Variable": "$.source", "IsPresent": True}, {"Variable": "$.source", "StringEquals": "inventory"}]
    inventory, listing = states["ObjectsFromInventory"], states["Objects"]
    assert inventory["ItemReader"] == {
        "ReaderConfig": {"InputType": "MANIFEST"},
        "Resource": "arn:aws:states:::s3:getObject",
        "Parameters": {"Bucket.$": "$.inventory.bucket", "Key.$": "$.inventory.key"},
    }
    batcher = inventory["ItemBatcher"]
    assert batcher["MaxItemsPerBatch"] == listing["ItemBatcher"]["MaxItemsPerBatch"] == 1000
    assert batcher["MaxInputBytesPerBatch"] == listing["ItemBatcher"]["MaxInputBytesPerBatch"]
    # the inventory holds the whole bucket: each batch carries the prefixes to scan, the worker keeps what is under them
    assert batcher["BatchInput"] == {**listing["ItemBatcher"]["BatchInput"], "prefixes.$": "$.prefixes"}
    process = inventory["ItemProcessor"]["States"]["ProcessBatch"]
    payload = process["Parameters"]["Payload"]
    assert payload == {
        **listing["ItemProcessor"]["States"]["ProcessBatch"]["Parameters"]["Payload"],
        "prefixes.$": "$.BatchInput.prefixes",
    }
    for same in ("MaxConcurrencyPath", "ToleratedFailurePercentage", "ResultWriter", "ResultPath", "End"):
        assert inventory[same] == listing[same], same
    assert inventory["ItemProcessor"]["ProcessorConfig"] == listing["ItemProcessor"]["ProcessorConfig"]
    assert process["Retry"] == listing["ItemProcessor"]["States"]["ProcessBatch"]["Retry"]
    assert inventory["Label"] == "inventory" != listing["Label"]


def test_moto_compatible_reads_an_inventory_manifest_as_json(objects_definition: dict[str, Any]) -> None:
    """moto has no MANIFEST reader: the local definition reads the manifest's getObject as JSON, which the routed S3
    client answers with the inventory's batched rows (sfnlocal._PagedS3.get_object)."""
    compatible = moto_compatible(objects_definition, {"resultsPrefix": "r/x/results"})
    reader = compatible["States"]["ObjectsFromInventory"]["ItemReader"]
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"] == objects_definition["States"]["ObjectsFromInventory"]["ItemReader"]["Parameters"]
    assert objects_definition["States"]["ObjectsFromInventory"]["ItemReader"]["ReaderConfig"] == {"InputType": "MANIFEST"}


@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
def test_moto_accepts_the_compatible_definitions_and_still_rejects_item_batcher(
    definition: dict[str, Any], objects_definition: dict[str, Any]
) -> None:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/backfill"
    known = {"resultsPrefix": "mediacanon-reports/x/results"}
    for name, machine in (("backfill", definition), ("backfill-objects", objects_definition)):
        created = sfn.create_state_machine(name=name, definition=json.dumps(moto_compatible(machine, known)), roleArn=role)
        assert created["stateMachineArn"].endswith(f":{name}")
    # when moto learns ItemBatcher, moto_compatible can go and the local run becomes the exact deployed ASL
    with pytest.raises(ClientError, match="ItemBatcher"):
        sfn.create_state_machine(name="as-deployed", definition=json.dumps(objects_definition), roleArn=role)


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
