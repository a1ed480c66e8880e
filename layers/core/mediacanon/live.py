"""What the three Lambda handlers share: settings read once at cold start, the record → event parsing, and
running one step with its log line and metric. Handlers stay thin: decorators, then `run_record`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mediacanon import mediamap
from mediacanon.errors import ConfigError
from mediacanon.steps import ObjectEvent, Outcome, StepResult, Steps

StepName = Literal["normalize", "replicate", "link"]

# Called with (step, result) after every record; the local runner counts outcomes with it. Empty on Lambda.
observers: list[Callable[[str, StepResult], None]] = []


@dataclass(frozen=True)
class Settings:
    media_map: mediamap.MediaMap
    database_url: str
    owner_wait_seconds: float


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read once at cold start; a missing setting fails loudly here, not at the first record."""
    env = dict(os.environ) if env is None else env
    if env.get("MEDIACANON_CONFIG"):
        media_map = mediamap.load(env["MEDIACANON_CONFIG"])
    elif env.get("MEDIACANON_MEDIA_MAP_PARAMETER"):
        from aws_lambda_powertools.utilities import parameters

        name = env["MEDIACANON_MEDIA_MAP_PARAMETER"]
        media_map = mediamap.parse(_yaml(parameters.get_parameter(name, max_age=300)), source=f"ssm:{name}")
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

        secret = parameters.get_secret(env["MEDIACANON_DB_SECRET_ARN"], transform="json", max_age=300)
        database_url = _conninfo_from_secret(secret)
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


def _conninfo_from_secret(secret: Any) -> str:
    """An RDS / Secrets Manager database secret (host, port, username, password, dbname) as a conninfo."""
    from psycopg.conninfo import make_conninfo

    missing = [k for k in ("host", "username", "password") if k not in secret]
    if missing:
        raise ConfigError("MEDIACANON_DB_SECRET_ARN", "secret", f"lacks {missing}", "store an RDS-style JSON secret")
    return make_conninfo(
        host=secret["host"],
        port=str(secret.get("port", 5432)),
        user=secret["username"],
        password=secret["password"],
        dbname=secret.get("dbname", "postgres"),
    )


@cache
def steps() -> Steps:
    """The Steps of this execution environment, built once (adapters, pool) and reused across invocations."""
    from mediacanon.db import Database
    from mediacanon.ledger import Ledger
    from mediacanon.s3 import S3Adapter

    settings = load_settings()
    db = Database(settings.database_url)
    return Steps(
        settings.media_map, S3Adapter(), db, Ledger(db, settings.media_map.schema), owner_wait_seconds=settings.owner_wait_seconds
    )


def event_from_record(record: SQSRecord) -> ObjectEvent:
    """An SQS record whose body is an S3 event delivered through EventBridge."""
    body = record.json_body if isinstance(record.json_body, dict) else json.loads(record.body)
    s3_event = S3EventBridgeNotificationEvent(body)
    detail_type = EventBridgeEvent(body).detail_type
    if detail_type not in ("Object Created", "Object Deleted"):
        raise ValueError(f"unexpected detail-type {detail_type!r} in message {record.message_id}")
    obj = s3_event.detail.object
    first = record.attributes.approximate_first_receive_timestamp
    return ObjectEvent(
        bucket=s3_event.detail.bucket.name,
        key=obj.key,  # Powertools decodes it once (unquote_plus), as S3's encoding requires
        created=detail_type == "Object Created",
        etag=obj.etag or None,
        sequencer=obj.get("sequencer"),
        version_id=obj.get("version-id"),
        first_received=int(first) / 1000 if first else None,
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


def lambda_handler_for(step: StepName) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda handler of one step: Powertools' logger, tracer and metrics around a partial-batch SQS processor.

    The three functions differ only in their step, so they share this; each functions/<step>/app.py names its step.
    """
    logger = Logger()
    tracer = Tracer()
    metrics = Metrics()
    processor = BatchProcessor(event_type=EventType.SQS)
    steps()  # cold start: read and validate the media map and settings now, not at the first record

    @tracer.capture_method
    def record_handler(record: SQSRecord) -> None:
        logger.set_correlation_id(record.message_id)
        run_record(step, record, logger, metrics)

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return dict(process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context))

    return lambda_handler
