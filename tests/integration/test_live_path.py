"""The live path end to end on the local runner: the topology of template.yaml provisioned on the moto server,
real S3 → EventBridge → SQS deliveries, the real handlers run in-process, a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import yaml
from psycopg import sql

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.checks.verify import verify
from mediacanon.core import mediamap
from mediacanon.local import inprocess, localrun
from mediacanon.local.localrun import LocalStack, RunReport

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"


@dataclass
class Live:
    stack: LocalStack
    media_map: mediamap.MediaMap
    config: Path
    conninfo: str
    s3: Any
    sqs: Any

    @property
    def primary(self) -> str:
        return self.media_map.buckets.primary

    @property
    def cdn(self) -> str:
        return self.media_map.buckets.cdn

    def run(self, **kwargs: Any) -> RunReport:
        kwargs.setdefault("timeout", 60)
        return localrun.run(self.stack, config=self.config, database_url=self.conninfo, progress=False, **kwargs)

    def upload(self, key: str, body: bytes, *, slug: str | None = None) -> None:
        """As Django saves a model with a FileField: the file is stored first, then the row is committed."""
        self.s3.put_object(Bucket=self.primary, Key=key, Body=body, ContentType="image/png")
        if slug is not None:
            self.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", slug, key)

    def sql(self, query: str | sql.Composed, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def column(self, slug: str, column: str = "icon") -> Any:
        query = sql.SQL("SELECT {} FROM archive_publicationsource WHERE slug = %s").format(sql.Identifier(column))
        return self.sql(query, slug)[0][0]

    def keys(self, bucket: str) -> set[str]:
        return {o.key for o in S3Adapter(self.s3).iter_objects(bucket)}

    def versions(self) -> int:
        """Object versions and delete markers in both buckets: any write since shows up here."""
        total = 0
        for bucket in (self.primary, self.cdn):
            listing = self.s3.list_object_versions(Bucket=bucket)
            total += len(listing.get("Versions", [])) + len(listing.get("DeleteMarkers", []))
        return total

    def verified(self) -> bool:
        with Database(self.conninfo) as db:
            return verify(self.media_map, S3Adapter(self.s3), db, Ledger(db, self.media_map.schema)).ok

    def send(self, queue: str, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.stack.queue_urls[queue], MessageBody=body)


def moto_event(bucket: str, key: str, etag: str = "0" * 32) -> str:
    """An S3 EventBridge event as moto's server sends it (key unencoded, ``eTag``, constant sequencer)."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-11-22T00:00:00Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": bucket},
                "object": {"key": key, "size": 1, "eTag": etag, "version-id": "null", "sequencer": "617f08299329d189"},
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "source-ip-address": "1.2.3.4",
                "reason": "ObjectCreated",
            },
        }
    )


@pytest.fixture
def live(moto_endpoint: str, archive_db: str, archive_map: Any, tmp_path: Path) -> Iterator[Live]:
    db_conninfo = archive_db
    suffix = uuid.uuid4().hex[:8]
    data = archive_map(f"media-{suffix}", f"cdn-{suffix}")
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    media_map = mediamap.parse(data, source=str(config))
    stack = localrun.provision_media_map(media_map, TEMPLATE, endpoint_url=moto_endpoint, stack_name=f"mc-{suffix}")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    yield Live(stack, media_map, config, db_conninfo, s3, sqs)
    localrun.shutdown()  # closes the handlers' database connection before the test database is dropped


def test_provision_builds_the_template_topology_and_is_idempotent(live: Live, moto_endpoint: str) -> None:
    stack = live.stack
    assert stack.function_queues == {
        "NormalizeFunction": "NormalizeQueue",
        "ReplicateFunction": "ReplicateQueue",
        "LinkFunction": "LinkQueue",
    }
    assert stack.dead_letter_queues() == {
        "NormalizeQueue": "NormalizeDeadLetterQueue",
        "ReplicateQueue": "ReplicateDeadLetterQueue",
        "LinkQueue": "LinkDeadLetterQueue",
    }
    attributes = live.sqs.get_queue_attributes(QueueUrl=stack.queue_urls["LinkQueue"], AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "360"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": stack.queue_arns["LinkDeadLetterQueue"],
        "maxReceiveCount": 5,
    }
    assert live.s3.get_bucket_versioning(Bucket=live.primary)["Status"] == "Enabled"
    events = boto3.client("events", endpoint_url=moto_endpoint, region_name="us-east-1")
    link_rule = events.describe_rule(Name=stack.rule_names["LinkRule"])
    assert json.loads(link_rule["EventPattern"])["detail"] == {"bucket": {"name": [live.cdn]}}
    targets = events.list_targets_by_rule(Rule=stack.rule_names["LinkRule"])["Targets"]
    assert [t["Arn"] for t in targets] == [stack.queue_arns["LinkQueue"]]
    # what EventBridge cannot deliver goes to the rule's own dead-letter queue, as template.yaml says
    assert [t["DeadLetterConfig"] for t in targets] == [{"Arn": stack.queue_arns["LinkRuleDeadLetterQueue"]}]
    assert [t["RetryPolicy"]["MaximumRetryAttempts"] for t in targets] == [185]

    again = localrun.provision_media_map(live.media_map, TEMPLATE, endpoint_url=moto_endpoint, stack_name=stack.stack_name)
    assert (again.queue_urls, again.rule_names) == (stack.queue_urls, stack.rule_names)
    assert len(events.list_targets_by_rule(Rule=stack.rule_names["LinkRule"])["Targets"]) == 1


def test_messy_uploads_end_canonical_in_both_buckets_and_rows(live: Live) -> None:
    live.upload("icons/nytimes_icon_v2_final.png", b"nyt", slug="nytimes")
    live.upload("mastheads/NYTimes_Masthead_FINAL (1).JPG", b"masthead")
    live.sql("UPDATE archive_publicationsource SET masthead = 'mastheads/NYTimes_Masthead_FINAL (1).JPG' WHERE slug = 'nytimes'")
    live.sql("INSERT INTO archive_publicationsource (slug) VALUES ('el-pais')")  # an empty column, filled by slug
    live.upload("downloads/el-pais/google_favicon/google_icon.png", b"staged")
    live.upload("icons/bbc/", b"")  # a console "folder": refused, left alone

    report = live.run()

    assert report.line == "DONE | normalized=3 mirrored=3 linked=3 retired=3 refused=1 failed=0", report
    canonical = {"icons/nytimes.png", "mastheads/nytimes.jpg", "icons/el-pais.png"}
    assert live.keys(live.cdn) == canonical
    assert live.keys(live.primary) == canonical | {"icons/bbc/"}  # sources retired once no row references them
    assert (live.column("nytimes"), live.column("nytimes", "masthead")) == ("icons/nytimes.png", "mastheads/nytimes.jpg")
    assert live.column("el-pais") == "icons/el-pais.png"
    assert S3Adapter(live.s3).get_bytes(live.cdn, "mastheads/nytimes.jpg") == b"masthead"
    assert report.failed_records == 0 and report.errors == []
    assert live.verified()


def test_key_with_plus_space_and_unicode_is_decoded_exactly_once(live: Live) -> None:
    live.upload("icons/Le Monde+Diplo_icon.png", b"lmd", slug="le-monde-diplo")
    live.upload("icons/Süddeutsche Zeitung_icon é.png", b"sz", slug="sueddeutsche")

    report = live.run()

    # decoded twice, or not re-encoded, 'Le Monde+Diplo' would reach the steps as 'Le Monde Diplo': a stale event
    assert report.line == "DONE | normalized=2 mirrored=2 linked=2 retired=2 refused=0 failed=0", report
    assert live.keys(live.primary) == live.keys(live.cdn) == {"icons/le-monde-diplo.png", "icons/sueddeutsche.png"}
    assert live.column("le-monde-diplo") == "icons/le-monde-diplo.png"
    assert live.column("sueddeutsche") == "icons/sueddeutsche.png"
    assert live.verified()


def test_duplicated_events_converge_without_extra_copies(live: Live) -> None:
    live.upload("icons/guardian_icon_FINAL.png", b"guardian", slug="guardian")
    live.upload("icons/spiegel_logo.png", b"spiegel", slug="spiegel")
    for queue in ("NormalizeQueue", "ReplicateQueue"):  # every upload event delivered three times
        for key in ("icons/guardian_icon_FINAL.png", "icons/spiegel_logo.png"):
            for _ in range(2):
                live.send(queue, moto_event(live.primary, key))

    report = live.run()

    assert report.line == "DONE | normalized=2 mirrored=2 linked=2 retired=2 refused=0 failed=0", report
    assert live.keys(live.primary) == live.keys(live.cdn) == {"icons/guardian.png", "icons/spiegel.png"}
    assert live.versions() == 2 + 2 + 2 + 2  # 2 uploads, 2 canonical copies, 2 retire delete markers, 2 CDN copies
    assert live.verified()


def test_link_event_before_its_object_exists_changes_nothing_then_the_upload_converges(live: Live) -> None:
    live.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('lemonde', 'icons/lemonde_icon_a1B2c3D.png')")
    live.send("LinkQueue", moto_event(live.cdn, "icons/lemonde.png"))
    live.send("ReplicateQueue", moto_event(live.primary, "icons/lemonde.png"))

    early = live.run()

    assert early.line == "DONE | normalized=0 mirrored=0 linked=0 retired=0 refused=0 failed=0"
    assert early.count(localrun.Outcome.SKIPPED) == 2
    assert live.column("lemonde") == "icons/lemonde_icon_a1B2c3D.png"

    live.upload("icons/lemonde_icon_a1B2c3D.png", b"lemonde")
    assert live.run().line == "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=0"
    assert live.column("lemonde") == "icons/lemonde.png"
    assert live.keys(live.primary) == live.keys(live.cdn) == {"icons/lemonde.png"}


def test_replaying_every_event_after_the_state_settled_changes_nothing(live: Live) -> None:
    live.upload("icons/reuters_icon (2).png", b"reuters", slug="reuters")
    live.upload("mastheads/Reuters-Masthead.JPG", b"masthead")
    live.sql("UPDATE archive_publicationsource SET masthead = 'mastheads/Reuters-Masthead.JPG' WHERE slug = 'reuters'")
    first = live.run(capture=True)
    assert first.line == "DONE | normalized=2 mirrored=2 linked=2 retired=2 refused=0 failed=0"
    settled = (live.sql("SELECT * FROM archive_publicationsource"), live.keys(live.primary), live.keys(live.cdn), live.versions())

    for delivery in first.deliveries:  # every event of the first run, in its original order
        live.send(delivery.queue, delivery.body)
    replay = live.run()

    assert replay.records == len(first.deliveries) > 0
    assert replay.line == "DONE | normalized=0 mirrored=0 linked=0 retired=0 refused=0 failed=0", replay
    assert sum(replay.copies.values()) == 0
    assert (
        live.sql("SELECT * FROM archive_publicationsource"),
        live.keys(live.primary),
        live.keys(live.cdn),
        live.versions(),
    ) == settled
    assert live.verified()


def test_poison_message_reaches_the_dead_letter_queue_after_max_receive_count(live: Live) -> None:
    live.send("NormalizeQueue", "this is not an S3 event")
    live.upload("icons/ap_icon.png", b"ap", slug="ap")  # healthy traffic beside it is not held up

    report = live.run()

    assert report.line == "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=1", report
    assert report.failed_records == 5  # received maxReceiveCount times, failed each time
    assert report.dlq_depths == {"NormalizeDeadLetterQueue": 1, "ReplicateDeadLetterQueue": 0, "LinkDeadLetterQueue": 0}
    dead = live.sqs.receive_message(QueueUrl=live.stack.queue_urls["NormalizeDeadLetterQueue"])["Messages"]
    assert [m["Body"] for m in dead] == ["this is not an S3 event"]
    assert live.column("ap") == "icons/ap.png"


def test_upload_before_its_row_is_committed_waits_for_the_row(live: Live) -> None:
    live.upload("icons/aftenposten_icon.png", b"ap")  # Django stored the file; the row is not committed yet

    before = live.run(until_idle=False, timeout=0.3)  # the first delivery only: no row, so the record fails

    assert before.failed_records == 1 and before.count(localrun.Outcome.NORMALIZED) == 0
    live.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('aftenposten', 'icons/aftenposten_icon.png')")
    after = live.run()

    assert after.line == "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=0", after
    assert live.column("aftenposten") == "icons/aftenposten.png"
    assert live.keys(live.primary) == live.keys(live.cdn) == {"icons/aftenposten.png"}


def test_upload_whose_row_never_comes_is_left_unowned_not_dead_lettered(live: Live) -> None:
    live.upload("icons/orphan_icon.png", b"orphan")

    report = live.run(owner_wait=2)

    assert report.count(localrun.Outcome.UNOWNED) == 1 and report.failed == 0, report
    assert live.keys(live.primary) == {"icons/orphan_icon.png"}  # never lost (I5)
    with pytest.raises(ValueError, match="owner_wait"):
        live.run(owner_wait=5)  # 5 s >= 1 s x (maxReceiveCount 5 - 1): it would dead-letter instead


def test_not_idle_in_time_names_the_queue_depths(live: Live) -> None:
    live.send("LinkQueue", "poison")

    with pytest.raises(localrun.IdleTimeout, match=r"LinkQueue=1") as caught:
        live.run(timeout=0.5)
    assert caught.value.report.failed_records >= 1


def test_handlers_get_the_sqs_event_lambda_delivers(live: Live) -> None:
    sample = json.loads((REPO / "events" / "normalize_object_created.json").read_text())["Records"][0]
    live.send("NormalizeQueue", moto_event(live.primary, "icons/a+b c.png", etag="ab" * 16))
    message = live.sqs.receive_message(
        QueueUrl=live.stack.queue_urls["NormalizeQueue"], AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"][0]

    record = localrun.lambda_record(
        message, queue_arn=live.stack.queue_arns["NormalizeQueue"], region="us-east-1", body=inprocess.s3_body(message["Body"])
    )

    assert set(record) == set(sample)
    assert set(record["attributes"]) == set(sample["attributes"])
    obj = json.loads(record["body"])["detail"]["object"]
    assert (obj["key"], obj["etag"]) == ("icons/a%2Bb+c.png", "ab" * 16)  # as real S3 sends it
    real = sample["body"]
    assert inprocess.s3_body(real) == real  # a real-shaped body is already encoded: unchanged
    assert inprocess.s3_body("not json") == "not json"
