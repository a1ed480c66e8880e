"""AWS's limits and rules for the backfill state machine, encoded where moto does not enforce them.

moto runs the ASL leniently: it has no payload limit, no history limit, and it ignores IAM. These tests read
statemachines/backfill.asl.json, backfill-objects.asl.json (the objects phase of one prefix, started by the
backfill once per prefix) and the expanded template and fail the way AWS would, each naming the AWS
document it encodes. The payload and history figures come from `AslRun`, a small evaluator of the ASL data flow
(Parameters, ResultSelector, ResultPath, OutputPath, Choice rules, Map results) that the real task functions feed:
Prepare's real output, the batch worker's real counts, the report's real line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

import pytest
from support.helpers import load_test_module

from mediacanon import backfill
from mediacanon.backfill import concurrency
from mediacanon.backfill import tasks as backfill_tasks
from mediacanon.backfill.inventory import Inventory, InventoryFile, plan_entry
from mediacanon.core import mediamap
from mediacanon.local.sfnlocal import ASL_PATH, OBJECTS_ASL_PATH, Batching, item_batching, load_definition

ROOT = Path(__file__).resolve().parents[2]
SUBSTITUTIONS = {
    "BackfillFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:mediacanon-backfill",
    "PrimaryBucketName": "archive-media",
    "Partition": "aws",
    "ReportsPrefix": "mediacanon-reports/",
    "BackfillObjectsStateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:stack-backfill-objects",
}

# Step Functions service quotas ("Quotas related to state machine executions"): "Maximum input or output size for a
# task, state, or execution: 256 KiB of data as a UTF-8 encoded string. This quota affects tasks (activity, Lambda
# function, or integrated service), state or execution output, and input data when scheduling a task, entering a
# state, or starting an execution." and "Maximum execution history size: 25,000 events in a single state machine
# execution history."
PAYLOAD_LIMIT = 256 * 1024
HISTORY_LIMIT = 25_000
# Step Functions API reference (HistoryEvent ... FailedEventDetails): an error's `cause` is at most 32,768 characters
CAUSE_LIMIT = 32_768

TEN_MILLION = 10_000_000
# the inline Map over $.rowRanges stopped at about 25 to 35 M rows (several history events per 10,000-row range);
# twice that, to show the rows phase no longer depends on the table's size
FIFTY_MILLION = 50_000_000


NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
# an inventory of the primary bucket as Prepare reads it: its manifest's key as long as S3 Inventory makes one
INVENTORY = Inventory(
    bucket="archive-inventory-destination",
    key="inventory/" + "p" * 200 + "/archive-media/" + "c" * 64 + "/2026-12-01T00-00Z/manifest.json",
    source_bucket="archive-media",
    destination_bucket="archive-inventory-destination",
    file_format="CSV",
    fields=["Bucket", "Key", "Size", "LastModifiedDate", "ETag", "StorageClass"],
    files=[InventoryFile(f"inventory/data/{i:05d}.csv.gz", 10**9, "0" * 32) for i in range(3)],
    created=datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
)


def size(value: Any) -> int:
    """A payload's size as Step Functions counts it: the JSON text, UTF-8 encoded."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return load_definition(SUBSTITUTIONS)


@pytest.fixture(scope="module")
def objects_definition() -> dict[str, Any]:
    return load_definition(SUBSTITUTIONS, OBJECTS_ASL_PATH)


# -- a small evaluator of the ASL's data flow (JSONPath query language) ------------------------------------------


def _path(data: Any, path: str, context: dict[str, Any]) -> Any:
    root, rest = (context, path[2:]) if path.startswith("$$") else (data, path[1:])
    value = root
    for part in filter(None, rest.split(".")):
        value = value[part]
    return value


def _intrinsic(expression: str, data: Any, context: dict[str, Any]) -> Any:
    name, args_text = re.fullmatch(r"(States\.\w+)\((.*)\)", expression).groups()  # type: ignore[union-attr]
    if name == "States.UUID":
        return "0f0e1d2c-3b4a-5968-7786-000000000000"
    args = [_path(data, a, context) if a.startswith("$") else json.loads(a) for a in (x.strip() for x in args_text.split(","))]
    if name == "States.ArrayGetItem":
        return args[0][args[1]]
    if name == "States.MathAdd":
        return args[0] + args[1]
    raise NotImplementedError(name)


def _template(template: Any, data: Any, context: dict[str, Any]) -> Any:
    """A payload template (Parameters, ItemSelector, ResultSelector): "name.$" fields are paths or intrinsics."""
    if isinstance(template, list):
        return [_template(v, data, context) for v in template]
    if not isinstance(template, dict):
        return template
    out = {}
    for key, value in template.items():
        if key.endswith(".$"):
            out[key[:-2]] = _intrinsic(value, data, context) if value.startswith("States.") else _path(data, value, context)
        else:
            out[key] = _template(value, data, context)
    return out


def _result_path(data: Any, result_path: str | None, result: Any) -> Any:
    if result_path is None:
        return data
    if result_path == "$":
        return result
    out = json.loads(json.dumps(data))
    parts = result_path[2:].split(".")
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = result
    return out


def _choose(rule: dict[str, Any], data: Any, context: dict[str, Any]) -> bool:
    if "And" in rule:
        return all(_choose(r, data, context) for r in rule["And"])
    try:
        value = _path(data, rule["Variable"], context)
    except (KeyError, TypeError):
        return rule.get("IsPresent") is False
    if "IsPresent" in rule:
        return bool(rule["IsPresent"])
    if "BooleanEquals" in rule:
        return bool(value == rule["BooleanEquals"])
    if "StringEquals" in rule:
        return bool(value == rule["StringEquals"])
    if "NumericLessThanPath" in rule:
        return bool(value < _path(data, rule["NumericLessThanPath"], context))
    raise NotImplementedError(rule)


@dataclass
class AslRun:
    """Walks one execution of the top-level states, recording every payload's size and the parent's history events.

    `task(state, effective_input)` answers a Task with its result; `children(state, map_input)` answers a Distributed
    Map with its child executions' (input, output) and their number; `fail_at` makes that state fail with an error
    whose cause is as long as Step Functions keeps."""

    definition: dict[str, Any]
    task: Callable[[str, Any], Any]
    children: Callable[[str, Any], tuple[Any, Any, int]]
    fail_at: str | None = None
    payloads: list[tuple[str, int]] = field(default_factory=list)
    events: int = 0
    output: Any = None
    nested: list[AslRun] = field(default_factory=list)

    def record(self, where: str, value: Any) -> Any:
        self.payloads.append((where, size(value)))
        return value

    def run(self, execution_input: dict[str, Any], name: str = "backfill-20261202T000000-abcdef") -> Any:
        context = {"Execution": {"Name": name, "Id": f"arn:aws:states:us-east-1:123456789012:execution:stack-backfill:{name}"}}
        data = self.record("execution input", execution_input)
        self.events = 2  # ExecutionStarted, ExecutionSucceeded (or Failed)
        states, current = self.definition["States"], self.definition["StartAt"]
        while True:
            state = states[current]
            kind = state["Type"]
            self.record(f"{current} input", data)
            if kind in ("Succeed", "Fail"):
                self.events += 1
                self.output = data
                return data
            if kind == "Choice":
                self.events += 2  # ChoiceStateEntered, ChoiceStateExited
                current = next((c["Next"] for c in state["Choices"] if _choose(c, data, context)), state.get("Default"))
                continue
            effective = _path(data, state["InputPath"], context) if "InputPath" in state else data
            if kind == "Pass":
                self.events += 2
                result = _template(state["Parameters"], effective, context) if "Parameters" in state else effective
            elif current == self.fail_at:
                self.events += 5  # Entered, Scheduled, Started, Failed, Exited
                result = {"Error": "RetryableError", "Cause": "x" * CAUSE_LIMIT}
                data = self.record(f"{current} output (caught)", _result_path(data, state["Catch"][0]["ResultPath"], result))
                current = state["Catch"][0]["Next"]
                continue
            elif kind == "Task":
                self.events += 5  # TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded, TaskStateExited
                effective = self.record(f"{current} parameters", _template(state.get("Parameters", {}), effective, context))
                result = self.record(f"{current} result", self.task(current, effective))
                if "ResultSelector" in state:
                    result = _template(state["ResultSelector"], result, context)
            elif kind == "Map":
                result = self.map(current, state, effective, context)
            else:
                raise NotImplementedError(kind)
            data = _result_path(data, state.get("ResultPath", "$"), result)
            if "OutputPath" in state:
                data = _path(data, state["OutputPath"], context)
            self.record(f"{current} output", data)
            if state.get("End"):
                self.output = data
                return data
            current = state["Next"]

    def map(self, name: str, state: dict[str, Any], effective: Any, context: dict[str, Any]) -> Any:
        mode = state["ItemProcessor"]["ProcessorConfig"]["Mode"]
        if mode == "INLINE":
            items = _path(effective, state["ItemsPath"], context)
            body = state["ItemProcessor"]["States"].values()
            # a Task's TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded, TaskStateExited; a .sync one's
            # TaskSubmitted as well (the nested execution started, before it ends)
            body_events = sum(5 + (".sync" in s["Resource"]) for s in body if s["Type"] == "Task")
            # MapStateEntered, MapStateStarted, per iteration MapIterationStarted + MapIterationSucceeded and the
            # iteration's own states, MapStateSucceeded, MapStateExited: all in the parent's history
            self.events += 4 + len(items) * (2 + body_events)
            child_in = _template(state["ItemSelector"], effective, {**context, "Map": {"Item": {"Value": items[0]}}})
            self.record(f"{name} iteration input", child_in)
            return self.record(f"{name} result", [self.task(name, child_in)] * len(items))
        # a Distributed Map's children are executions of their own: in the parent's history, MapStateEntered,
        # MapStateStarted, MapRunStarted, MapRunSucceeded, MapStateSucceeded, MapStateExited
        self.events += 6
        child_in, child_out, count = self.children(name, effective)
        self.record(f"{name} child input", child_in)
        self.record(f"{name} child output", child_out)
        if "ResultWriter" in state:
            # "ResultWriter (Map)": with results exported, the state returns the map run ARN and where they are
            writer = _template(state["ResultWriter"]["Parameters"], effective, context)
            return self.record(
                f"{name} result",
                {
                    "MapRunArn": f"arn:aws:states:us-east-1:123456789012:mapRun:stack-backfill/{state.get('Label', name)}:"
                    + "0" * 36,
                    "ResultWriterDetails": {"Bucket": writer["Bucket"], "Key": f"{writer['Prefix']}/{'0' * 36}/manifest.json"},
                },
            )
        # no ResultWriter: the Map's result is every child's output, into the state (before ResultPath applies)
        return self.record(f"{name} result", [child_out] * count)


def _lambda_result(payload: Any) -> dict[str, Any]:
    """What arn:aws:states:::lambda:invoke returns: the function's payload and the invocation's metadata."""
    return {
        "ExecutedVersion": "$LATEST",
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {"X-Amz-Executed-Version": ["$LATEST"], "x-amzn-RequestId": ["0" * 36], "Content-Length": ["9999"]},
            "HttpHeaders": {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": "0" * 36},
            "HttpStatusCode": 200,
        },
        "SdkResponseMetadata": {"RequestId": "0" * 36},
        "StatusCode": 200,
    }


class _FakeS3:
    def __init__(self) -> None:
        self.written: dict[str, bytes] = {}

    def put_bytes(self, bucket: str, key: str, body: bytes, content_type: str | None = None) -> str:
        self.written[key] = body
        return "etag"


def _sample_map() -> mediamap.MediaMap:
    return mediamap.load(ROOT / "sample" / "mediamap.yaml")


def _prepare_output(objects: int, rows_per_field: int, monkeypatch: pytest.MonkeyPatch, execution: str) -> tuple[Any, int]:
    """Prepare's real output for a site of `rows_per_field` rows per field (row_ranges' ranges for that many ids, without
    walking them), and the size of the manifest it wrote to S3 instead of the state."""
    media_map = _sample_map()

    def ranges(db: Any, mapping: Any, rows_per_range: int = backfill.ROWS_PER_RANGE) -> list[dict[str, Any]]:
        starts = list(range(1, rows_per_field + 1, rows_per_range))
        return [{"field": mapping.name, "start": s, "end": e} for s, e in zip(starts, [*starts[1:], None], strict=True)]

    monkeypatch.setattr(backfill_tasks, "row_ranges", ranges)  # where prepare looks it up
    s3 = _FakeS3()
    steps = SimpleNamespace(
        map=media_map, s3=s3, db=SimpleNamespace(check_field=lambda m: None), ledger=SimpleNamespace(ensure=lambda: None)
    )
    output = backfill.prepare(steps, execution, {"dryRun": False}, media_map.reports_prefix)  # type: ignore[arg-type]
    return output, sum(len(b) for b in s3.written.values())


def _full_batch_counts(objects_per_batch: int) -> dict[str, Any]:
    """The worker's answer for a batch at its largest: every count present, each as large as the batch."""
    return {"counts": dict.fromkeys(backfill.REPORT_COUNTS, objects_per_batch)}


def _objects_run(
    objects_definition: dict[str, Any], child_input: dict[str, Any], objects: int, map_name: str = "Objects"
) -> AslRun:
    """One execution of the objects machine on one prefix of `objects` objects (map_name "Objects"), or on an S3
    Inventory of them ("ObjectsFromInventory"), its batches the longest keys'."""
    batcher = objects_definition["States"][map_name]["ItemBatcher"]
    per_batch = batcher["MaxItemsPerBatch"]
    items = _longest_listed_items(per_batch) if map_name == "Objects" else _longest_inventory_items(per_batch)
    child_batch = Batching(per_batch, batcher.get("MaxInputBytesPerBatch")).batches(items, batcher.get("BatchInput"))[0]

    def children(name: str, effective: Any) -> tuple[Any, Any, int]:
        assert name == map_name, name
        given = {"dryRun": False, "execution": child_input["execution"]}
        if "prefixes" in child_input:
            given["prefixes"] = child_input["prefixes"]
        batch_input = {"Items": child_batch, "BatchInput": given}
        return batch_input, _full_batch_counts(per_batch), math.ceil(objects / per_batch)

    def task(name: str, effective: Any) -> Any:
        raise AssertionError(name)

    asl = AslRun(objects_definition, task, children)
    asl.run(child_input)
    return asl


def _run(
    definition: dict[str, Any],
    objects: int,
    rows_per_field: int,
    monkeypatch: pytest.MonkeyPatch,
    fail_at: str | None = None,
    prefixes: list[str] | None = None,
    inventory: bool = False,
) -> AslRun:
    """One backfill execution and, for its Objects iterations, one objects execution each (their payloads recorded
    with the parent's, as "<prefix execution> ..."; their histories are their own)."""
    execution = "backfill-20261202T000000-abcdef"
    if prefixes is not None:
        monkeypatch.setattr(backfill_tasks, "prefixes_to_scan", lambda media_map, fields=None: list(prefixes))
    if inventory:  # Prepare's answer for an inventory it read and checked (backfill.inventory.plan_entry)
        monkeypatch.setattr(backfill_tasks, "objects_source", lambda steps, given, now=None: plan_entry(INVENTORY, NOW))
    prepared, _ = _prepare_output(objects, rows_per_field, monkeypatch, execution)
    objects_definition = load_definition(SUBSTITUTIONS, OBJECTS_ASL_PATH)
    start = definition["States"]["Objects"]["ItemProcessor"]["States"]["ObjectsUnderPrefix"]
    nested: list[AslRun] = []
    report = backfill.Report(dict.fromkeys(backfill.REPORT_COUNTS, objects), dry_run=False)

    def task(name: str, effective: Any) -> Any:
        if name == "Prepare":
            return _lambda_result(prepared)
        if name == "ObjectsFromInventory":  # startExecution.sync:2 of the objects machine, once, on the inventory
            child = _objects_run(objects_definition, effective["Input"], objects, "ObjectsFromInventory")
            nested.append(child)
            return {"ExecutionArn": "x" * 120, "Input": effective["Input"], "Output": child.output, "Status": "SUCCEEDED"}
        if name == "Objects":  # an iteration: startExecution.sync:2 of the objects machine on one prefix
            context = {"Execution": {"Id": f"arn:aws:states:us-east-1:123456789012:execution:stack-backfill:{execution}"}}
            named = {k: v for k, v in start["Parameters"].items() if k != "Name.$"} | {"Name": "0" * 36}  # States.UUID()
            parameters = _template(named, effective, context)
            child = _objects_run(objects_definition, parameters["Input"], math.ceil(objects / len(prepared["prefixes"])))
            nested.append(child)
            # "Start a new AWS Step Functions state machine from a running execution", .sync:2: the task's result is
            # DescribeExecution's, with the child's input and output as JSON
            described = {"ExecutionArn": "x" * 120, "Input": parameters["Input"], "Output": child.output, "Status": "SUCCEEDED"}
            asl.record("ObjectsUnderPrefix parameters", parameters)
            asl.record("ObjectsUnderPrefix result", described)
            result = _template(start["ResultSelector"], described, {}) if "ResultSelector" in start else described
            return _result_path(effective, start.get("ResultPath", "$"), result)
        if name == "Report":
            base = f"mediacanon-reports/{execution}/report"
            keys, source = [base + ".json", base + ".csv"], effective["Payload"]["sourceLine"]
            return _lambda_result({"line": report.line, "counts": report.counts, "keys": keys, "source": source})
        if name == "Mirror":
            return _lambda_result({"counts": {"pruned": objects}})
        if name == "Rows":  # an inline iteration's output: the ProcessRows task's payload
            return {"counts": {"repaired": rows_per_field}}
        raise AssertionError(name)

    def children(name: str, effective: Any) -> tuple[Any, Any, int]:
        if name == "Rows":
            ranges = math.ceil(rows_per_field / backfill.ROWS_PER_RANGE) * len(_sample_map().fields)
            span = {"field": "archive.PublicationSource.icon", "start": 10**12, "end": 10**12 + backfill.ROWS_PER_RANGE}
            return {"range": span, "dryRun": False, "execution": execution}, {"counts": {"repaired": 10**4}}, ranges
        raise AssertionError(name)

    asl = AslRun(definition, task, children, fail_at=fail_at)
    asl.run({"dryRun": False, "maxDeletes": 1000, "phases": list(backfill.PHASES)})
    asl.payloads += [(f"<prefix execution> {where}", n) for child in nested[:1] for where, n in child.payloads]
    asl.nested = nested
    return asl


# -- 1. every payload of a 10 M-object run stays under 256 KiB -------------------------------------------------------


@pytest.mark.parametrize("fail_at", [None, "Objects", "Mirror"])
def test_every_payload_of_a_ten_million_object_backfill_stays_under_256_kib(
    definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch, fail_at: str | None
) -> None:
    """Step Functions quotas: 256 KiB for every state's input and output and every task's result. A Distributed Map
    without a ResultWriter returns its children's results into the state ("ResultWriter (Map)": "Exporting the results
    to an Amazon S3 bucket is helpful if your output payload size exceeds 256 KiB"), and past the quota the execution
    fails with States.DataLimitExceeded, which "States.ALL" does not catch (error handling: "States.ALL ... doesn't
    match States.DataLimitExceeded"). 10 M objects are 40,000 batches of 250: their counts alone are megabytes."""
    asl = _run(definition, TEN_MILLION, FIFTY_MILLION, monkeypatch, fail_at=fail_at)
    over = [(where, n) for where, n in asl.payloads if n > PAYLOAD_LIMIT]
    assert not over, f"over Step Functions' 256 KiB payload quota: {over}"


def test_no_payload_grows_with_the_bucket_or_the_tables(definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same states, 100x the objects and rows: every payload the same size but for the digits of its counts."""
    small = dict(_run(definition, 100_000, 500_000, monkeypatch).payloads)
    large = dict(_run(definition, TEN_MILLION, FIFTY_MILLION, monkeypatch).payloads)
    assert small.keys() == large.keys()
    grown = {where: (small[where], large[where]) for where in small if large[where] > small[where] + 64}
    assert not grown, f"payloads that grow with the data: {grown}"


def test_prepare_hands_each_prefix_its_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The objects map's MaxConcurrencyPath reads $.maxConcurrency, which the backfill's ItemSelector takes from
    Prepare's objectsMaxConcurrency: S3's per-prefix write limit over a worker's writes (mediacanon.backfill.concurrency),
    an equal share of the account's Lambda concurrency among the prefixes side by side; the input may set the rate."""
    prepared, _ = _prepare_output(1_000, 1_000, monkeypatch, "x")
    assert prepared["objectsMaxConcurrency"] == concurrency.workers_per_prefix(prefixes=len(prepared["prefixes"])) == 43
    assert "prefixIndex" not in prepared and "prefixCount" not in prepared  # the loop's counters are gone
    steps = SimpleNamespace(
        map=_sample_map(),
        s3=_FakeS3(),
        db=SimpleNamespace(check_field=lambda m: None),
        ledger=SimpleNamespace(ensure=lambda: None),
    )
    faster = backfill.prepare(steps, "x", {"phases": ["objects"], "objectsPerWorkerSecond": 25}, "mediacanon-reports/")  # type: ignore[arg-type]
    assert faster["objectsMaxConcurrency"] == 70  # floor(3,500 / (2 x 25))
    with pytest.raises(backfill.PermanentError, match="objectsPerWorkerSecond"):
        backfill.prepare(steps, "x", {"phases": ["objects"], "objectsPerWorkerSecond": 0}, "mediacanon-reports/")  # type: ignore[arg-type]


def test_the_rows_manifest_is_in_s3_not_in_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """What used to travel as $.rowRanges (about 70 bytes per 10,000 rows) goes to S3 for the rows map's ItemReader."""
    prepared, manifest_bytes = _prepare_output(TEN_MILLION, FIFTY_MILLION, monkeypatch, "x")
    assert "rowRanges" not in prepared and prepared["rowsManifest"] == "mediacanon-reports/x/rows-manifest.json"
    assert manifest_bytes > PAYLOAD_LIMIT  # it would not fit in the state: it is not there
    assert size(prepared) < 2048


# -- 2. the parent execution's history stays under 25,000 events -------------------------------------------------


def test_the_parent_history_of_a_large_backfill_stays_under_25000_events(
    definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step Functions quotas: "Maximum execution history size: 25,000 events"; past it the execution fails. An inline
    Map writes each iteration's events into the parent's history (several per 10,000-row range: the old rows phase
    stopped at about 25 to 35 M rows); a Distributed Map's children are executions with histories of their own."""
    asl = _run(definition, TEN_MILLION, FIFTY_MILLION, monkeypatch)
    assert asl.events < HISTORY_LIMIT, f"{asl.events} events in the parent's history"
    # and the count depends on the number of prefixes, not on the objects or rows
    assert _run(definition, 1_000, 1_000, monkeypatch).events == asl.events
    # each prefix's objects execution has a history of its own, as constant (a Distributed Map's children are not in it)
    assert len(asl.nested) == 1  # AslRun evaluates one iteration for all: every prefix's is alike
    assert {child.events for child in asl.nested} == {
        child.events for child in _run(definition, 1_000, 1_000, monkeypatch).nested
    }
    assert all(child.events < 20 for child in asl.nested)


def test_the_prefixes_side_by_side_cost_the_parent_a_few_events_and_bytes_each(
    definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline Map over the prefixes puts each iteration's events into the parent's history ("Using Map state in
    Inline mode": "Step Functions adds the execution history of these iterations to the parent workflow's execution
    history"), and each iteration's output into the Map's result: both grow with the number of prefixes (the media
    map's, a handful), never with the objects. At 1,000 prefixes both still fit: under 25,000 events, under 256 KiB."""
    few = _run(definition, TEN_MILLION, FIFTY_MILLION, monkeypatch, prefixes=[f"tenant-{i:04d}/media/" for i in range(10)])
    many = _run(definition, TEN_MILLION, FIFTY_MILLION, monkeypatch, prefixes=[f"tenant-{i:04d}/media/" for i in range(1_000)])
    per_prefix = (many.events - few.events) / (1_000 - 10)
    assert per_prefix == 8  # MapIterationStarted, the .sync task's six, MapIterationSucceeded
    assert many.events < HISTORY_LIMIT, f"{many.events} events in the parent's history"
    over = [(where, n) for where, n in many.payloads if n > PAYLOAD_LIMIT]
    assert not over, f"over Step Functions' 256 KiB payload quota at 1,000 prefixes: {over}"
    assert dict(many.payloads)["Objects result"] <= 2 + 1_000 * len('{"done":true},')  # the Map's result: a constant each


def test_every_map_over_data_is_distributed_and_writes_its_results_to_s3(
    definition: dict[str, Any], objects_definition: dict[str, Any]
) -> None:
    """Both maps read their items from S3 (ItemReader) and export their results there (ResultWriter, JSONPath syntax
    of "ResultWriter (Map)": Resource arn:aws:states:::s3:putObject, Parameters Bucket and Prefix), under the reports
    prefix, in the primary bucket ("the Amazon S3 bucket ... under the same AWS account and AWS Region as your state
    machine. Otherwise, your state machine execution will fail with the States.ResultWriterFailed error")."""
    maps = {name: s for name, s in definition["States"].items() if s["Type"] == "Map"}
    assert set(maps) == {"Objects", "Rows"}
    # the backfill's Objects map is over Prepare's prefixes (the media map's); the objects machine's over the bucket
    assert maps["Objects"]["ItemsPath"] == "$.prefixes" and "ItemReader" not in maps["Objects"]
    maps["Objects"] = objects_definition["States"]["Objects"]
    for name, state in maps.items():
        assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED", name
        assert "ItemReader" in state and "ItemsPath" not in state, name
        writer = state["ResultWriter"]
        assert writer["Resource"] == "arn:aws:states:::s3:putObject", name
        assert writer["Parameters"] == {"Bucket": SUBSTITUTIONS["PrimaryBucketName"], "Prefix.$": "$.resultsPrefix"}, name
    rows_reader = maps["Rows"]["ItemReader"]
    assert rows_reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert rows_reader["ReaderConfig"] == {"InputType": "JSON"}
    assert rows_reader["Parameters"]["Key.$"] == "$.rowsManifest"


# -- 3. a batch of the longest keys fits a state's input ------------------------------------------------------------


def _hostile_keys() -> Any:
    return load_test_module("hostile_keys", ROOT / "tests" / "data" / "hostile_keys.py")


def _longest_listed_items(count: int) -> list[dict[str, Any]]:
    """`count` listed objects as the ItemReader's listObjectsV2 gives them, their keys the longest in the hostile-keys
    catalogue that S3 takes (1,024 bytes UTF-8; multibyte ones cost more once JSON-escaped), varied per item."""
    catalogue = _hostile_keys().HOSTILE_KEYS
    longest = [k.key for k in catalogue if k.expect == "renamed"]  # what S3 takes and mediacanon moves
    longest.sort(key=lambda k: len(json.dumps(k)), reverse=True)
    items = []
    for i in range(count):
        base = longest[i % 2]
        key = base[: -len(str(i)) - 4] + str(i) + base[-4:]  # same length, distinct keys
        items.append(
            {
                "Etag": '"' + "f" * 32 + '-10000"',
                "Key": key,
                "LastModified": 1764633600,
                "Size": 5 * 1024**4,
                "StorageClass": "DEEP_ARCHIVE",
            }
        )
    return items


def _longest_inventory_items(count: int) -> list[dict[str, Any]]:
    """The same objects as an S3 Inventory's MANIFEST reader gives them: every field a string, the key URL-encoded
    (a multibyte character costs 9 bytes), the usual optional fields present."""
    return [
        {
            "Bucket": SUBSTITUTIONS["PrimaryBucketName"],
            "Key": quote_plus(item["Key"], safe="/"),
            "Size": str(item["Size"]),
            "LastModifiedDate": "2026-12-01T00:00:00.000Z",
            "ETag": item["Etag"].strip('"'),
            "StorageClass": item["StorageClass"],
            "IsMultipartUploaded": "true",
            "ReplicationStatus": "COMPLETED",
            "EncryptionStatus": "SSE-KMS",
        }
        for item in _longest_listed_items(count)
    ]


def test_an_inventory_backfill_keeps_every_payload_and_history_bound(
    definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--inventory`: Prepare's source "inventory" starts one objects execution over the whole inventory (not one
    per prefix); its map's batches of URL-encoded longest keys, its child and worker inputs and the parent's history
    keep the same quotas as a listing's, and none of them grows with the bucket, the tables or the prefixes."""
    many = [f"tenant-{i:04d}/media/" for i in range(1_000)]
    listing = _run(definition, TEN_MILLION, FIFTY_MILLION, monkeypatch, prefixes=many)  # before objects_source is set
    large = _run(definition, TEN_MILLION, FIFTY_MILLION, monkeypatch, inventory=True, prefixes=many)
    assert any(where.startswith("ObjectsFromInventory") for where, _ in large.payloads)
    assert not any(where.startswith("Objects ") for where, _ in large.payloads)  # no per-prefix iteration
    over = [(where, n) for where, n in large.payloads if n > PAYLOAD_LIMIT]
    assert not over, f"over Step Functions' 256 KiB payload quota: {over}"
    assert large.events < 100 and len(large.nested) == 1 and large.nested[0].events < 20
    small = _run(definition, 100_000, 500_000, monkeypatch, inventory=True, prefixes=many)
    assert small.events == large.events
    grown = {w: (n, dict(large.payloads)[w]) for w, n in small.payloads if dict(large.payloads)[w] > n + 64}
    assert not grown, f"payloads that grow with the data: {grown}"
    assert listing.events - large.events > 7_000  # the inventory costs the parent no events per prefix


def test_a_batch_of_the_longest_keys_stays_under_the_state_input_limit(objects_definition: dict[str, Any]) -> None:
    """ "ItemBatcher (Map)": MaxInputBytesPerBatch bounds a batch's bytes (at most 256 KiB); without it, 250 listed
    items whose keys are near S3's 1,024-byte key limit are about 290 KB, over the state input quota of 256 KiB, and
    the child execution fails to start. The bound leaves room for the worker's own Payload fields."""
    batcher = objects_definition["States"]["Objects"]["ItemBatcher"]
    assert 0 < batcher["MaxInputBytesPerBatch"] <= 200 * 1024
    items = _longest_listed_items(10 * batcher["MaxItemsPerBatch"])
    by_count_only = Batching(batcher["MaxItemsPerBatch"]).batches(items)
    assert size({"Items": by_count_only[0]}) > PAYLOAD_LIMIT  # the old bound alone: the limit is real for these keys
    batching = item_batching(objects_definition)
    assert batching is not None and batching.max_bytes == batcher["MaxInputBytesPerBatch"]
    batches = batching.batches(items, batcher["BatchInput"])
    assert [item for batch in batches for item in batch] == items  # every item, once, in order
    process = objects_definition["States"]["Objects"]["ItemProcessor"]["States"]["ProcessBatch"]
    for batch in batches:
        child_input = {"Items": batch, "BatchInput": {"dryRun": False, "execution": "backfill-20261202T000000-abcdef"}}
        assert size(child_input) <= batcher["MaxInputBytesPerBatch"] + 128
        effective = _template(process["Parameters"], child_input, {})
        assert size(effective) < PAYLOAD_LIMIT and size(child_input) < PAYLOAD_LIMIT
        assert len(batch) <= batcher["MaxItemsPerBatch"]


def test_everyday_keys_fill_a_batch_of_1000_and_the_byte_bound_closes_the_longest_earlier(
    objects_definition: dict[str, Any],
) -> None:
    """Fewer, larger batches: fewer child executions (state transitions), Lambda invocations and report parts.
    "ItemBatcher (Map)": MaxItemsPerBatch and MaxInputBytesPerBatch, "Step Functions adds items to a batch until it
    reaches" either. 1,000 listed objects with everyday Django keys (~60 bytes) fit the byte bound (every batch is
    1,000 items: the count, not the bytes, closes it); the hostile catalogue's longest keys are closed by the bytes."""
    batcher = objects_definition["States"]["Objects"]["ItemBatcher"]
    assert batcher["MaxItemsPerBatch"] == 1000
    batching = item_batching(objects_definition)
    assert batching is not None
    everyday = [
        {
            "Etag": '"' + "0123456789abcdef" * 2 + '"',
            "Key": f"icons/publication_{i:07d}_icon_v2_final (1).png",
            "LastModified": 1764633600,
            "Size": 48_213,
            "StorageClass": "STANDARD",
        }
        for i in range(5_000)
    ]
    batches = batching.batches(everyday, batcher["BatchInput"])
    assert [len(b) for b in batches] == [1000] * 5
    assert size({"Items": batches[0], "BatchInput": {"dryRun": False, "execution": "x" * 80}}) < batcher["MaxInputBytesPerBatch"]
    longest = batching.batches(_longest_listed_items(1000), batcher["BatchInput"])
    assert 50 < len(longest[0]) < 1000  # closed by the bytes, not the count


# -- 4. IAM: redrive, map children, the ResultWriter -----------------------------------------------------------------


def _least_privilege() -> Any:
    return load_test_module("least_privilege_for_aws_rules", ROOT / "tests" / "unit" / "test_least_privilege.py")


@dataclass(frozen=True)
class Machine:
    name: str  # the state machine's name, as deployed
    statements: list[dict[str, Any]]  # its role's policy statements


@pytest.fixture(scope="module")
def machines() -> dict[str, Machine]:
    """The template's two state machines by logical id: the backfill and the objects phase of one prefix."""
    lp = _least_privilege()
    stack = lp.stack_for({**lp.BASE, "FallbackBucketNames": "archive-legacy"})
    out = {}
    for logical_id, props in stack.of_type("AWS::StepFunctions::StateMachine").items():
        role = props["RoleArn"]
        assert role.startswith("getatt:") and role.endswith(".Arn"), role
        out[logical_id] = Machine(props["StateMachineName"], list(stack.role_statements(role[len("getatt:") : -len(".Arn")])))
    assert set(out) == {"BackfillStateMachine", "BackfillObjectsStateMachine"}
    return out


@pytest.fixture(scope="module")
def machine(machines: dict[str, Machine]) -> Machine:
    return machines["BackfillStateMachine"]


def _allows(statements: list[dict[str, Any]], action: str, arn: str) -> bool:
    import fnmatch

    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        # IAM: "*" matches any run of characters, ":" and "/" included; fnmatch's "*" does the same
        if statement["Effect"] == "Allow" and action in actions and any(fnmatch.fnmatchcase(arn, r) for r in resources):
            return True
    return False


@pytest.mark.parametrize("action", ["states:DescribeExecution", "states:StopExecution", "states:RedriveExecution"])
@pytest.mark.parametrize(
    ("logical_id", "labels"), [("BackfillStateMachine", ["rows"]), ("BackfillObjectsStateMachine", ["inventory", "objects"])]
)
def test_each_machine_may_describe_stop_and_redrive_its_executions_and_map_run_children(
    definition: dict[str, Any],
    objects_definition: dict[str, Any],
    machines: dict[str, Machine],
    action: str,
    logical_id: str,
    labels: list[str],
) -> None:
    """ "Redriving Map Runs" (Step Functions developer guide) and its IAM example: redriving a Distributed Map redrives
    its failed child executions, whose ARNs are execution:<stateMachineName>/<mapRunLabel>:<id>, so the state machine's
    role needs states:RedriveExecution on that form as well as on execution:<stateMachineName>:<id>."""
    machine = machines[logical_id]
    states = (definition if logical_id == "BackfillStateMachine" else objects_definition)["States"]
    assert sorted(s["Label"] for s in states.values() if s["Type"] == "Map" and "Label" in s) == labels
    base = f"arn:aws:states:us-east-1:123456789012:execution:{machine.name}"
    for arn in [f"{base}:backfill-20261202T000000-abcdef", *(f"{base}/{label}:0f0e1d2c-3b4a-5968-7786" for label in labels)]:
        assert _allows(machine.statements, action, arn), f"{action} denied on {arn}"


def test_the_backfill_may_run_the_objects_machine_synchronously_and_nothing_else(machines: dict[str, Machine]) -> None:
    """ "IAM policies for AWS Step Functions" (Step Functions developer guide), for a nested execution run synchronously
    (.sync): states:StartExecution on the state machine it starts; states:DescribeExecution and states:StopExecution
    on that machine's executions ("arn:aws:states:[[region]]:[[accountId]]:execution:[[stateMachineName]]:*");
    events:PutTargets, events:PutRule and events:DescribeRule on
    "rule/StepFunctionsGetEventsForStepFunctionsExecutionRule". The objects machine starts nothing but its own map's
    children, and the backfill no other machine."""
    backfill, objects = machines["BackfillStateMachine"], machines["BackfillObjectsStateMachine"]
    assert objects.name == f"{backfill.name}-objects"
    machine_arn = f"arn:aws:states:us-east-1:123456789012:stateMachine:{objects.name}"
    assert _allows(backfill.statements, "states:StartExecution", machine_arn)
    child = f"arn:aws:states:us-east-1:123456789012:execution:{objects.name}:0f0e1d2c-3b4a-5968-7786"
    for action in ("states:DescribeExecution", "states:StopExecution"):
        assert _allows(backfill.statements, action, child), f"{action} denied on {child}"
    rule = "arn:aws:events:us-east-1:123456789012:rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        assert _allows(backfill.statements, action, rule), f"{action} denied on {rule}"
    assert not _allows(backfill.statements, "events:PutRule", "arn:aws:events:us-east-1:123456789012:rule/other")
    other = "arn:aws:states:us-east-1:123456789012:stateMachine:someone-else"
    assert not _allows(backfill.statements, "states:StartExecution", other)
    assert not _allows(objects.statements, "states:StartExecution", other)
    assert not _allows(
        objects.statements, "states:StartExecution", f"arn:aws:states:us-east-1:123456789012:stateMachine:{backfill.name}"
    )
    # only the objects machine lists the bucket (its ItemReader); the backfill's rows map reads the manifest only
    assert _allows(objects.statements, "s3:ListBucket", "arn:aws:s3:::archive-media")
    assert not _allows(backfill.statements, "s3:ListBucket", "arn:aws:s3:::archive-media")


@pytest.mark.parametrize("logical_id", ["BackfillStateMachine", "BackfillObjectsStateMachine"])
def test_the_machine_may_write_map_results_under_the_reports_prefix_only(machines: dict[str, Machine], logical_id: str) -> None:
    """ "IAM policies for using Distributed Map states", ResultWriter: s3:PutObject, s3:GetObject,
    s3:ListMultipartUploadParts and s3:AbortMultipartUpload on the results' bucket and prefix; the rows map's
    ItemReader (s3:getObject) reads the manifest there too. Nothing else in the primary bucket is writable."""
    machine = machines[logical_id]
    results = "arn:aws:s3:::archive-media/mediacanon-reports/backfill-20261202T000000-abcdef/results/0f0e/SUCCEEDED_0.json"
    for action in ("s3:PutObject", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"):
        assert _allows(machine.statements, action, results), f"{action} denied on {results}"
    manifest = "arn:aws:s3:::archive-media/mediacanon-reports/backfill-20261202T000000-abcdef/rows-manifest.json"
    assert _allows(machine.statements, "s3:GetObject", manifest)
    media = "arn:aws:s3:::archive-media/icons/nytimes.png"
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert not _allows(machine.statements, action, media), f"the state machine may {action} media: {media}"


def test_prepare_refuses_a_media_map_whose_reports_prefix_the_stack_cannot_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state machine's ResultWriter may write under the template's ReportsPrefix only: a media map with another
    reports_prefix would fail every map run at its end, so Prepare fails first, naming both and the fix."""
    media_map = _sample_map()
    steps = SimpleNamespace(
        map=media_map, s3=_FakeS3(), db=SimpleNamespace(check_field=lambda m: None), ledger=SimpleNamespace(ensure=lambda: None)
    )
    with pytest.raises(
        backfill.PermanentError, match=r"reports_prefix 'mediacanon-reports/' differs from the stack's ReportsPrefix 'reports/'"
    ):
        backfill.prepare(steps, "x", {"phases": ["objects"]}, "reports/")  # type: ignore[arg-type]


# -- 5. the partition ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ASL_PATH, OBJECTS_ASL_PATH])
def test_the_definition_names_no_partition_of_its_own(path: Path) -> None:
    """ARNs differ by partition (AWS General Reference, "Amazon Resource Names": arn:partition:service:...; aws-cn in
    China, aws-us-gov in GovCloud): every service integration ARN takes the template's AWS::Partition."""
    raw = path.read_text(encoding="utf-8")
    assert "arn:aws:" not in raw
    resources = re.findall(r'"Resource": "([^"]+)"', raw)
    assert resources and all(r.startswith("arn:${Partition}:states:::") for r in resources), resources
    china = load_definition({**SUBSTITUTIONS, "Partition": "aws-cn", "BackfillObjectsStateMachineArn": "child"}, path)
    assert json.dumps(china).count("arn:aws-cn:states:::") == len(resources)


# -- 6. the worker's Lambda fits a batch of 1,000 -------------------------------------------------------------------


def test_a_full_batch_fits_the_backfill_function_s_timeout_and_memory(objects_definition: dict[str, Any]) -> None:
    """Lambda quotas: "Function timeout: 900 seconds (15 minutes)". A batch of MaxItemsPerBatch objects at the slowest
    measured worker rate (docs/scale.md: ~35 objects/s; concurrency.OBJECTS_PER_WORKER_SECOND is 40) takes under a
    minute, a tenth of the function's timeout even at half that rate; the batch's input (at most MaxInputBytesPerBatch)
    is a vanishing part of the function's memory."""
    from mediacanon.local.topology import load_template

    function = load_template(ROOT / "template.yaml")["Resources"]["BackfillFunction"]["Properties"]
    batcher = objects_definition["States"]["Objects"]["ItemBatcher"]
    slowest = 35.0 / 2
    assert batcher["MaxItemsPerBatch"] / slowest < function["Timeout"] / 10 and function["Timeout"] <= 900
    assert concurrency.OBJECTS_PER_WORKER_SECOND >= 35.0
    assert batcher["MaxInputBytesPerBatch"] * 20 < function["MemorySize"] * 1024 * 1024
