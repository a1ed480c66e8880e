"""The local runner: the live path of ``template.yaml`` on a moto server, its handlers run in this process.

``provision`` creates what the template declares (buckets with EventBridge notifications, queues with their
dead-letter queues, EventBridge rules targeting the queues); ``run`` is a small event-source mapping: it hands
each function SQS batches shaped exactly like Lambda's, deletes what succeeded and lets SQS redeliver (then
dead-letter) what failed.

Local deviations from AWS, each on purpose:

- A failed record comes back after ``retry_delay`` seconds (ChangeMessageVisibility), not after the queue's
  visibility timeout (360 s for link, 1800 s for the copying steps), so that a poison message still reaches its DLQ
  after maxReceiveCount, in seconds.
  The owner wait shrinks with it (``owner_wait``); it must stay below the time the retries span, or an upload
  whose row never comes would be dead-lettered instead of reported UNOWNED (on AWS: 300 s < 5 x 360 s).
- Functions run one batch at a time, in template order (no MaximumConcurrency, no batching window wait).
- moto's EventBridge bodies are rewritten into real S3's shape before the handler sees them (``s3_body``).
- moto sends no EventBridge event for a delete marker; the embedded moto server (``mediacanon.local.motoserver``) sends
  S3's "Object Deleted" one, so a key Django deletes is unmirrored here as on AWS.
- What a function writes (Powertools' JSON logs, its EMF metrics, the warnings Python prints to stderr) goes to
  ``run(log=...)``, the file CloudWatch Logs stands for, as one stream: never to the terminal of the run.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mediacanon.live import Observer
from mediacanon.local.inprocess import (
    DEFAULT_OWNER_WAIT,
    InProcessFunctions,
    functions_for,
    lambda_record,
    local_environment,
    s3_body,
    shutdown,
)
from mediacanon.local.provision import LocalRunError, LocalStack, provision, provision_media_map, topology_parameters
from mediacanon.local.topology import Function
from mediacanon.steps import Outcome, StepResult

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# what callers reach through this module: the stack, its functions, and the run
__all__ = [
    "DEFAULT_OWNER_WAIT",
    "IdleTimeout",
    "LocalRunError",
    "LocalStack",
    "Outcome",
    "RunReport",
    "functions_for",
    "lambda_record",
    "local_environment",
    "provision",
    "provision_media_map",
    "run",
    "shutdown",
    "topology_parameters",
]

DEFAULT_RETRY_DELAY = 1  # seconds; SQS visibility timeouts are whole seconds
DEFAULT_TIMEOUT = 120.0
SQS_MAX_RECEIVE = 10  # messages per ReceiveMessage / entries per *Batch call
IDLE_ROUNDS = 2  # consecutive empty rounds with empty queues before the stack counts as idle
POLL_INTERVAL = 0.2  # seconds between empty rounds, while failed records wait out their retry delay
PROGRESS_EVERY = 10.0  # seconds between two plain progress lines when stderr is not a terminal


class IdleTimeout(LocalRunError):
    """The queues still held messages when the run's timeout passed."""

    def __init__(self, timeout: float, depths: Mapping[str, int], report: RunReport) -> None:
        busy = ", ".join(f"{name}={depth}" for name, depth in depths.items())
        super().__init__(f"not idle after {timeout:.0f}s; queue depths (visible + in flight + delayed): {busy}")
        self.depths = dict(depths)
        self.report = report


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
