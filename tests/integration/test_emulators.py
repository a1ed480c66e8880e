"""Where moto and LocalStack disagree on what the live path depends on, and which one real S3 follows.

Each test asks the session's emulator (``--emulator=moto``, the default, or ``--emulator=localstack``) one question and
checks the answer against a `Disagreement`: what moto answers, what LocalStack answers, what AWS answers and the AWS
document that says so. An emulator that starts answering otherwise (an upgrade) fails here first, with the table
to update beside it; the product code must hold on AWS's column. `make test` runs this module on both emulators.

Observed with moto 5.2.5 (requirements/dev.txt) and LocalStack 2026.3.0 (requirements/localstack.txt).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration

OTHER_ETAG = '"' + "0" * 32 + '"'  # an ETag no object here has


@dataclass(frozen=True)
class Disagreement:
    moto: Any
    localstack: Any
    aws: Any
    doc: str  # the AWS document that says what S3 does

    def answer(self, emulator: str) -> Any:
        return self.moto if emulator == "moto" else self.localstack

    @property
    def follows_aws(self) -> tuple[str, ...]:
        return tuple(name for name in ("moto", "localstack") if getattr(self, name) == self.aws)


def outcome(call: Callable[[], Any]) -> str:
    """'ok', or the error code and HTTP status the call answered with."""
    try:
        call()
    except ClientError as exc:
        return f"{exc.response['Error'].get('Code')} {exc.response['ResponseMetadata']['HTTPStatusCode']}"
    return "ok"


# -- conditional requests ----------------------------------------------------------------------------------

# mediacanon.adapters.s3.S3Adapter.delete_if_match (the live path's retire): S3 has taken If-Match on DeleteObject in general
# purpose buckets since 2025-09-16 (412 on another ETag, 404 on a missing key). LocalStack answers 501 NotImplemented
# whatever the ETag, as it did when AWS allowed it on directory buckets only (localstack/localstack#12787; open:
# #13894 "If-Match on DeleteObject"). moto follows AWS.
DELETE_IF_MATCH = Disagreement(
    moto={"other etag": "PreconditionFailed 412", "missing key": "NoSuchKey 404", "its etag": "ok"},
    localstack={"other etag": "NotImplemented 501", "missing key": "NotImplemented 501", "its etag": "NotImplemented 501"},
    aws={"other etag": "PreconditionFailed 412", "missing key": "NoSuchKey 404", "its etag": "ok"},
    doc="https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html",
)

# mediacanon.adapters.s3.S3Adapter.copy / copy_as_is send CopySourceIfMatch with the ETag they read: S3 refuses the copy with
# 412 when the source has another ETag. moto ignores the header and copies; LocalStack follows AWS.
COPY_SOURCE_IF_MATCH = Disagreement(
    moto="ok",
    localstack="PreconditionFailed 412",
    aws="PreconditionFailed 412",
    doc="https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html (x-amz-copy-source-if-match)",
)

# mediacanon.adapters.s3.S3Adapter.delete_if_unchanged (the backfill's deletes): DeleteObjects with a per-object <ETag> deletes
# an object only while it has that ETag. Here the emulators agree, and neither follows AWS: both delete it anyway
# (so the tests that need the condition do it themselves, e.g. tests/property's S3Semantics).
DELETE_OBJECTS_ETAG = Disagreement(
    moto="deleted",
    localstack="deleted",
    aws="PreconditionFailed",
    doc="https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html (DeleteObjects: the ETag element)",
)


def test_delete_object_if_match(s3_client: Any, bucket: Callable[[str], str], emulator: str) -> None:
    name = bucket("cond")
    etag = s3_client.put_object(Bucket=name, Key="k", Body=b"one")["ETag"]

    answers = {
        "other etag": outcome(lambda: s3_client.delete_object(Bucket=name, Key="k", IfMatch=OTHER_ETAG)),
        "missing key": outcome(lambda: s3_client.delete_object(Bucket=name, Key="nothing-here", IfMatch=etag)),
        "its etag": outcome(lambda: s3_client.delete_object(Bucket=name, Key="k", IfMatch=etag)),
    }

    assert answers == DELETE_IF_MATCH.answer(emulator)
    assert DELETE_IF_MATCH.follows_aws == ("moto",)


def test_copy_object_copy_source_if_match(s3_client: Any, bucket: Callable[[str], str], emulator: str) -> None:
    name = bucket("cond")
    s3_client.put_object(Bucket=name, Key="src", Body=b"one")

    answer = outcome(
        lambda: s3_client.copy_object(
            Bucket=name, Key="dst", CopySource={"Bucket": name, "Key": "src"}, CopySourceIfMatch=OTHER_ETAG
        )
    )

    assert answer == COPY_SOURCE_IF_MATCH.answer(emulator)
    assert COPY_SOURCE_IF_MATCH.follows_aws == ("localstack",)
    copied = outcome(lambda: s3_client.head_object(Bucket=name, Key="dst"))
    assert copied == ("ok" if answer == "ok" else "404 404")  # a refused copy writes nothing


def test_delete_objects_per_object_etag(s3_client: Any, bucket: Callable[[str], str], emulator: str) -> None:
    name = bucket("cond")
    s3_client.put_object(Bucket=name, Key="k", Body=b"one")

    answer = s3_client.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "k", "ETag": OTHER_ETAG}]})

    errors = [e["Code"] for e in answer.get("Errors", [])]
    seen = "deleted" if [d["Key"] for d in answer.get("Deleted", [])] == ["k"] and not errors else "/".join(errors)
    assert seen == DELETE_OBJECTS_ETAG.answer(emulator)
    assert DELETE_OBJECTS_ETAG.follows_aws == ()
    assert outcome(lambda: s3_client.head_object(Bucket=name, Key="k")) == ("404 404" if seen == "deleted" else "ok")


# -- S3 -> EventBridge events --------------------------------------------------------------------------------

EV_EVENTS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html"

# What S3 -> EventBridge delivers for PutObject, CopyObject, then DeleteObject on a versioned bucket: (detail-type,
# reason, deletion-type). moto itself sends no event for a delete marker; the project's moto server
# (mediacanon.local.motoserver, what `local up` and the tests start) adds S3's, so the replicate step's unmirror path runs
# locally too. moto names every write's reason "ObjectCreated"; the project's server sends S3's reason instead
# (motoserver.created_reasons), so locally an upload is told from a copy as on AWS (steps.UPLOAD_REASONS). moto adds an
# "Object Tags Added" event to every write though no tag was set. LocalStack follows AWS.
EVENTS_OF_PUT_COPY_DELETE = Disagreement(
    moto=[
        ("Object Created", "PutObject", None),
        ("Object Tags Added", "ObjectTagging", None),
        ("Object Created", "CopyObject", None),
        ("Object Deleted", "DeleteObject", "Delete Marker Created"),
    ],
    localstack=[
        ("Object Created", "PutObject", None),
        ("Object Created", "CopyObject", None),
        ("Object Deleted", "DeleteObject", "Delete Marker Created"),
    ],
    aws=[
        ("Object Created", "PutObject", None),
        ("Object Created", "CopyObject", None),
        ("Object Deleted", "DeleteObject", "Delete Marker Created"),
    ],
    doc=f"{EV_EVENTS} (Object Created, Object Deleted (using DeleteObject); the reason and deletion-type fields); "
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventBridge.html (Object Tags Added: PutObjectTagging)",
)

# detail.object of an Object Created event. AWS spells the ETag "etag" (moto: "eTag", which is how
# mediacanon.local.localrun.s3_body tells a moto body apart and rewrites it). The key: moto sends it as stored; LocalStack
# percent-encodes it (a space as %20); AWS documents S3's event keys URL-encoded, a space as "+" (ev-events.html does
# not spell it out; notification-content-structure.html: "red flower.jpg" becomes "red+flower.jpg"). The handlers
# decode once with unquote_plus, which reads LocalStack's and AWS's encodings alike. The sequencer: AWS's grows with
# every event of a key ("the event with the greater sequencer value occurred later"); both emulators send a constant
# (moto the documentation's example value), so neither orders a key's events.
OBJECT_FIELDS = Disagreement(
    moto={"etag field": "eTag", "key": "dir/a b+c é.png", "sequencer grows": False},
    localstack={"etag field": "etag", "key": "dir/a%20b%2Bc%20%C3%A9.png", "sequencer grows": False},
    aws={"etag field": "etag", "key": "dir/a+b%2Bc+%C3%A9.png", "sequencer grows": True},
    doc=f"{EV_EVENTS} (Event message detail field); "
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html (key, sequencer)",
)


@dataclass
class EventTap:
    """A versioned bucket with EventBridge notifications, and a queue that a rule sends its events to."""

    bucket: str
    sqs: Any
    queue_url: str

    def events(self, expected: int, detail_type: str | None = None, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The events delivered (of `detail_type`, or all), oldest first: once `expected` of them came (or `timeout`
        passed), and a second more for any late one (an event too many)."""
        bodies: list[dict[str, Any]] = []

        def matching() -> list[dict[str, Any]]:
            return [b for b in bodies if detail_type in (None, b["detail-type"])]

        deadline = time.monotonic() + timeout
        grace: float | None = None
        while time.monotonic() < (grace or deadline):
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in got.get("Messages", []):
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            if grace is None and len(matching()) >= expected:
                grace = time.monotonic() + 1.5
        return sorted(matching(), key=lambda b: b["time"])  # SQS standard queues do not keep order; "time" is to the second


@pytest.fixture
def tap(aws_endpoint: str, s3_client: Any, bucket: Callable[[str], str]) -> Iterator[EventTap]:
    name = bucket("events")
    s3_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3_client.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}})
    sqs = boto3.client("sqs", endpoint_url=aws_endpoint, region_name="us-east-1")
    events = boto3.client("events", endpoint_url=aws_endpoint, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"tap-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.s3"], "detail": {"bucket": {"name": [name]}}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "tap", "Arn": arn}])
    yield EventTap(name, sqs, queue_url)
    events.remove_targets(Rule=rule, Ids=["tap"])
    events.delete_rule(Name=rule)
    sqs.delete_queue(QueueUrl=queue_url)


def test_events_of_put_copy_and_delete(tap: EventTap, s3_client: Any, emulator: str) -> None:
    s3_client.put_object(Bucket=tap.bucket, Key="icons/a.png", Body=b"a")
    time.sleep(1.1)  # events are ordered by their "time", to the second
    s3_client.copy_object(Bucket=tap.bucket, Key="icons/b.png", CopySource={"Bucket": tap.bucket, "Key": "icons/a.png"})
    time.sleep(1.1)
    s3_client.delete_object(Bucket=tap.bucket, Key="icons/b.png")

    expected = EVENTS_OF_PUT_COPY_DELETE.answer(emulator)
    seen = [(e["detail-type"], e["detail"].get("reason"), e["detail"].get("deletion-type")) for e in tap.events(len(expected))]

    # moto's two events of one write share a second: compare as a multiset there, in order elsewhere
    assert (sorted(seen, key=str) if emulator == "moto" else seen) == (
        sorted(expected, key=str) if emulator == "moto" else expected
    )
    assert EVENTS_OF_PUT_COPY_DELETE.follows_aws == ("localstack",)


def test_object_fields_of_an_object_created_event(tap: EventTap, s3_client: Any, emulator: str) -> None:
    key = "dir/a b+c é.png"
    s3_client.put_object(Bucket=tap.bucket, Key=key, Body=b"one")
    time.sleep(1.1)
    s3_client.put_object(Bucket=tap.bucket, Key=key, Body=b"two")

    created = [e["detail"]["object"] for e in tap.events(2, "Object Created")]

    assert len(created) == 2, created
    seen = {
        "etag field": "etag" if "etag" in created[0] else "eTag",
        "key": created[0]["key"],
        "sequencer grows": int(created[0]["sequencer"], 16) < int(created[1]["sequencer"], 16),
    }
    assert seen == OBJECT_FIELDS.answer(emulator)
    assert OBJECT_FIELDS.follows_aws == ()  # on the key and the sequencer, neither does
