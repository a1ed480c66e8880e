"""The local stack's provisioning: what ``template.yaml`` declares (buckets with EventBridge notifications, queues
with their dead-letter queues, EventBridge rules targeting the queues), created on a moto server."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from mediacanon.core.errors import MediacanonError
from mediacanon.core.mediamap import MediaMap
from mediacanon.local.topology import PSEUDO_PARAMETERS, Target, Topology, load_topology

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# Stands in for the template's required DatabaseSecretArn; never read locally, because DATABASE_URL wins in
# mediacanon.wiring.load_settings.
LOCAL_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon-local-database"  # noqa: S105 - an ARN, not a secret


class LocalRunError(MediacanonError):
    """The local stack could not be provisioned or did not settle; the message says what to look at."""


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
