"""The sample events in events/ have the shape the functions receive: S3 -> EventBridge -> SQS.

Each file is an SQS event whose record body is the EventBridge event S3 emits. S3 URL-encodes the object key
form-style in it (a space arrives as '+', '(' as '%28'; '/' is kept), so the raw key is asserted too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventBridgeNotificationEvent

from mediacanon.core.naming import decode_event_key
from mediacanon.live import event_from_record
from mediacanon.local.topology import Topology, load_topology

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
PRIMARY, CDN = "archive-media", "archive-cdn"

# file -> (function, detail-type, bucket, raw key as S3 sends it, decoded key)
EXPECTED = {
    "normalize_object_created.json": (
        "NormalizeFunction", "Object Created", PRIMARY, "icons/nytimes_icon_v2_final.png", "icons/nytimes_icon_v2_final.png",
    ),
    "normalize_object_created_space.json": (
        "NormalizeFunction", "Object Created", PRIMARY,
        "mastheads/NYTimes_Masthead_FINAL+%281%29.JPG", "mastheads/NYTimes_Masthead_FINAL (1).JPG",
    ),
    "replicate_object_created.json": ("ReplicateFunction", "Object Created", PRIMARY, "icons/nytimes.png", "icons/nytimes.png"),
    "replicate_object_deleted.json": ("ReplicateFunction", "Object Deleted", PRIMARY, "icons/nytimes.png", "icons/nytimes.png"),
    "link_object_created.json": ("LinkFunction", "Object Created", CDN, "icons/nytimes.png", "icons/nytimes.png"),
}  # fmt: skip


@pytest.fixture(scope="module")
def topology() -> Topology:
    parameters = {
        "PrimaryBucketName": PRIMARY,
        "CdnBucketName": CDN,
        "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf",
    }
    return load_topology(ROOT / "template.yaml", parameters)


def test_every_event_file_is_exercised() -> None:
    assert sorted(p.name for p in EVENTS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_parses_as_s3_through_eventbridge_and_sqs(name: str) -> None:
    _function, detail_type, bucket, raw_key, key = EXPECTED[name]
    event = SQSEvent(json.loads((EVENTS / name).read_text(encoding="utf-8")))
    (record,) = event.records
    assert record.event_source == "aws:sqs"
    assert record["md5OfBody"] == hashlib.md5(record.body.encode()).hexdigest()  # noqa: S324 - SQS's own checksum

    s3_event = S3EventBridgeNotificationEvent(record.json_body)
    assert s3_event.source == "aws.s3"
    assert s3_event.detail_type == detail_type
    assert s3_event.resources == [f"arn:aws:s3:::{bucket}"]
    detail = s3_event.detail
    assert detail.bucket.name == bucket
    assert detail.object["key"] == raw_key
    assert decode_event_key(detail.object["key"]) == key
    assert detail.object.key == key  # Powertools decodes it too: decoding once more must not be needed
    assert detail.object.sequencer
    assert detail.object.version_id  # the buckets are versioned
    if detail_type == "Object Created":
        assert detail.reason in ("PutObject", "CopyObject", "CompleteMultipartUpload")
        assert detail.object.size and detail.object.etag
    else:
        assert detail.reason == "DeleteObject"
        assert detail.deletion_type == "Delete Marker Created"  # versioned bucket, plain DELETE
        assert detail.object.size is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_is_routed_to_its_function(topology: Topology, name: str) -> None:
    function, *_ = EXPECTED[name]
    (record,) = SQSEvent(json.loads((EVENTS / name).read_text(encoding="utf-8"))).records
    queue = topology.function(function).queue_logical_id
    assert [r.logical_id for r in topology.rules if r.matches(record.json_body) and queue in r.target_queue_ids]
    assert queue in record.event_source_arn  # CloudFormation names the queue <stack>-<LogicalId>-<suffix>


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_handler_parsing_reads_the_decoded_key(name: str) -> None:
    _function, detail_type, bucket, _raw_key, key = EXPECTED[name]
    (record,) = SQSEvent(json.loads((EVENTS / name).read_text(encoding="utf-8"))).records
    event = event_from_record(record)
    assert (event.bucket, event.key, event.created) == (bucket, key, detail_type == "Object Created")
    assert event.first_received is not None
