"""What the three live handlers share: the record -> event parsing, and `StepRunner`, which runs one step per SQS
record with its log line and metric. The handlers (functions/normalize|replicate|link/app.py) stay thin: Powertools'
decorators, then the runner; the Steps they run come from mediacanon.wiring.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mediacanon.adapters.cdn import CdnInvalidations, invalidations_from_env
from mediacanon.steps import ObjectEvent, Outcome, OwnerNotReady, StepResult, Steps
from mediacanon.wiring import refresh_live_steps

StepName = Literal["normalize", "replicate", "link"]
F = TypeVar("F", bound=Callable[..., Any])


def replaced_on_cdn(result: StepResult) -> bool:
    """Whether a step changed what the CDN serves under an existing path (so a cached copy may be stale).

    StepResult does not say yet whether a mirror overwrote an existing CDN object or created a new one, so every
    mirror counts: a new key's path is invalidated needlessly, a replaced one is never left stale.
    """
    return result.outcome in (Outcome.MIRRORED, Outcome.UNMIRRORED)


def event_from_record(record: SQSRecord) -> ObjectEvent:
    """An SQS record whose body is an S3 event delivered through EventBridge."""
    body = record.json_body if isinstance(record.json_body, dict) else json.loads(record.body)
    s3_event = S3EventBridgeNotificationEvent(body)
    detail_type = EventBridgeEvent(body).detail_type
    if detail_type not in ("Object Created", "Object Deleted"):
        raise ValueError(f"unexpected detail-type {detail_type!r} in message {record.message_id}")
    obj = s3_event.detail.object
    first = record.attributes.approximate_first_receive_timestamp
    as_sent = str(obj.get("key") or "")
    return ObjectEvent(
        bucket=s3_event.detail.bucket.name,
        key=obj.key,  # Powertools decodes it once (unquote_plus), as S3's encoding of notification keys requires
        raw_key=as_sent if as_sent != obj.key else None,  # normalize falls back to it (Steps.normalize)
        created=detail_type == "Object Created",
        etag=obj.etag or None,
        sequencer=obj.get("sequencer"),
        version_id=obj.get("version-id"),
        first_received=int(first) / 1000 if first else None,
        reason=s3_event.detail.reason or None,  # PutObject, CopyObject, ...: what normalize reads (steps.UPLOAD_REASONS)
    )


# A record whose owner row is not committed yet (Django stores the file before it saves the row) comes back sooner
# than the queue's visibility timeout, which is sized for the longest copy (6 x the function's timeout, template.yaml):
# 30 s, then doubling, so the 5 receives span the owner wait (MEDIACANON_OWNER_WAIT_SECONDS, 300 s) and the last finds
# the key unowned and reports it instead of dead-lettering it.
OWNER_RETRY_FIRST_SECONDS = 30
OWNER_RETRY_MAX_SECONDS = 300


class OwnerRetries:
    """Sets a failed record's visibility timeout (ChangeMessageVisibility on its own queue, which each function's role
    may call) so that it is retried after a short, growing delay rather than the queue's visibility timeout."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    @staticmethod
    def delay(receive_count: int) -> int:
        return min(OWNER_RETRY_FIRST_SECONDS << max(receive_count - 1, 0), OWNER_RETRY_MAX_SECONDS)

    def retry_soon(self, record: SQSRecord, logger: Logger) -> None:
        """Best effort: should the call fail, the record comes back after the queue's visibility timeout anyway."""
        from botocore.exceptions import BotoCoreError, ClientError

        delay = self.delay(int(record.attributes.approximate_receive_count or 1))
        try:
            self.client.change_message_visibility(
                QueueUrl=record.queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=delay
            )
        except (BotoCoreError, ClientError) as exc:
            logger.warning("retry delay not set; the queue's visibility timeout applies", extra={"error": str(exc)})
            return
        logger.info("retry in", extra={"seconds": delay})


def traced(fn: F, *, handler: bool = False) -> F:
    """`fn` under Powertools' Tracer, or as it is when POWERTOOLS_TRACE_DISABLED is set (the template's default).

    Tracer's constructor imports and patches the X-Ray SDK even when disabled, ~150 ms of every cold start
    (bench/RESULTS.md); a disabled tracer is therefore never built. Lambda's Active tracing still records each
    invocation; the SDK only adds subsegments per S3 and database call (template parameter XRaySdkSubsegments)."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in {"1", "true", "yes", "on"}:
        return fn
    tracer = Tracer()
    wrapped = tracer.capture_lambda_handler(fn) if handler else tracer.capture_method(fn)
    return cast(F, wrapped)


Observer = Callable[[str, StepResult], None]


class StepRunner:
    """One live step on SQS records: each record parsed, its step run, its outcome logged and counted; a record whose
    owner row is not committed yet comes back soon (OwnerRetries); the replicate step's CDN paths replaced in a
    batch are invalidated at its end. A functions/<step>/app.py builds one at cold start (which reads and checks the
    settings: `steps` is mediacanon.wiring.live_steps) and calls it under its own Powertools decorators.

    `observe`, when set, is called with (step, result) after every record: the local runner counts outcomes with it."""

    def __init__(
        self,
        step: StepName,
        steps: Callable[[], Steps],
        logger: Logger,
        metrics: Metrics,
        *,
        owner_retries: OwnerRetries | None = None,
        observe: Observer | None = None,
    ) -> None:
        self.step = step
        self.steps = steps
        self.logger = logger
        self.metrics = metrics
        self.owner_retries = owner_retries if owner_retries is not None else OwnerRetries()
        self.observe = observe
        self.invalidations = invalidations_from_env() if step == "replicate" else None
        self.record_handler = traced(self.handle_record)
        steps()  # cold start: read and validate the media map and settings now, not at the first record

    def run(self, record: SQSRecord) -> StepResult:
        """Parse one record, run one step, log and count the outcome. Errors propagate: the batch processor reports
        the record as failed and SQS redelivers it (then dead-letters it after maxReceiveCount)."""
        event = event_from_record(record)
        self.logger.append_keys(key=event.key, bucket=event.bucket, sequencer=event.sequencer)
        result: StepResult = getattr(self.steps(), self.step)(event)
        warn = result.outcome in (Outcome.REFUSED, Outcome.COLLISION, Outcome.UNOWNED)
        (self.logger.warning if warn else self.logger.info)(
            result.outcome.value,
            extra={
                "detail": result.detail,
                "canonical_key": result.canonical_key,
                "rows_changed": result.rows_changed,
                "retired": result.retired,
            },
        )
        self.metrics.add_metric(name=result.outcome.value.capitalize(), unit=MetricUnit.Count, value=1)
        if result.retired:
            self.metrics.add_metric(name="Retired", unit=MetricUnit.Count, value=1)
        if self.observe is not None:
            self.observe(self.step, result)
        return result

    def handle_record(self, record: SQSRecord) -> None:
        """The batch processor's record handler."""
        self.logger.set_correlation_id(record.message_id)
        self.logger.remove_keys(["key", "bucket", "sequencer"])  # the previous record's: they must not label this one
        try:
            result = self.run(record)
        except Exception as exc:
            # SQS moves a message to the DLQ as it is: its reason is this line, under its message id (re-raised,
            # so the batch processor reports the record failed and SQS redelivers it)
            self.logger.warning("record failed", extra={"error": f"{type(exc).__name__}: {exc}"}, exc_info=True)
            if isinstance(exc, OwnerNotReady):
                self.owner_retries.retry_soon(record, self.logger)
            raise
        if self.invalidations is not None and replaced_on_cdn(result):
            self.invalidations.add_key(result.key)

    @contextmanager
    def batch(self, context: LambdaContext) -> Iterator[None]:
        """Around one invocation: settings refreshed first (wiring.refresh_live_steps), the CDN invalidated last."""
        refresh_live_steps(self.logger)
        try:
            yield
        finally:
            if self.invalidations is not None:
                _invalidate(self.invalidations, context.aws_request_id, self.logger, self.metrics)


def _invalidate(invalidations: CdnInvalidations, reference: str, logger: Logger, metrics: Metrics) -> None:
    """The batch's objects are in place whatever CloudFront answers (I3 holds): a failed invalidation only leaves
    a cached copy until it expires. Retrying the records could not help (they are mirrored now, so the retry
    would find nothing to invalidate), hence an error log and the InvalidationFailed metric its alarm watches."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        paths = invalidations.flush(f"mediacanon-{reference}")
    except (BotoCoreError, ClientError):
        logger.exception("cdn invalidation failed", extra={"distribution": invalidations.distribution_id})
        metrics.add_metric(name="InvalidationFailed", unit=MetricUnit.Count, value=1)
        return
    if paths:
        logger.info("cdn invalidated", extra={"distribution": invalidations.distribution_id, "paths": paths})
        metrics.add_metric(name="InvalidatedPaths", unit=MetricUnit.Count, value=len(paths))
