"""A record whose owner row is not committed yet comes back after a short, growing delay (ChangeMessageVisibility),
not after the queue's visibility timeout, which template.yaml sizes for the longest copy (6 x the function timeout)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.stub import Stubber

from mediacanon.live import OWNER_RETRY_MAX_SECONDS, OwnerRetries
from mediacanon.local.topology import load_template

ROOT = Path(__file__).resolve().parents[2]


def record(receive_count: int) -> SQSRecord:
    raw: dict[str, Any] = json.loads((ROOT / "events" / "normalize_object_created.json").read_text())["Records"][0]
    raw["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    return SQSRecord(raw)


def test_the_delays_span_the_owner_wait_within_the_receives_before_the_dead_letter_queue() -> None:
    template = load_template(ROOT / "template.yaml")
    queue = template["Resources"]["NormalizeQueue"]["Properties"]
    max_receives = int(queue["RedrivePolicy"]["maxReceiveCount"])
    delays = [OwnerRetries.delay(n) for n in range(1, max_receives)]
    assert delays == sorted(delays) and delays[0] <= 30  # a row committed a second late is picked up within 30 s
    # the last receive comes after the owner wait (300 s by default): it reports the key unowned, never dead-letters it
    assert sum(delays) >= 300
    assert max(delays) <= OWNER_RETRY_MAX_SECONDS < int(queue["VisibilityTimeout"])


def test_the_retry_sets_the_visibility_of_that_message_on_its_own_queue() -> None:
    client = boto3.client("sqs", region_name="us-east-1")
    received = record(3)
    with Stubber(client) as stub:
        stub.add_response(
            "change_message_visibility",
            {},
            {"QueueUrl": received.queue_url, "ReceiptHandle": received.receipt_handle, "VisibilityTimeout": 120},
        )
        OwnerRetries(client).retry_soon(received, Logger(service="test"))
        stub.assert_no_pending_responses()
    assert received.queue_url.endswith("/" + received.event_source_arn.rsplit(":", 1)[1])


def test_a_refused_visibility_change_leaves_the_queues_own_timeout() -> None:
    client = boto3.client("sqs", region_name="us-east-1")
    out = io.StringIO()
    logger = Logger(service="owner-retries-test", logger_handler=logging.StreamHandler(out))
    with Stubber(client) as stub:
        stub.add_client_error("change_message_visibility", "AccessDenied", http_status_code=403)
        OwnerRetries(client).retry_soon(record(1), logger)  # no raise: the record still fails as it should
        stub.assert_no_pending_responses()
    logged = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert [line["message"] for line in logged] == ["retry delay not set; the queue's visibility timeout applies"]
