"""A backfill on this machine: the real ASL (statemachines/backfill.asl.json) on moto's Step Functions executor,
its Lambda tasks run in this process, against the data of a moto server (`mediacanon local up`) or any S3 endpoint.

Why the executor runs here and not in the `local up` server: moto runs a Lambda task by invoking a container
(Docker, absent here) unless `LambdaFunction._invoke_lambda` is patched, and a patch only reaches the process it is
made in. So `run_backfill` starts a ThreadedMotoServer in this process as the Step Functions + Lambda control plane
(patched to call `mediacanon.backfill.run_task` directly), and routes the executor's own S3 calls (the
Distributed Map's ItemReader) to `endpoint_url`, where the buckets live. The workers use `endpoint_url` and
`database_url` too, so the data server stays a stock `moto_server`.

Where moto 5.2 differs from AWS, and what is done about it (sources under moto/stepfunctions/parser/):
- `ItemBatcher` is not in its grammar (asl/antlr/runtime/ASLParser.py): `moto_compatible` swaps it for an
  `ItemSelector` that builds the same `{"Items": [...], "BatchInput": ...}` envelope, and the executor's routed S3
  client (`_PagedS3`) does the batching where Step Functions does it, at the reader: it hands the map one item per
  batch of `MaxItemsPerBatch` listed objects. So a child execution runs a batch, as on AWS, not one object each.
- it has no S3 Inventory reader (ReaderConfig InputType MANIFEST: item_reader/reader_config/input_type.py):
  `moto_compatible` makes it a JSON reader of the same s3:getObject, and the routed S3 client answers that getObject
  of the run's inventory manifest with the inventory's rows (backfill.inventory.iter_inventory_items: its data files,
  read and MD5-checked) as AWS's reader gives them, batched as a listing is.
- its listObjectsV2 reader reads one page and fails on an empty prefix (asl/component/state/exec/state_map/
  item_reader/eval/resource_eval_s3.py): the routed S3 client pages through and returns items as AWS shapes them.
- tolerated failures are parsed but not enforced, and a failed child leaves the map run SUCCEEDED
  (iteration/itemprocessor/distributed_item_processor_worker.py, tolerated_failure.py): the result applies the
  map runs' ToleratedFailurePercentage to their describe_map_run counts itself.
- its `states:startExecution.sync:2` integration (state_task_service_sfn.py) calls boto3 with the ASL's parameter names
  (StateMachineArn), which boto3 refuses, and reads ExecutionArn where boto3 answers executionArn: the executor's
  Step Functions client (`_PascalSfn`) turns the names both ways. And it reads the description's fields in camel case,
  so the ASL's ResultSelector on that task names no field of it.

Two state machines run, as deployed: the backfill (statemachines/backfill.asl.json) and the objects phase of one
prefix (backfill-objects.asl.json), which the backfill starts once per prefix, side by side; the objects machine is
created first, its ARN substituted into the backfill's definition. The map runs watched are the backfill's and those
of every execution of the objects machine (one control plane per run: all of them are this backfill's).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from mediacanon.backfill import DEFAULT_MAX_DELETES, PHASES, results_prefix, run_task
from mediacanon.core.errors import MediacanonError
from mediacanon.core.mediamap import MediaMap
from mediacanon.local.sfnwatch import MapRunProgress, Watchdog, final_map_runs, first_failure, map_runs
from mediacanon.sfnremote import FAILED_ITEM_COUNTS, BackfillResult

ASL_PATH = Path(__file__).resolve().parents[4] / "statemachines" / "backfill.asl.json"
# the objects phase of one prefix, which the backfill starts once per prefix, side by side (startExecution.sync:2)
OBJECTS_ASL_PATH = ASL_PATH.with_name("backfill-objects.asl.json")
REGION = "us-east-1"
ACCOUNT = "123456789012"
POLL_SECONDS = 0.25
TASK_TIMEOUT = 900  # the backfill function's Timeout in template.yaml


class BackfillError(MediacanonError):
    """The local backfill could not be started or did not finish in time."""


# -- the definition -------------------------------------------------------------------------------------------------


def load_definition(substitutions: dict[str, str], path: Path = ASL_PATH) -> dict[str, Any]:
    """The ASL with SAM's DefinitionSubstitutions applied (`${Name}` -> value)."""
    text = path.read_text(encoding="utf-8")
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", value)
    definition: dict[str, Any] = json.loads(text)
    return definition


def substitutions(
    function_arn: str,
    media_map: MediaMap,
    partition: str = "aws",
    objects_machine_arn: str = "",
) -> dict[str, str]:
    """The DefinitionSubstitutions template.yaml gives the two state machines, for a local run (the objects machine
    uses the first three; its ARN is the backfill's, for its startExecution.sync:2)."""
    return {
        "BackfillFunctionArn": function_arn,
        "PrimaryBucketName": media_map.buckets.primary,
        "Partition": partition,
        "ReportsPrefix": media_map.reports_prefix,
        "BackfillObjectsStateMachineArn": objects_machine_arn,
    }


def moto_compatible(definition: dict[str, Any], state_input: dict[str, Any] | None = None) -> dict[str, Any]:
    """The definition moto 5.2 can parse and run: every ItemBatcher becomes an ItemSelector giving each child the
    envelope AWS gives a batch ({"Items": [...], "BatchInput": ...}), its items being the batch `_PagedS3` read
    (see `item_batching`). And moto evaluates a ResultWriter's Parameters against the map's result, not the state's
    input as AWS does (result_writer/result_writer_decl.py): a `"Prefix.$": "$.name"` there becomes the literal
    `state_input["name"]`, which the local run knows before it starts. Nothing else changes."""
    out = copy.deepcopy(definition)
    for state in _states(out):
        writer = state.get("ResultWriter")
        if writer is not None:
            parameters = writer.get("Parameters", {})
            for name in [n for n in parameters if n.endswith(".$")]:
                path = parameters.pop(name)
                if state_input is None or not path.startswith("$.") or path[2:] not in state_input:
                    raise ValueError(f"ResultWriter parameter {name}: {path} needs its value for moto (state_input)")
                parameters[name[:-2]] = state_input[path[2:]]
        config = state.get("ItemReader", {}).get("ReaderConfig", {})
        if config.get("InputType") == "MANIFEST":  # no S3 Inventory reader: _PagedS3.get_object gives its items
            config["InputType"] = "JSON"
        batcher = state.pop("ItemBatcher", None)
        if batcher is None:
            continue
        if "ItemSelector" in state:
            raise ValueError("a Map with both ItemBatcher and ItemSelector has no moto equivalent here")
        state["ItemSelector"] = {"Items.$": "$$.Map.Item.Value", "BatchInput": batcher.get("BatchInput", {})}
    return out


@dataclass(frozen=True)
class Batching:
    """An ItemBatcher's bounds: a batch closes at `max_items` items or before it would pass `max_bytes`."""

    max_items: int
    max_bytes: int | None = None

    def batches(self, items: list[dict[str, Any]], batch_input: dict[str, Any] | None = None) -> list[list[dict[str, Any]]]:
        """`items` in batches as Step Functions makes them: in order, each within both bounds. The bytes counted are
        the child execution's input ({"Items": [...], "BatchInput": ...}) as JSON; an item too big for any batch
        still gets one of its own (AWS then fails that child, and so does the worker's state input)."""
        out: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        envelope = len(json.dumps({"Items": [], "BatchInput": batch_input or {}}, separators=(",", ":")))
        size = envelope
        for item in items:
            item_size = len(json.dumps(item, separators=(",", ":"), default=str).encode()) + (1 if current else 0)
            full = len(current) >= self.max_items or (self.max_bytes is not None and size + item_size > self.max_bytes)
            if current and full:
                out.append(current)
                current, size = [], envelope
                item_size -= 1
            current.append(item)
            size += item_size
        if current:
            out.append(current)
        return out


def item_batching(*definitions: dict[str, Any]) -> Batching | None:
    """The definitions' ItemBatcher bounds (one for all: the local reader batches every listing)."""
    found = {
        Batching(int(b["MaxItemsPerBatch"]), int(b["MaxInputBytesPerBatch"]) if "MaxInputBytesPerBatch" in b else None)
        for definition in definitions
        for state in _states(definition)
        if (b := state.get("ItemBatcher")) is not None
    }
    if len(found) > 1:
        raise ValueError(f"ItemBatchers of different bounds {sorted(found, key=str)} have no local equivalent here")
    return next(iter(found), None)


def _states(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in node.get("States", {}).values():
        yield state
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if isinstance(nested, dict):
                yield from _states(nested)


# -- the in-process control plane -------------------------------------------------------------------------------------


class _PagedS3:
    """The executor's S3 client: all pages of ListObjectsV2, items shaped as AWS's ItemReader gives them, and, when
    the definition batches them (ItemBatcher), grouped into batches here, since moto's executor cannot."""

    def __init__(self, client: Any, batching: Batching | None = None, inventory: tuple[str, str] | None = None) -> None:
        self._client = client
        self._batching = batching
        self._inventory = inventory  # the run's S3 Inventory manifest (bucket, key), if it has one

    def get_object(self, **params: Any) -> dict[str, Any]:
        """The inventory manifest's getObject of the map's reader: the inventory's rows, as AWS's MANIFEST reader
        gives them (every value a string), in batches when the definition batches; any other object as it is."""
        if self._inventory is None or (params.get("Bucket"), params.get("Key")) != self._inventory:
            return self._client.get_object(**params)  # type: ignore[no-any-return]
        from mediacanon.adapters.s3 import S3Adapter
        from mediacanon.backfill.inventory import iter_inventory_items, parse_manifest

        s3 = S3Adapter(self._client)
        bucket, key = self._inventory
        items: list[dict[str, Any]] = list(iter_inventory_items(s3, parse_manifest(s3.get_bytes(bucket, key), bucket, key)))
        body = self._batching.batches(items) if self._batching is not None else items
        return {"Body": io.BytesIO(json.dumps(body).encode())}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        contents = []
        for page in self._client.get_paginator("list_objects_v2").paginate(**params):
            for obj in page.get("Contents", []):
                contents.append(
                    {
                        "Etag": obj["ETag"],
                        "Key": obj["Key"],
                        "LastModified": int(obj["LastModified"].timestamp()),
                        "Size": obj["Size"],
                        "StorageClass": obj.get("StorageClass", "STANDARD"),
                    }
                )
        if self._batching is not None:
            return {"Contents": self._batching.batches(contents)}
        return {"Contents": contents}


class _PascalSfn:
    """The executor's Step Functions client for its `states:startExecution.sync:2` tasks: moto's integration
    (state_task_service_sfn.py) calls boto3 with the ASL's parameter names (StateMachineArn, Input, Name), which
    boto3's serializer refuses (it wants stateMachineArn), and reads the answer's ExecutionArn where boto3 says
    executionArn. AWS's integration takes and gives the Pascal-case names; this client turns the names both ways."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(**params: Any) -> Any:
            answer = method(**{k[:1].lower() + k[1:]: v for k, v in params.items()})
            if isinstance(answer, dict):
                return {**answer, **{k[:1].upper() + k[1:]: v for k, v in answer.items()}}
            return answer

        return call


def _client(service: str, **kwargs: Any) -> Any:
    return boto3.client(service, **kwargs)  # type: ignore[call-overload]


def _data_client(endpoint_url: str | None) -> Any:
    """An S3 client on the data endpoint, configured as the Lambda functions' (the adapter's CLIENT_CONFIG: botocore's
    standard retry mode, bounded attempts), so a 503 SlowDown meets the same backoff locally as deployed."""
    from mediacanon.adapters.s3 import CLIENT_CONFIG

    credentials = (
        None if boto3.Session().get_credentials() else {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    )
    return _client("s3", endpoint_url=endpoint_url, region_name=REGION, config=CLIENT_CONFIG, **(credentials or {}))


_active: dict[str, Any] = {}  # the running local backfill's routing: one per process at a time
_run_lock = threading.Lock()
_installed = False


def _install_routing() -> None:
    """Patch moto's executor once per process: its service clients and Lambda invocations ask `_active`.

    Once, and by indirection, because moto's modules bind `boto_client_for` by name when first imported, some
    lazily during an execution: a patch undone after each run would leave those holding a stale one."""
    global _installed
    if _installed:
        return
    from moto.awslambda.models import LambdaFunction
    from moto.stepfunctions.parser.asl.utils import boto_client as moto_boto_client

    original_client_for = moto_boto_client.boto_client_for
    original_invoke = LambdaFunction._invoke_lambda

    def client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        if not _active:
            return original_client_for(region, service, state_credentials)
        if service == "s3":
            return _PagedS3(_data_client(_active["endpoint_url"]), _active.get("batching"), _active.get("inventory"))
        client = _client(
            service,
            endpoint_url=_active["control_url"],
            region_name=region,
            aws_access_key_id="ak",
            aws_secret_access_key="sk",  # noqa: S106 - moto's
            # as moto's own: no client retries (the ASL's Retry decides), and a batch may take a task's full timeout
            config=Config(parameter_validation=False, retries={"total_max_attempts": 1}, read_timeout=TASK_TIMEOUT + 60),
        )
        return _PascalSfn(client) if service == "stepfunctions" else client

    def invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        if not _active:
            return original_invoke(self, event)  # type: ignore[no-any-return]
        try:
            return json.dumps(_active["invoke"](self.function_name, event or {}), default=str), False, ""
        except Exception as exc:  # a Lambda reports any exception as its function error
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": traceback.format_exc().splitlines()}
            return json.dumps(error), True, traceback.format_exc()

    LambdaFunction._invoke_lambda = invoke_lambda  # type: ignore[method-assign]
    for module in [m for name, m in list(sys.modules.items()) if name.startswith("moto.stepfunctions.parser") and m]:
        if getattr(module, "boto_client_for", None) is original_client_for:
            module.boto_client_for = client_for  # type: ignore[attr-defined]
    _installed = True


# moto's Distributed Map worker recurses once per item it takes from the pool (distributed_item_processor_worker
# ._eval_pool), so a map run of N items with MaxConcurrency C nests about 3 * N / C Python frames: past ~5,000
# objects per prefix the default limit of 1,000 raises RecursionError. Python 3.11+ frames live on the heap, so
# a higher limit plus roomier thread stacks (for the C parts of each call) lifts that (checked: bench/, 20,000).
RECURSION_LIMIT = 200_000
# Each prefix's objects workers here: one moto process on this machine's cores is the limit, not S3's partitions
# (the workers Prepare sizes for AWS would open hundreds of connections to it, each batch with its copy threads).
LOCAL_OBJECTS_WORKERS = 4
THREAD_STACK_BYTES = 256 * 1024 * 1024


def _deep_enough_for_moto() -> None:
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)
    if threading.stack_size() < THREAD_STACK_BYTES:
        threading.stack_size(THREAD_STACK_BYTES)  # for the executor threads moto starts from here on


@contextmanager
def _control_plane(endpoint_url: str | None, invoke: Callable[[str, dict[str, Any]], Any]) -> Iterator[str]:
    """A ThreadedMotoServer in this process, executing ASL, with Lambda invocations going to `invoke(name, event)`
    and the executor's S3 calls to `endpoint_url`. Yields its endpoint."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    from mediacanon.local.embedded import _moto_config, free_port

    if not _run_lock.acquire(blocking=False):
        raise BackfillError("another local backfill runs in this process")
    try:
        _install_routing()
        _deep_enough_for_moto()
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        control_url = f"http://127.0.0.1:{port}"
        server.start()
        try:
            _active.update(endpoint_url=endpoint_url, control_url=control_url, invoke=invoke)
            if _moto_config(control_url, {"stepfunctions": {"execute_state_machine": True}}) is None:
                raise BackfillError(f"the in-process moto server at {control_url} refused the Step Functions config")
            yield control_url
        finally:
            _active.clear()
            server.stop()
    finally:
        _run_lock.release()


# -- running a backfill ---------------------------------------------------------------------------------------------


def run_backfill(
    media_map: MediaMap,
    *,
    endpoint_url: str | None,
    database_url: str,
    dry_run: bool = False,
    phases: list[str] | None = None,
    fields: list[str] | None = None,
    prefixes: list[str] | None = None,
    max_deletes: int = DEFAULT_MAX_DELETES,
    progress: bool = True,
    name: str | None = None,
    timeout: float | None = None,
    max_connections: int = 12,
    inventory: str | None = None,
    inventory_max_age_days: float | None = None,
) -> BackfillResult:
    """Run the backfill state machine locally to the end; see the module docstring for how. `inventory`
    (s3://.../manifest.json, an S3 Inventory of the primary bucket) is the objects phase's source instead of a
    listing; Prepare refuses one older than `inventory_max_age_days` (default: backfill.inventory.DEFAULT_MAX_AGE)."""
    from psycopg_pool import ConnectionPool

    from mediacanon.adapters.db import Database
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.steps import Steps
    from mediacanon.wiring import Stores, connect

    # moto's executor logs every evaluated exception (IsPresent on a missing path included) and werkzeug logs
    # every request: the progress display is the signal here, the execution history has the details
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    # werkzeug also prints a traceback for each 500, and moto answers list_map_runs with one while an execution's
    # worker is not yet set up: map_runs takes that as "no map run yet", so the traceback is noise
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    logging.getLogger("moto").setLevel(logging.CRITICAL)  # the control plane only: its request errors are ours to report
    execution = name or f"backfill-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    payload: dict[str, Any] = {"dryRun": dry_run, "maxDeletes": max_deletes, "phases": list(phases or PHASES)}
    payload["objectsMaxConcurrency"] = LOCAL_OBJECTS_WORKERS
    if fields is not None:
        payload["fields"] = list(fields)
    if prefixes is not None:
        payload["prefixes"] = list(prefixes)
    payload.update(inventory_input(inventory, inventory_max_age_days))

    s3 = S3Adapter(_data_client(endpoint_url))
    # the map's children run in threads of this process, at once: one connection each, from a pool
    with ConnectionPool(database_url, min_size=1, max_size=max_connections, kwargs={"autocommit": True}, open=True) as pool:
        stores = connect(media_map, Database(pool), s3=s3)
        by_execution: dict[str, Stores] = {}  # the ledger of each execution: what rollback reverses
        lock = threading.Lock()

        def make_steps(execution_name: str) -> Steps:
            with lock:
                if execution_name not in by_execution:
                    by_execution[execution_name] = stores.for_execution(execution_name)
                return by_execution[execution_name].steps(owner_wait_seconds=0)

        function_name = f"mediacanon-backfill-{uuid.uuid4().hex[:8]}"

        failures: list[str] = []  # the tasks' errors, as Lambda reports them: type, message, the batch's first key

        def invoke(called: str, event: dict[str, Any]) -> dict[str, Any]:
            if called != function_name:
                raise BackfillError(f"unexpected Lambda function {called!r}")
            try:
                return run_task(event, make_steps)
            except Exception as exc:
                items = event.get("Items") or []
                where = f" (batch of {len(items)} from key {items[0].get('Key')!r})" if items else ""
                with lock:
                    failures.append(f"{type(exc).__name__}: {' '.join(str(exc).split())}{where}")
                raise

        with _control_plane(endpoint_url, invoke) as control_url:
            if inventory:
                from mediacanon.backfill.inventory import split_s3_uri

                _active["inventory"] = split_s3_uri(inventory)
            return _execute(
                control_url,
                media_map,
                function_name,
                execution,
                payload,
                progress=progress,
                timeout=timeout,
                watch=Watchdog(endpoint_url) if endpoint_url else None,
                failures=failures,
            )


def _execute(
    control_url: str,
    media_map: MediaMap,
    function_name: str,
    execution: str,
    payload: dict[str, Any],
    *,
    progress: bool,
    timeout: float | None,
    watch: Watchdog | None = None,
    failures: list[str] | None = None,
) -> BackfillResult:
    def client(service: str) -> Any:
        return _client(
            service,
            endpoint_url=control_url,
            region_name=REGION,
            aws_access_key_id="ak",
            aws_secret_access_key="sk",  # noqa: S106
        )

    iam, lam, sfn = client("iam"), client("lambda"), client("stepfunctions")
    role_arn = iam.create_role(
        RoleName=function_name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
            }
        ),
    )["Role"]["Arn"]
    function_arn = lam.create_function(
        FunctionName=function_name,
        Runtime="python3.13",
        Role=role_arn,
        Handler="app.lambda_handler",
        Code={"ZipFile": _empty_zip()},  # never run: the invocation is patched to run_task in this process
        Timeout=TASK_TIMEOUT,
    )["FunctionArn"]
    known = {"resultsPrefix": results_prefix(media_map, execution)}
    objects = load_definition(substitutions(function_arn, media_map), OBJECTS_ASL_PATH)
    objects_arn = sfn.create_state_machine(
        name=f"{function_name}-objects", definition=json.dumps(moto_compatible(objects, known)), roleArn=role_arn, type="STANDARD"
    )["stateMachineArn"]
    deployed = load_definition(substitutions(function_arn, media_map, objects_machine_arn=objects_arn))
    definition = moto_compatible(deployed, known)
    _active["batching"] = item_batching(deployed, objects)
    machine_arn = sfn.create_state_machine(
        name=function_name, definition=json.dumps(definition), roleArn=role_arn, type="STANDARD"
    )["stateMachineArn"]
    execution_arn = sfn.start_execution(stateMachineArn=machine_arn, name=execution, input=json.dumps(payload))["executionArn"]

    with MapRunProgress(progress) as bar:
        deadline = None if timeout is None else time.monotonic() + timeout
        runs: dict[str, dict[str, Any]] = {}
        while True:
            # map runs first: moto drops an execution's map-run records when it ends, so a run read after a
            # RUNNING status may already be gone (each is kept as last seen); the status read second decides
            runs = {**runs, **map_runs(sfn, execution_arn, objects_arn)}
            described = sfn.describe_execution(executionArn=execution_arn)
            bar.update(runs)
            if described["status"] != "RUNNING":
                break
            if deadline is not None and time.monotonic() > deadline:
                sfn.stop_execution(executionArn=execution_arn, error="Timeout", cause=f"local backfill ran over {timeout}s")
                raise BackfillError(f"{execution_arn} still running after {timeout}s: stopped")
            if watch is not None and watch.gone():
                # the tasks would retry for minutes against an endpoint that is not coming back: stop, as a
                # failure that names it (each phase is idempotent: a rerun on a live endpoint goes on from here)
                sfn.stop_execution(executionArn=execution_arn, error="EndpointConnectionError", cause=watch.cause)
                runs = {**runs, **map_runs(sfn, execution_arn, objects_arn)}
                described = sfn.describe_execution(executionArn=execution_arn)
                return BackfillResult(
                    execution_arn=execution_arn,
                    status=described["status"],
                    report_line=None,
                    report_keys=[],
                    map_run_counts={arn: run["itemCounts"] for arn, run in runs.items()},
                    error=f"EndpointConnectionError: {watch.cause}",
                )
            time.sleep(POLL_SECONDS)

    runs = {**runs, **final_map_runs(sfn, runs)}  # an objects execution may have ended between two polls
    status, error = described["status"], None
    if status != "SUCCEEDED":
        error = first_failure(sfn, execution_arn)
    counts = {arn: run["itemCounts"] for arn, run in runs.items()}
    for arn, run in runs.items():
        items = run["itemCounts"]
        failed = sum(items.get(k, 0) for k in FAILED_ITEM_COUNTS)
        tolerated = float(run.get("toleratedFailurePercentage") or 0.0)
        if failed and failed * 100.0 > tolerated * max(items.get("total", 0), 1) and status == "SUCCEEDED":
            status = "FAILED"  # what AWS does (States.ExceedToleratedFailureThreshold) and moto does not
            error = f"States.ExceedToleratedFailureThreshold: {failed} of {items.get('total')} items failed in {arn}"
    if error is not None and failures and failures[-1] not in error:
        error = f"{error}; last task error: {failures[-1]}"
    output = json.loads(described.get("output") or "{}") if described["status"] == "SUCCEEDED" else {}
    return BackfillResult(
        execution_arn=execution_arn,
        status=status,
        report_line=output.get("line"),
        report_keys=list(output.get("keys", [])),
        map_run_counts=counts,
        error=error,
        counts=dict(output.get("counts", {})),
        source_line=output.get("source"),
    )


def inventory_input(inventory: str | None, max_age_days: float | None) -> dict[str, Any]:
    """The execution input's inventory fields (Prepare reads them: backfill.tasks.objects_source); none for a listing."""
    given: dict[str, Any] = {}
    if inventory:
        given["inventory"] = inventory
    if max_age_days is not None:
        given["inventoryMaxAgeDays"] = max_age_days
    return given


def _empty_zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    raise NotImplementedError\n")
    return buffer.getvalue()
