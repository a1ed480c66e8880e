"""What the three Lambda handlers share: settings read once at cold start, the record → event parsing, and
running one step with its log line and metric. Handlers stay thin: decorators, then `run_record`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, Literal, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

# the CDN invalidations are shared with the backfill's tasks; cdn_path and replaced_on_cdn stay importable from here
from mediacanon.adapters.cdn import CdnInvalidations, cdn_path, invalidations_from_env, replaced_on_cdn  # noqa: F401
from mediacanon.core import mediamap
from mediacanon.core.errors import ConfigError
from mediacanon.steps import ObjectEvent, Outcome, OwnerNotReady, StepResult, Steps

StepName = Literal["normalize", "replicate", "link"]
F = TypeVar("F", bound=Callable[..., Any])

# Called with (step, result) after every record; the local runner counts outcomes with it. Empty on Lambda.
observers: list[Callable[[str, StepResult], None]] = []


# How long a cold start's secret and media map stay cached (Powertools parameters): a rotated password or an
# edited map reaches a warm environment within this, without a call per invocation.
PARAMETER_MAX_AGE = 300


@dataclass(frozen=True)
class Settings:
    media_map: mediamap.MediaMap
    database_url: str = field(repr=False)  # holds the password when built from the secret: never in a log line
    owner_wait_seconds: float


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read once at cold start; a missing setting fails loudly here, not at the first record."""
    env = dict(os.environ) if env is None else env
    if env.get("MEDIACANON_CONFIG"):
        media_map = mediamap.load(env["MEDIACANON_CONFIG"])
    elif env.get("MEDIACANON_MEDIA_MAP_PARAMETER"):
        from aws_lambda_powertools.utilities import parameters

        name = env["MEDIACANON_MEDIA_MAP_PARAMETER"]
        media_map = mediamap.parse(_yaml(parameters.get_parameter(name, max_age=PARAMETER_MAX_AGE)), source=f"ssm:{name}")
    else:
        raise ConfigError(
            "environment",
            "MEDIACANON_CONFIG",
            "no media map configured",
            "set MEDIACANON_MEDIA_MAP_PARAMETER (SSM parameter name) or MEDIACANON_CONFIG (a file)",
        )
    if env.get("DATABASE_URL"):
        database_url = env["DATABASE_URL"]
    elif env.get("MEDIACANON_DB_SECRET_ARN"):
        from aws_lambda_powertools.utilities import parameters

        secret = parameters.get_secret(env["MEDIACANON_DB_SECRET_ARN"], transform="json", max_age=PARAMETER_MAX_AGE)
        database_url = _conninfo_from_secret(secret, host=env.get("MEDIACANON_DB_HOST") or None)
    else:
        raise ConfigError(
            "environment",
            "MEDIACANON_DB_SECRET_ARN",
            "no database configured",
            "set MEDIACANON_DB_SECRET_ARN (an RDS-style secret) or DATABASE_URL",
        )
    return Settings(media_map, database_url, float(env.get("MEDIACANON_OWNER_WAIT_SECONDS", "300")))


def _yaml(text: Any) -> Any:
    import yaml

    return yaml.safe_load(str(text))


def _conninfo_from_secret(secret: Any, host: str | None = None) -> str:
    """An RDS / Secrets Manager database secret (host, port, username, password, dbname) as a conninfo; `host`
    (an RDS Proxy endpoint, MEDIACANON_DB_HOST) replaces the secret's own."""
    from psycopg.conninfo import make_conninfo

    if not isinstance(secret, dict):
        raise ConfigError("MEDIACANON_DB_SECRET_ARN", "secret", "is not a JSON object", "store an RDS-style JSON secret")
    missing = [k for k in ("username", "password") if k not in secret] + ([] if host or "host" in secret else ["host"])
    if missing:  # names the keys only: the secret's values never reach an error message
        raise ConfigError("MEDIACANON_DB_SECRET_ARN", "secret", f"lacks {missing}", "store an RDS-style JSON secret")
    return make_conninfo(
        host=host or secret["host"],
        port=str(secret.get("port", 5432)),
        user=secret["username"],
        password=secret["password"],
        dbname=secret.get("dbname", "postgres"),
    )


_built_from: list[Settings] = []  # the settings the cached Steps was built from


@cache
def steps() -> Steps:
    """The Steps of this execution environment, built once (adapters, one database connection) and reused
    across invocations; refresh_steps() rebuilds it when its settings change."""
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter

    settings = load_settings()
    _built_from[:] = [settings]
    db = Database(settings.database_url)
    return Steps(
        settings.media_map, S3Adapter(), db, Ledger(db, settings.media_map.schema), owner_wait_seconds=settings.owner_wait_seconds
    )


def refresh_steps(logger: Logger | None = None) -> None:
    """Rebuild the cached Steps when its settings changed, so a rotated database secret or an edited media map
    reaches a warm environment once Powertools' cache expires (PARAMETER_MAX_AGE), not at its next cold start.
    Between changes this reads the cached parameters only: no AWS call, the same connection.

    When the new settings cannot be read (SSM or Secrets Manager unreachable, a media map edited into an
    invalid one), the environment keeps working with the settings it has: a cold start would fail loudly."""
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

    if not steps.cache_info().currsize:
        return
    try:
        fresh = load_settings()
    except (GetParameterError, TransformParameterError, ConfigError) as exc:
        if logger is not None:
            logger.warning("settings not refreshed; keeping the current ones", extra={"error": str(exc)})
        return
    if _built_from and fresh == _built_from[0]:
        return
    steps().db.close()
    steps.cache_clear()
    steps()


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


def run_record(step: StepName, record: SQSRecord, logger: Logger, metrics: Metrics) -> StepResult:
    """Parse one record, run one step, log and count the outcome. Errors propagate: the batch processor
    reports the record as failed and SQS redelivers it (then dead-letters it after maxReceiveCount)."""
    event = event_from_record(record)
    logger.append_keys(key=event.key, bucket=event.bucket, sequencer=event.sequencer)
    result: StepResult = getattr(steps(), step)(event)
    level = logger.warning if result.outcome in (Outcome.REFUSED, Outcome.COLLISION, Outcome.UNOWNED) else logger.info
    level(
        result.outcome.value,
        extra={
            "detail": result.detail,
            "canonical_key": result.canonical_key,
            "rows_changed": result.rows_changed,
            "retired": result.retired,
        },
    )
    metrics.add_metric(name=result.outcome.value.capitalize(), unit=MetricUnit.Count, value=1)
    if result.retired:
        metrics.add_metric(name="Retired", unit=MetricUnit.Count, value=1)
    for observe in observers:
        observe(step, result)
    return result


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


def lambda_handler_for(step: StepName) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda handler of one step: Powertools' logger, tracer and metrics around a partial-batch SQS processor.

    The three functions differ only in their step, so they share this; each functions/<step>/app.py names its step.
    """
    logger = Logger()
    metrics = Metrics()
    processor = BatchProcessor(event_type=EventType.SQS)
    steps()  # cold start: read and validate the media map and settings now, not at the first record
    invalidations = invalidations_from_env() if step == "replicate" else None
    owner_retries = OwnerRetries()

    @traced
    def record_handler(record: SQSRecord) -> None:
        logger.set_correlation_id(record.message_id)
        logger.remove_keys(["key", "bucket", "sequencer"])  # the previous record's: they must not label this one
        try:
            result = run_record(step, record, logger, metrics)
        except Exception as exc:
            # SQS moves a message to the DLQ as it is: its reason is this line, under its message id (re-raised,
            # so the batch processor reports the record failed and SQS redelivers it)
            logger.warning("record failed", extra={"error": f"{type(exc).__name__}: {exc}"}, exc_info=True)
            if isinstance(exc, OwnerNotReady):
                owner_retries.retry_soon(record, logger)
            raise
        if invalidations is not None:
            invalidations.add(result)

    @logger.inject_lambda_context
    @partial(traced, handler=True)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        refresh_steps(logger)
        try:
            return dict(
                process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
            )
        finally:
            if invalidations is not None:
                _invalidate(invalidations, context.aws_request_id, logger, metrics)

    return lambda_handler


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
