"""The local runner: the live path of ``template.yaml`` on a moto server, its handlers run in this process.

``provision`` creates what the template declares (buckets with EventBridge notifications, queues with their
dead-letter queues, EventBridge rules targeting the queues); ``run`` is a small event-source mapping: it hands
each function SQS batches shaped exactly like Lambda's, deletes what succeeded and lets SQS redeliver (then
dead-letter) what failed.

Local deviations from AWS, each on purpose:

- A failed record comes back after ``retry_delay`` seconds (ChangeMessageVisibility), not after the queue's
  400 s visibility timeout, so that a poison message still reaches its DLQ after maxReceiveCount, in seconds.
  The owner wait shrinks with it (``owner_wait``); it must stay below the time the retries span, or an upload
  whose row never comes would be dead-lettered instead of reported UNOWNED (on AWS: 300 s < 5 x 400 s).
- Functions run one batch at a time, in template order (no MaximumConcurrency, no batching window wait).
- moto's EventBridge bodies are rewritten into real S3's shape before the handler sees them (``s3_body``).
- moto sends no EventBridge event for a delete marker; the embedded moto server (``mediacanon.local.motoserver``) sends
  S3's "Object Deleted" one, so a key Django deletes is unmirrored here as on AWS.
- What a function writes (Powertools' JSON logs, its EMF metrics, the warnings Python prints to stderr) goes to
  ``run(log=...)``, the file CloudWatch Logs stands for, as one stream: never to the terminal of the run.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import itertools
import json
import logging
import os
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote_plus

import boto3
from botocore.exceptions import ClientError

from mediacanon import wiring
from mediacanon.core.errors import MediacanonError
from mediacanon.core.mediamap import MediaMap
from mediacanon.live import Observer, StepRunner
from mediacanon.local.topology import PSEUDO_PARAMETERS, Function, Target, Topology, load_topology
from mediacanon.steps import Outcome, StepResult

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# Stands in for the template's required DatabaseSecretArn; never read locally, because DATABASE_URL wins in
# mediacanon.wiring.load_settings.
LOCAL_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon-local-database"  # noqa: S105 - an ARN, not a secret
DEFAULT_OWNER_WAIT = 3.0  # seconds; < DEFAULT_RETRY_DELAY x (maxReceiveCount - 1), see the module docstring
DEFAULT_RETRY_DELAY = 1  # seconds; SQS visibility timeouts are whole seconds
DEFAULT_TIMEOUT = 120.0
DEFAULT_MEMORY_MB = 512  # the template's Globals.Function.MemorySize (topology.Function does not carry it)
SQS_MAX_RECEIVE = 10  # messages per ReceiveMessage / entries per *Batch call
IDLE_ROUNDS = 2  # consecutive empty rounds with empty queues before the stack counts as idle
POLL_INTERVAL = 0.2  # seconds between empty rounds, while failed records wait out their retry delay
PROGRESS_EVERY = 10.0  # seconds between two plain progress lines when stderr is not a terminal


class LocalRunError(MediacanonError):
    """The local stack could not be provisioned or did not settle; the message says what to look at."""


class IdleTimeout(LocalRunError):
    """The queues still held messages when the run's timeout passed."""

    def __init__(self, timeout: float, depths: Mapping[str, int], report: RunReport) -> None:
        busy = ", ".join(f"{name}={depth}" for name, depth in depths.items())
        super().__init__(f"not idle after {timeout:.0f}s; queue depths (visible + in flight + delayed): {busy}")
        self.depths = dict(depths)
        self.report = report


# -- provisioning ------------------------------------------------------------------------------------------


def topology_parameters(media_map: MediaMap) -> dict[str, str]:
    """The template parameters that build the stack for this media map's buckets."""
    b = media_map.buckets
    return {
        "PrimaryBucketName": b.primary,
        "CdnBucketName": b.cdn,
        "FallbackBucketNames": ",".join(b.fallbacks),
        "CreateBuckets": "true",
        "DatabaseSecretArn": LOCAL_SECRET_ARN,
    }


@dataclass(frozen=True)
class LocalStack:
    """What ``provision`` created: physical names and URLs by the template's logical ids."""

    topology: Topology
    stack_name: str
    endpoint_url: str | None
    region: str
    queue_urls: Mapping[str, str]  # queue logical id -> URL
    queue_arns: Mapping[str, str]
    function_queues: Mapping[str, str]  # function logical id -> queue logical id
    rule_names: Mapping[str, str]  # rule logical id -> rule name on the default bus
    buckets: tuple[str, ...]
    sqs: SQSClient = field(repr=False, compare=False)

    def dead_letter_queues(self) -> dict[str, str]:
        """Source queue logical id -> its DLQ's logical id."""
        return {q.logical_id: q.dlq_logical_id for q in self.topology.queues if q.dlq_logical_id}

    def depth(self, queue_logical_id: str) -> int:
        """Messages visible, in flight and delayed."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_urls[queue_logical_id],
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def depths(self) -> dict[str, int]:
        """Depth of every queue a function reads."""
        return {q: self.depth(q) for q in self.function_queues.values()}

    def dlq_depths(self) -> dict[str, int]:
        return {dlq: self.depth(dlq) for dlq in self.dead_letter_queues().values()}


def _client(service: str, endpoint_url: str | None, region: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region)  # type: ignore[call-overload]


def provision(
    topology: Topology,
    *,
    endpoint_url: str | None = None,
    stack_name: str = "mediacanon",
    fallback_buckets: Sequence[str] = (),
    region: str = PSEUDO_PARAMETERS["AWS::Region"],
    s3: S3Client | None = None,
    sqs: SQSClient | None = None,
    events: EventBridgeClient | None = None,
) -> LocalStack:
    """Create the topology's buckets, queues and rules (idempotent: a second call changes nothing).

    Queues and rules are named ``<stack_name>-<LogicalId>``; give each concurrent stack its own stack name.
    Fallback buckets (read-only sources) are created empty when missing, without notifications.
    Queue policies are not created: moto does not enforce them.
    """
    s3 = s3 or _client("s3", endpoint_url, region)
    sqs = sqs or _client("sqs", endpoint_url, region)
    events = events or _client("events", endpoint_url, region)
    try:
        for bucket in topology.buckets:
            _ensure_bucket(s3, bucket.name, region)
            # the template versions the buckets it creates; the steps rely on it (retire leaves a delete marker)
            s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
            # the template's EventBridgeEnabled; an existing bucket (CreateBuckets) needs it too for the live path
            s3.put_bucket_notification_configuration(
                Bucket=bucket.name, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        for name in fallback_buckets:
            _ensure_bucket(s3, name, region)

        urls: dict[str, str] = {}
        arns: dict[str, str] = {}
        # dead-letter queues first: a redrive policy names its DLQ's ARN
        for queue in sorted(topology.queues, key=lambda q: q.dlq_logical_id is not None):
            url = sqs.create_queue(QueueName=f"{stack_name}-{queue.logical_id}")["QueueUrl"]
            attributes = {"VisibilityTimeout": str(queue.visibility_timeout)}
            if queue.dlq_logical_id:
                redrive = {"deadLetterTargetArn": arns[queue.dlq_logical_id], "maxReceiveCount": queue.max_receive_count}
                attributes["RedrivePolicy"] = json.dumps(redrive)
            # set after creating, so a re-run with changed attributes updates rather than fails (QueueAlreadyExists)
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)  # type: ignore[arg-type]
            urls[queue.logical_id] = url
            arns[queue.logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

        rule_names: dict[str, str] = {}
        for rule in topology.rules:
            name = f"{stack_name}-{rule.logical_id}"
            events.put_rule(Name=name, EventPattern=json.dumps(rule.event_pattern), State="ENABLED")
            targets: list[Any] = [_target(t, arns) for t in rule.targets]
            events.put_targets(Rule=name, Targets=targets)
            rule_names[rule.logical_id] = name
    except ClientError as exc:
        raise LocalRunError(f"provisioning {stack_name} on {endpoint_url or 'AWS'} failed: {exc}") from exc

    return LocalStack(
        topology=topology,
        stack_name=stack_name,
        endpoint_url=endpoint_url,
        region=region,
        queue_urls=urls,
        queue_arns=arns,
        function_queues={fn.logical_id: fn.queue_logical_id for fn in topology.functions},
        rule_names=rule_names,
        buckets=tuple(b.name for b in topology.buckets) + tuple(fallback_buckets),
        sqs=sqs,
    )


def provision_media_map(
    media_map: MediaMap, template: str | Path, *, endpoint_url: str | None = None, stack_name: str = "mediacanon"
) -> LocalStack:
    """``provision`` for the stack that serves this media map (its buckets as the template parameters)."""
    topology = load_topology(template, topology_parameters(media_map))
    return provision(topology, endpoint_url=endpoint_url, stack_name=stack_name, fallback_buckets=media_map.buckets.fallbacks)


def _ensure_bucket(s3: S3Client, name: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=name)
        return
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]


# -- the event-source mapping ------------------------------------------------------------------------------


def s3_body(body: str) -> str:
    """A message body as real S3 → EventBridge would have sent it.

    moto sends ``detail.object.key`` unencoded and spells ``eTag`` where S3 spells ``etag``; real S3 URL-encodes
    the key (a space as ``+``) and the handlers decode it exactly once (Powertools' ``unquote_plus``). Without this,
    ``icons/a+b.png`` would reach the steps as ``icons/a b.png``. The ``eTag`` spelling is also how a moto body is
    told apart from a real-shaped one (``events/*.json``), which is already encoded and passes unchanged.
    moto's constant ``sequencer`` is left alone. Bodies that are not S3 events (poison) pass unchanged.
    """
    try:
        event = json.loads(body)
        obj = event["detail"]["object"]
    except (ValueError, TypeError, KeyError):
        return body
    if event.get("source") != "aws.s3" or not isinstance(obj, dict) or "etag" in obj or "eTag" not in obj:
        return body
    obj["key"] = quote_plus(str(obj["key"]), safe="/")
    obj["etag"] = obj.pop("eTag")
    return json.dumps(event)


def lambda_record(message: MessageTypeDef, *, queue_arn: str, region: str, body: str | None = None) -> dict[str, Any]:
    """One record of the event Lambda's SQS event source hands a function (``body`` replaces the message's)."""
    text = message["Body"] if body is None else body
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": text,
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": base64.b64encode(value["BinaryValue"]).decode() if "BinaryValue" in value else None,
                "stringListValues": list(value.get("StringListValues", [])),
                "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),  # noqa: S324 - SQS's checksum, of the body handed over
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


@dataclass
class LocalLambdaContext:
    """The parts of Lambda's context object that Powertools and the handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = DEFAULT_MEMORY_MB
    timeout: float = 60.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout - (time.monotonic() - self._started)) * 1000))


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_module_ids = itertools.count(1)


class InProcessFunctions:
    """The stack's handlers imported into this process: one warm execution environment per function.

    Handlers read their settings at cold start, and ``mediacanon.wiring.live_steps()`` is cached process-wide, so one
    environment at a time is live: building a new one closes the previous one's database connection.
    """

    def __init__(self, stack: LocalStack, environment: Mapping[str, str]) -> None:
        self.stack = stack
        self.environment = dict(environment)
        _reset_steps()
        self._modules: dict[str, ModuleType] = {}

    def env_for(self, fn: Function) -> dict[str, str]:
        """The template's environment for the function, then the local overrides."""
        return {**fn.environment, **self.environment, "AWS_DEFAULT_REGION": self.stack.region}

    def invoke(self, fn: Function, event: dict[str, Any], log: TextIO | None = None, observe: Observer | None = None) -> Any:
        """Run the function's handler on one event; with `log`, everything it writes goes there (see `_captured`);
        `observe` sees each record's result (a live function's `runner`: mediacanon.live.StepRunner)."""
        with _environment(self.env_for(fn)), _captured(log, f"{self.stack.stack_name}-{fn.logical_id}"):
            module = self._modules.get(fn.logical_id) or self._load(fn)
            runner = getattr(module, "runner", None)
            if isinstance(runner, StepRunner):
                runner.observe = observe
            handler: Callable[[dict[str, Any], LocalLambdaContext], Any] = getattr(module, fn.handler_name)
            account = PSEUDO_PARAMETERS["AWS::AccountId"]
            name = f"{self.stack.stack_name}-{fn.logical_id}"
            context = LocalLambdaContext(
                function_name=name,
                invoked_function_arn=f"arn:aws:lambda:{self.stack.region}:{account}:function:{name}",
                timeout=fn.timeout,
            )
            return handler(event, context)

    def _load(self, fn: Function) -> ModuleType:
        """Import the handler file (its cold start runs here, under the function's environment)."""
        path = self.stack.topology.root / fn.handler_path
        spec = importlib.util.spec_from_file_location(f"_mediacanon_local_{fn.logical_id}_{next(_module_ids)}", path)
        if spec is None or spec.loader is None:
            raise LocalRunError(f"{fn.logical_id}: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self._modules[fn.logical_id] = module
        return module

    def close(self) -> None:
        _reset_steps()
        self._modules.clear()


@contextmanager
def _captured(log: TextIO | None, function_name: str) -> Iterator[None]:
    """A function's output into `log`, as Lambda hands a function's stdout and stderr to CloudWatch Logs: print()
    (Powertools' EMF metrics), the handlers of Powertools' loggers, which hold the stream that was sys.stdout when
    the first one was made (maybe a terminal), and warnings, which Python would print to stderr (Powertools warns
    when a batch published no metric), each as a JSON line. Nothing is silenced: it is written where it belongs."""
    if log is None:
        yield
        return
    handlers = _powertools_handlers()
    saved = [h.setStream(log) for h in handlers]
    caught: list[warnings.WarningMessage] = []
    try:
        with redirect_stdout(log), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield  # a handler that raises (a batch whose every record failed) warns too: written below all the same
    finally:
        for handler, stream in zip(handlers, saved, strict=True):
            handler.setStream(stream)
        for w in caught:
            line = {
                "level": "WARNING",
                "location": f"{w.filename}:{w.lineno}",
                "message": str(w.message),
                "category": w.category.__name__,
                "function_name": function_name,
                "timestamp": time.strftime("%Y-%m-%d %H:%M:%S%z"),
            }
            log.write(json.dumps(line) + "\n")


def _powertools_handlers() -> list[logging.StreamHandler[Any]]:
    """The stream handlers Powertools' Logger installed (it marks the standard logger with `powertools_handler`)."""
    found: list[logging.StreamHandler[Any]] = []
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handler = getattr(logger, "powertools_handler", None)
        if isinstance(handler, logging.StreamHandler) and handler not in found:
            found.append(handler)
    return found


def _reset_steps() -> None:
    """Forget the cached Steps (closing its database connection), so the next cold start reads settings anew."""
    wiring.forget_live_steps()


_functions: InProcessFunctions | None = None


def functions_for(stack: LocalStack, environment: Mapping[str, str]) -> InProcessFunctions:
    """The warm handlers for this stack and environment, reused across runs; a change means a new cold start."""
    global _functions
    if _functions is None or _functions.stack is not stack or _functions.environment != dict(environment):
        if _functions is not None:
            _functions.close()
        _functions = InProcessFunctions(stack, environment)
    return _functions


def shutdown() -> None:
    """Close the warm handlers' resources (their database connection); the next run starts cold."""
    global _functions
    if _functions is not None:
        _functions.close()
        _functions = None


def local_environment(
    config: str | Path, database_url: str, *, endpoint_url: str | None, owner_wait: float = DEFAULT_OWNER_WAIT
) -> dict[str, str]:
    """The settings the handlers read at cold start, pointed at the local stack."""
    env = {
        "MEDIACANON_CONFIG": str(Path(config).resolve()),
        "DATABASE_URL": database_url,
        "MEDIACANON_OWNER_WAIT_SECONDS": str(owner_wait),
        "POWERTOOLS_METRICS_NAMESPACE": "mediacanon",
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
    }
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


# -- the run -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """A message as a queue handed it out (moto's body, before ``s3_body``): what a replay re-sends."""

    queue: str  # logical id
    body: str


@dataclass
class RunReport:
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (step, outcome) -> results
    copies: Counter[str] = field(default_factory=Counter)  # step -> results that copied an object
    rows_changed: int = 0
    retired: int = 0
    refused_keys: set[str] = field(default_factory=set)  # refused by any step (each step sees the same key)
    unowned_keys: set[str] = field(default_factory=set)  # left for the backfill: no row owned them after the wait
    records: int = 0  # records handed to a handler (a retried one counts at every delivery)
    failed_records: int = 0  # records a handler failed (each will come back, or go to the DLQ)
    batches: int = 0
    errors: list[str] = field(default_factory=list)  # escaped handler exceptions (whole batch failed), latest 20
    dlq_depths: dict[str, int] = field(default_factory=dict)  # DLQ logical id -> messages at the end of the run
    deliveries: list[Delivery] = field(default_factory=list)  # only with run(capture=True)
    elapsed: float = 0.0

    def observe(self, step: str, result: StepResult) -> None:
        self.outcomes[step, result.outcome.value] += 1
        if result.copied:
            self.copies[step] += 1
        self.rows_changed += result.rows_changed
        self.retired += int(result.retired)
        if result.outcome == Outcome.REFUSED:
            self.refused_keys.add(result.key)
        if result.outcome == Outcome.UNOWNED:
            self.unowned_keys.add(result.key)

    def count(self, outcome: Outcome, step: str | None = None) -> int:
        return sum(n for (s, o), n in self.outcomes.items() if o == outcome.value and step in (None, s))

    @property
    def failed(self) -> int:
        """Messages in the dead-letter queues (those of earlier runs included: they stay until redriven)."""
        return sum(self.dlq_depths.values())

    @property
    def totals(self) -> dict[str, int]:
        """What the run did, the numbers of its ``DONE |`` line and of `mediacanon local run`'s table: ``normalized``
        counts copies to a canonical key (a NORMALIZED result that found the canonical key already holding the bytes
        copied nothing); ``linked`` counts database rows moved, like the backfill's line, not LINKED results (one
        result can move several rows); ``refused`` counts keys, not results (normalize and replicate both refuse the
        same upload); ``failed`` counts messages in the dead-letter queues."""
        return {
            "normalized": self.copies["normalize"],
            "mirrored": self.count(Outcome.MIRRORED),
            "linked": self.rows_changed,
            "retired": self.retired,
            "refused": len(self.refused_keys),
            "failed": self.failed,
        }

    @property
    def line(self) -> str:
        return "DONE | " + " ".join(f"{name}={n}" for name, n in self.totals.items())

    def table(self) -> list[tuple[str, int, str]]:
        """(name, count, meaning) rows: the ``DONE |`` line's numbers under the same names (``totals``), then the
        keys left for the backfill, then every step's results, which count deliveries (a retried record at each
        one) and are named apart from the totals, so that no row reads as another number of the line."""
        normalized = self.count(Outcome.NORMALIZED, "normalize")
        rows = [
            ("normalized", self.totals["normalized"], "objects copied to their canonical key"),
            ("mirrored", self.totals["mirrored"], "objects copied to the CDN bucket"),
            ("linked", self.totals["linked"], "database rows moved to a canonical key"),
            ("retired", self.totals["retired"], "sources deleted once no row referenced them"),
            ("refused", self.totals["refused"], "keys never touched (unsafe or unusable names)"),
            ("failed", self.totals["failed"], "messages in the dead-letter queues"),
            ("unowned", len(self.unowned_keys), "uploads no row owned after the wait: left for the backfill"),
        ]
        for (step, outcome), n in sorted(self.outcomes.items()):
            if (step, outcome) == ("normalize", Outcome.NORMALIZED.value):
                if self.copies["normalize"]:
                    rows.append(("normalize results: copied", self.copies["normalize"], "results that made the copy"))
                if normalized - self.copies["normalize"]:
                    rows.append(
                        (
                            "normalize results: already there",
                            normalized - self.copies["normalize"],
                            "the canonical key already held the bytes: nothing copied",
                        )
                    )
                continue
            rows.append((f"{step} results: {outcome}", n, "results, a redelivered record at each delivery"))
        return rows


def run(
    stack: LocalStack,
    *,
    config: str | Path,
    database_url: str,
    owner_wait: float = DEFAULT_OWNER_WAIT,
    until_idle: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT,
    retry_delay: int = DEFAULT_RETRY_DELAY,
    capture: bool = False,
    environment: Mapping[str, str] | None = None,
    progress: bool | None = None,
    log: TextIO | None = None,
    progress_every: float = PROGRESS_EVERY,
    observe: Observer | None = None,
) -> RunReport:
    """Feed every function its queue's batches until the stack is idle (``until_idle``), or for ``timeout``
    seconds (``until_idle=False``; None: until interrupted). Raises IdleTimeout when not idle in time.

    ``environment`` adds to or overrides what the handlers see (e.g. ``{"LOG_LEVEL": "WARNING"}``);
    ``log`` receives everything the handlers write (their JSON logs, EMF metrics and warnings: ``_captured``);
    without it they write where they would anyway (stdout, stderr). ``progress`` shows it on stderr: on a
    terminal a live status line, elsewhere a plain line every ``progress_every`` seconds (None, the default:
    either, as stderr is a terminal or not; False: nothing). ``observe`` sees each record's (step, result) after
    the report has counted it.
    """
    _check_retry_window(stack, owner_wait, retry_delay)
    env = {
        **local_environment(config, database_url, endpoint_url=stack.endpoint_url, owner_wait=owner_wait),
        **(environment or {}),
    }
    functions = functions_for(stack, env)
    report = RunReport()

    def observer(step: str, result: StepResult) -> None:
        report.observe(step, result)
        if observe is not None:
            observe(step, result)

    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    quiet = 0
    try:
        with _Progress(progress, progress_every) as display:
            while True:
                processed = sum(
                    _poll(stack, functions, fn, report, retry_delay, capture, log, observer) for fn in stack.topology.functions
                )
                depths = stack.depths() if not processed else {}
                display.update(stack, report, depths)
                quiet = quiet + 1 if not processed and not any(depths.values()) else 0
                if until_idle and quiet >= IDLE_ROUNDS:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    if until_idle:
                        report.dlq_depths = stack.dlq_depths()
                        report.elapsed = time.monotonic() - started
                        raise IdleTimeout(timeout or 0.0, depths or stack.depths(), report)
                    break
                if not processed:
                    time.sleep(POLL_INTERVAL)  # failed records are invisible for retry_delay: poll again shortly
    except KeyboardInterrupt:
        if until_idle:
            raise
    report.dlq_depths = stack.dlq_depths()
    report.elapsed = time.monotonic() - started
    return report


def _check_retry_window(stack: LocalStack, owner_wait: float, retry_delay: int) -> None:
    for queue in stack.topology.queues:
        if queue.max_receive_count and owner_wait >= retry_delay * (queue.max_receive_count - 1):
            raise ValueError(
                f"owner_wait={owner_wait}s must be shorter than retry_delay={retry_delay}s x (maxReceiveCount "
                f"{queue.max_receive_count} - 1) of {queue.logical_id}: else an upload whose row never comes is "
                "dead-lettered instead of reported unowned"
            )


def _poll(
    stack: LocalStack,
    functions: InProcessFunctions,
    fn: Function,
    report: RunReport,
    retry_delay: int,
    capture: bool,
    log: TextIO | None = None,
    observe: Observer | None = None,
) -> int:
    """Receive one batch for the function, invoke it, settle every record; returns the records handled."""
    queue = fn.queue_logical_id
    url = stack.queue_urls[queue]
    messages: list[MessageTypeDef] = []
    while len(messages) < fn.batch_size:  # SQS hands out at most 10 a call; Lambda fills the batch from several
        received = stack.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(SQS_MAX_RECEIVE, fn.batch_size - len(messages)),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not received:
            break
        messages.extend(received)
    if not messages:
        return 0
    handles = {m["MessageId"]: m["ReceiptHandle"] for m in messages}
    settled = False
    try:
        event = {
            "Records": [
                lambda_record(m, queue_arn=stack.queue_arns[queue], region=stack.region, body=s3_body(m["Body"]))
                for m in messages
            ]
        }
        if capture:
            report.deliveries.extend(Delivery(queue, m["Body"]) for m in messages)
        failed = _invoke(functions, fn, event, report, log, observe)
        report.batches += 1
        report.records += len(messages)
        report.failed_records += len(failed)
        _settle(stack.sqs, url, handles, failed, retry_delay)
        settled = True
    finally:
        if not settled:  # the runner itself was interrupted: hand the batch back at once rather than in 400 s
            _release(stack.sqs, url, list(handles.values()), 0)
    return len(messages)


def _invoke(
    functions: InProcessFunctions,
    fn: Function,
    event: dict[str, Any],
    report: RunReport,
    log: TextIO | None = None,
    observe: Observer | None = None,
) -> set[str]:
    """The message ids that failed, as the event-source mapping reads a handler's answer."""
    every = {r["messageId"] for r in event["Records"]}
    try:
        response = functions.invoke(fn, event, log, observe)
    except Exception as exc:  # an escaped exception fails the whole batch, as on Lambda (Powertools raises it
        # when every record failed); the records come back and, after maxReceiveCount, reach the DLQ
        report.errors = [*report.errors[-19:], f"{fn.logical_id}: {type(exc).__name__}: {exc}"]
        return every
    if not fn.report_batch_item_failures:
        return set()
    if response is None:
        return set()
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if failures is None:
        return set() if isinstance(response, dict) else every
    ids = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
    if len(ids) != len(failures) or not ids <= every:  # Lambda treats a malformed answer as a whole-batch failure
        return every
    return {i for i in ids if isinstance(i, str)}


def _settle(sqs: SQSClient, url: str, handles: Mapping[str, str], failed: set[str], retry_delay: int) -> None:
    done = [(i, h) for i, h in handles.items() if i not in failed]
    for chunk in _chunks(done):
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": h} for n, (_, h) in enumerate(chunk)])
    _release(sqs, url, [handles[i] for i in failed], retry_delay)


def _target(target: Target, arns: Mapping[str, str]) -> dict[str, Any]:
    """A rule target as template.yaml gives it: the queue, its retry policy and the rule's own dead-letter queue."""
    out: dict[str, Any] = {"Id": target.queue_logical_id, "Arn": arns[target.queue_logical_id]}
    if target.dead_letter_queue_logical_id is not None:
        out["DeadLetterConfig"] = {"Arn": arns[target.dead_letter_queue_logical_id]}
    retry = {
        k: v
        for k, v in (
            ("MaximumRetryAttempts", target.maximum_retry_attempts),
            ("MaximumEventAgeInSeconds", target.maximum_event_age),
        )
        if v is not None
    }
    if retry:
        out["RetryPolicy"] = retry
    return out


def _release(sqs: SQSClient, url: str, receipt_handles: Sequence[str], visibility: int) -> None:
    """Make messages visible again after ``visibility`` seconds (on AWS: after the queue's visibility timeout)."""
    for chunk in _chunks(list(receipt_handles)):
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[{"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": visibility} for n, h in enumerate(chunk)],
        )


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), SQS_MAX_RECEIVE):
        yield items[start : start + SQS_MAX_RECEIVE]


# -- progress ----------------------------------------------------------------------------------------------


class _Progress:
    """The run's progress on stderr: a rich status line on a terminal; elsewhere (CI logs, pipes) a plain line every
    `every` seconds, ``local run: 120 messages, queues: normalize 3 replicate 0 link 1``; or nothing."""

    def __init__(self, enabled: bool | None, every: float, stream: TextIO | None = None) -> None:
        from rich.console import Console

        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream)
        self.mode = "off" if enabled is False else "status" if self.console.is_terminal else "lines"
        self.every = every
        self.status: Any = None
        self.last = time.monotonic()

    def __enter__(self) -> _Progress:
        if self.mode == "status":
            self.status = self.console.status("starting ...")
            self.status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)

    def update(self, stack: LocalStack, report: RunReport, depths: Mapping[str, int]) -> None:
        if self.mode == "status":
            self.status.update(_status_text(stack, report, depths))
        elif self.mode == "lines" and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(progress_line(stack, report, depths or stack.depths()), file=self.stream, flush=True)


def _queue_name(queue_logical_id: str) -> str:
    return queue_logical_id.removesuffix("Queue").lower() or queue_logical_id


def progress_line(stack: LocalStack, report: RunReport, depths: Mapping[str, int]) -> str:
    """``local run: 120 messages, queues: normalize 3 replicate 0 link 1`` (messages handed to a handler so far)."""
    queued = " ".join(f"{_queue_name(q)} {depths.get(q, 0)}" for q in stack.function_queues.values())
    return f"local run: {report.records} messages, queues: {queued}"


def _status_text(stack: LocalStack, report: RunReport, depths: Mapping[str, int]) -> str:
    queued = " ".join(f"{_queue_name(q)} {d}" for q, d in depths.items()) or "-"
    return f"{report.records} messages, {report.failed_records} failed | {report.line.removeprefix('DONE | ')} | queued: {queued}"
