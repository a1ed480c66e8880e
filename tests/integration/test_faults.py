"""Fault injection on the live path's steps against the moto server and PostgreSQL: S3 503 SlowDown storms and
500s through botocore's standard retry mode (bounded attempts), a timeout mid-copy, PostgreSQL unavailable for a
window, one poison message in a batch, and the multipart path (threshold lowered) keeping every header.

S3 faults are injected with botocore's own event hooks on the client the production code builds (`S3Adapter()`
with no client: the same config Lambda uses), so the retry handler under test is botocore's, not a stand-in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.retries.standard
import psycopg
import pytest
import yaml
from aws_lambda_powertools import Logger
from boto3.s3.transfer import TransferConfig
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import MAX_ATTEMPTS, S3Adapter
from mediacanon.checks.invariants import check_invariants
from mediacanon.copies import PRIMARY_ETAG, SOURCE_ETAG, SOURCE_KEY
from mediacanon.core import mediamap
from mediacanon.core.errors import RetryableError
from mediacanon.local import inprocess, localrun
from mediacanon.steps import ObjectEvent, Outcome, Steps

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


class Storm:
    """Answers the next `count` requests of the named operations with an S3 error, before they leave the client
    (botocore's `before-send`: the retry handler sees exactly what S3 would have sent)."""

    def __init__(self, client: Any, operations: tuple[str, ...], status: int, code: str, count: int) -> None:
        self.status, self.code, self.left = status, code, count
        self.attempts: Counter[str] = Counter()
        for operation in operations:
            client.meta.events.register(f"before-send.s3.{operation}", self.answer)

    def answer(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        self.attempts[event_name.rsplit(".", 1)[-1]] += 1
        if self.left <= 0:
            return None  # the storm is over: the request goes to S3
        self.left -= 1
        body = f"<Error><Code>{self.code}</Code><Message>injected</Message></Error>".encode()
        return AWSResponse(request.url, self.status, {"Content-Type": "application/xml"}, _Body(body))  # type: ignore[arg-type]  # AWSResponse takes any mapping of headers (its stubs say HTTPHeaders)


class KeyStorm(Storm):
    """A Storm on the requests to one URL path only (one object's copy, whatever else runs beside it)."""

    def __init__(self, client: Any, operations: tuple[str, ...], status: int, code: str, count: int, path: str) -> None:
        self.path = path
        super().__init__(client, operations, status, code, count)

    def answer(self, request: Any, event_name: str, **kwargs: Any) -> AWSResponse | None:
        if not request.url.split("?", 1)[0].endswith(self.path):
            return None
        return super().answer(request, event_name, **kwargs)


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's backoff sleeps up to seconds between attempts: the count of attempts is the point here, not the
    wait, so the delay is zero (the retry decisions, quota and attempt limit are botocore's, unchanged)."""
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)


@dataclass
class World:
    steps: Steps
    s3: S3Adapter
    client: Any
    conninfo: str
    primary: str
    cdn: str

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]  # literals only
            return cur.fetchall() if cur.description else []

    def event(self, bucket: str, key: str) -> ObjectEvent:
        return ObjectEvent(bucket=bucket, key=key, created=True)

    def upload(self, key: str, body: bytes, slug: str) -> None:
        self.client.put_object(
            Bucket=self.primary, Key=key, Body=body, ContentType="image/png", CacheControl="max-age=60", Metadata={"by": "django"}
        )
        self.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", slug, key)

    def settle(self, key: str, canonical: str) -> list[Outcome]:
        return [
            self.steps.normalize(self.event(self.primary, key)).outcome,
            self.steps.replicate(self.event(self.primary, canonical)).outcome,
            self.steps.link(self.event(self.cdn, canonical)).outcome,
        ]

    def check(self) -> None:
        with Database(self.conninfo) as db:
            report = check_invariants(self.steps.map, self.s3, db, Ledger(db, self.steps.map.schema))
        assert report.ok, report.summary()

    def keys(self, bucket: str) -> set[str]:
        return {o.key for o in self.s3.iter_objects(bucket)}


@pytest.fixture
def world(
    moto_endpoint: str, s3_client: Any, bucket: Any, archive_db: str, archive_map: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    primary, cdn = bucket("primary"), bucket("cdn")
    s3_client.put_bucket_versioning(Bucket=primary, VersioningConfiguration={"Status": "Enabled"})
    media_map = mediamap.parse(archive_map(primary, cdn))
    s3 = S3Adapter()  # built exactly as live.steps() builds it: boto3 reads AWS_ENDPOINT_URL
    with Database(archive_db) as db:
        yield World(
            Steps(media_map, s3, db, Ledger(db, media_map.schema), owner_wait_seconds=0), s3, s3_client, archive_db, primary, cdn
        )


# -- S3: storms, 500s, timeouts ----------------------------------------------------------------------------------


def test_production_clients_use_the_standard_retry_mode_with_bounded_attempts(world: World) -> None:
    retries = world.s3.client.meta.config.retries  # type: ignore[attr-defined]  # set at run time: not in botocore-stubs
    assert retries == {"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}
    assert 2 <= MAX_ATTEMPTS <= 10


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError"), (503, "ServiceUnavailable")])
def test_a_storm_shorter_than_the_attempt_budget_is_absorbed_inside_one_delivery(world: World, status: int, code: str) -> None:
    world.upload("icons/nytimes_icon_v2_final.png", b"nyt", "nytimes")
    storm = Storm(world.s3.client, ("CopyObject",), status, code, count=MAX_ATTEMPTS - 1)

    outcomes = world.settle("icons/nytimes_icon_v2_final.png", "icons/nytimes.png")

    assert outcomes == [Outcome.NORMALIZED, Outcome.MIRRORED, Outcome.LINKED]
    # the normalize copy took every attempt (the last one got through); the mirror copy one
    assert storm.attempts["CopyObject"] == MAX_ATTEMPTS + 1
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/nytimes.png"}
    world.check()


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError")])
def test_a_storm_longer_than_the_budget_fails_the_record_retryably_after_bounded_attempts(
    world: World, status: int, code: str
) -> None:
    world.upload("icons/bbc-favicon.ico", b"bbc", "bbc")
    storm = Storm(world.s3.client, ("HeadObject", "CopyObject"), status, code, count=10_000)

    with pytest.raises(RetryableError, match="head s3://"):  # the first request of the step, retried to its limit
        world.steps.normalize(world.event(world.primary, "icons/bbc-favicon.ico"))

    assert sum(storm.attempts.values()) == MAX_ATTEMPTS  # bounded: the first HEAD, retried, then given up
    storm.left = 0  # the storm passes; SQS redelivers the record
    assert world.settle("icons/bbc-favicon.ico", "icons/bbc.ico") == [Outcome.NORMALIZED, Outcome.MIRRORED, Outcome.LINKED]
    assert world.sql("SELECT icon FROM archive_publicationsource WHERE slug = 'bbc'") == [("icons/bbc.ico",)]
    world.check()


def test_a_storm_during_the_retire_leaves_the_source_until_the_retry(world: World) -> None:
    world.upload("icons/reuters_icon.png", b"reuters", "reuters")
    world.steps.normalize(world.event(world.primary, "icons/reuters_icon.png"))
    world.steps.replicate(world.event(world.primary, "icons/reuters.png"))
    storm = Storm(world.s3.client, ("DeleteObject", "DeleteObjects"), 503, "SlowDown", count=10_000)

    with pytest.raises(RetryableError):
        world.steps.link(world.event(world.cdn, "icons/reuters.png"))
    # the rows were committed before the retire: the row points at a key both buckets hold (I1), the source stays
    assert world.sql("SELECT icon FROM archive_publicationsource WHERE slug = 'reuters'") == [("icons/reuters.png",)]
    assert "icons/reuters_icon.png" in world.keys(world.primary)
    assert storm.attempts["DeleteObject"] == MAX_ATTEMPTS
    world.check()

    storm.left = 0
    retried = world.steps.link(world.event(world.cdn, "icons/reuters.png"))
    assert (retried.outcome, retried.rows_changed, retried.retired) == (Outcome.LINKED, 0, True)
    assert world.keys(world.primary) == {"icons/reuters.png"}
    world.check()


def test_a_timeout_after_s3_made_the_copy_is_retried_without_a_second_copy(world: World) -> None:
    """The worst timeout: S3 copied, the answer never came. The step fails retryably; the retry finds the bytes."""
    world.upload("icons/guardian_icon_FINAL.png", b"guardian", "guardian")
    copies: list[str] = []

    def lost_answer(**_: Any) -> None:
        copies.append("CopyObject")
        if len(copies) == 1:
            raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com (after the copy)")

    world.s3.client.meta.events.register("after-call.s3.CopyObject", lost_answer)

    with pytest.raises(RetryableError, match="ReadTimeoutError"):
        world.steps.normalize(world.event(world.primary, "icons/guardian_icon_FINAL.png"))
    assert "icons/guardian.png" in world.keys(world.primary)  # the copy happened

    redelivered = world.steps.normalize(world.event(world.primary, "icons/guardian_icon_FINAL.png"))
    assert (redelivered.outcome, redelivered.copied) == (Outcome.NORMALIZED, False)  # found, not copied again
    assert world.steps.replicate(world.event(world.primary, "icons/guardian.png")).outcome == Outcome.MIRRORED
    assert world.steps.link(world.event(world.cdn, "icons/guardian.png")).outcome == Outcome.LINKED
    assert copies == ["CopyObject", "CopyObject"]  # one normalize copy, one CDN copy
    world.check()


def test_a_timeout_before_the_copy_reaches_s3_is_retried_by_botocore_then_by_sqs(world: World) -> None:
    world.upload("icons/spiegel_logo.png", b"spiegel", "spiegel")
    sent: list[str] = []

    def time_out(**_: Any) -> None:
        sent.append("CopyObject")
        raise ReadTimeoutError(endpoint_url="injected")

    world.s3.client.meta.events.register("before-send.s3.CopyObject", time_out)
    with pytest.raises(RetryableError):
        world.steps.normalize(world.event(world.primary, "icons/spiegel_logo.png"))
    assert len(sent) == MAX_ATTEMPTS  # a read timeout is transient to the standard mode: retried, bounded
    assert world.keys(world.primary) == {"icons/spiegel_logo.png"}  # nothing written, nothing lost
    world.s3.client.meta.events.unregister("before-send.s3.CopyObject", time_out)
    assert world.settle("icons/spiegel_logo.png", "icons/spiegel.png") == [Outcome.NORMALIZED, Outcome.MIRRORED, Outcome.LINKED]
    world.check()


# -- multipart ---------------------------------------------------------------------------------------------------


def test_the_multipart_path_keeps_headers_and_metadata_end_to_end(world: World) -> None:
    """Objects over 5 GB copy in parts; the threshold is lowered so an 11 MiB object takes that path here."""
    world.steps.s3 = world.s3 = S3Adapter(
        world.s3.client, transfer_config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    )
    body = bytes(range(256)) * (11 * MiB // 256)
    world.upload("icons/le-monde_icon (1).png", body, "le-monde")
    parts = Storm(world.s3.client, ("UploadPartCopy", "CopyObject"), 200, "unused", count=0)

    assert world.settle("icons/le-monde_icon (1).png", "icons/le-monde.png") == [
        Outcome.NORMALIZED,
        Outcome.MIRRORED,
        Outcome.LINKED,
    ]

    assert parts.attempts["UploadPartCopy"] == 6 and parts.attempts["CopyObject"] == 0  # 3 parts per copy, twice
    source_etag = hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag of the single-part upload
    for bucket in (world.primary, world.cdn):
        head = world.s3.head(bucket, "icons/le-monde.png")
        assert head is not None and head.etag.endswith("-3")  # really a multipart object
        assert (head.content_type, head.cache_control, head.metadata["by"]) == ("image/png", "max-age=60", "django")
        assert head.metadata[SOURCE_KEY] == "icons/le-monde_icon%20%281%29.png"
        assert head.metadata[SOURCE_ETAG] == source_etag
    cdn = world.s3.head(world.cdn, "icons/le-monde.png")
    primary = world.s3.head(world.primary, "icons/le-monde.png")
    assert cdn is not None and primary is not None and cdn.metadata[PRIMARY_ETAG] == primary.etag
    assert world.s3.get_bytes(world.cdn, "icons/le-monde.png") == body
    assert world.keys(world.primary) == {"icons/le-monde.png"}  # retired: the recorded ETag proved the bytes
    world.check()


def test_a_multipart_copy_that_dies_midway_leaves_no_object_and_the_retry_completes(world: World) -> None:
    world.steps.s3 = world.s3 = S3Adapter(
        world.s3.client,
        transfer_config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, use_threads=False),
    )
    body = b"p" * (11 * MiB)
    world.upload("icons/nrc_icon.png", body, "nrc")
    # every attempt at the second part times out: the managed copy gives up (and aborts its upload)
    calls = Counter[str]()

    def second_part_times_out(params: Any, **_: Any) -> None:
        calls["UploadPartCopy"] += 1
        if params.get("PartNumber") == 2:
            raise ReadTimeoutError(endpoint_url="injected")

    world.s3.client.meta.events.register("before-parameter-build.s3.UploadPartCopy", second_part_times_out)
    with pytest.raises(RetryableError):
        world.steps.normalize(world.event(world.primary, "icons/nrc_icon.png"))
    assert world.keys(world.primary) == {"icons/nrc_icon.png"}  # no half object under the canonical key
    assert world.client.list_multipart_uploads(Bucket=world.primary).get("Uploads", []) == []  # aborted
    world.s3.client.meta.events.unregister("before-parameter-build.s3.UploadPartCopy", second_part_times_out)

    assert world.settle("icons/nrc_icon.png", "icons/nrc.png") == [Outcome.NORMALIZED, Outcome.MIRRORED, Outcome.LINKED]
    assert world.s3.get_bytes(world.primary, "icons/nrc.png") == body
    world.check()


# -- PostgreSQL unavailable --------------------------------------------------------------------------------------


class PostgresGate:
    """A TCP gate in front of the test PostgreSQL: `down()` stops listening and cuts every open connection (what a
    failover or a restart looks like to a client), `up()` listens again on the same port."""

    def __init__(self, conninfo: str) -> None:
        params = conninfo_to_dict(conninfo)
        host, port = str(params.get("host") or "localhost"), str(params.get("port") or "5432")
        self.upstream: tuple[int, Any] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}") if host.startswith("/") else (socket.AF_INET, (host, int(port)))
        )
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.conninfo = make_conninfo(conninfo, host="127.0.0.1", port=str(self.port))
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            # shutdown first: a bare close() leaves the thread blocked in accept() holding the socket open
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._listener is not listener:  # went down while this connection was being accepted
                client.close()
                return
            server = socket.socket(self.upstream[0])
            server.connect(self.upstream[1])
            self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def test_postgres_unavailable_for_a_window_fails_records_retryably_then_converges(world: World) -> None:
    """PostgreSQL goes away for what would be 30 s on AWS. Simulated without sleeping: the gate is down while every
    pending record is delivered (each redelivery SQS would make in the window, and more), then it comes back.

    On AWS a 30 s outage sees at most one redelivery per record (visibility timeout 360 s or more), far below
    maxReceiveCount 5, so what must hold is: every attempt fails fast and retryably (never a PermanentError that
    dead-letters, never a hang to the Lambda timeout), nothing is half done, and the next delivery converges on
    the warm connection the outage broke."""
    gate = PostgresGate(world.conninfo)
    try:
        with Database(gate.conninfo, connect_timeout=2) as db:
            steps = Steps(world.steps.map, world.s3, db, Ledger(db, world.steps.map.schema), owner_wait_seconds=0)
            world.upload("icons/aftenposten_icon.png", b"ap", "aftenposten")
            world.upload("icons/nos_icon.png", b"nos", "nos")
            # warm: one record done before the outage (and the connection open)
            assert steps.normalize(world.event(world.primary, "icons/aftenposten_icon.png")).outcome == Outcome.NORMALIZED
            steps.replicate(world.event(world.primary, "icons/aftenposten.png"))

            gate.down()
            pending = [
                (steps.link, world.event(world.cdn, "icons/aftenposten.png")),  # rows + ledger in one transaction
                (steps.normalize, world.event(world.primary, "icons/nos_icon.png")),  # owner lookup, claim
            ]
            for _ in range(3):
                for step, event in pending:
                    started = time.monotonic()
                    with pytest.raises(RetryableError):
                        result = step(event)
                        pytest.fail(f"{step.__name__} did not fail while PostgreSQL was down: {result}")
                    assert time.monotonic() - started < 5  # fails fast: refused, not a hang
            # nothing half done: the row still points at its source, which still exists; nothing copied for nos
            assert world.sql("SELECT slug, icon FROM archive_publicationsource ORDER BY slug") == [
                ("aftenposten", "icons/aftenposten_icon.png"),
                ("nos", "icons/nos_icon.png"),
            ]
            assert world.keys(world.primary) == {"icons/aftenposten_icon.png", "icons/aftenposten.png", "icons/nos_icon.png"}

            gate.up()
            assert steps.link(world.event(world.cdn, "icons/aftenposten.png")).outcome == Outcome.LINKED
            assert steps.normalize(world.event(world.primary, "icons/nos_icon.png")).outcome == Outcome.NORMALIZED
            steps.replicate(world.event(world.primary, "icons/nos.png"))
            assert steps.link(world.event(world.cdn, "icons/nos.png")).outcome == Outcome.LINKED
    finally:
        gate.down()
    assert world.sql("SELECT slug, icon FROM archive_publicationsource ORDER BY slug") == [
        ("aftenposten", "icons/aftenposten.png"),
        ("nos", "icons/nos.png"),
    ]
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/aftenposten.png", "icons/nos.png"}
    world.check()


# -- one poison message in a batch -------------------------------------------------------------------------------


def moto_event(bucket: str, key: str) -> str:
    """An S3 EventBridge event as the moto server sends it (localrun.s3_body rewrites it into S3's shape)."""
    return json.dumps(
        {
            "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "time": "2026-11-22T00:00:00Z", "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket},
                       "object": {"key": key, "size": 1, "eTag": "0" * 32, "sequencer": "617f08299329d189"},
                       "reason": "PutObject"},
        }
    )  # fmt: skip


@pytest.fixture
def stack(moto_endpoint: str, archive_db: str, archive_map: Any, tmp_path: Path) -> Iterator[tuple[localrun.LocalStack, Path]]:
    suffix = uuid.uuid4().hex[:8]
    data = archive_map(f"media-{suffix}", f"cdn-{suffix}")
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    media_map = mediamap.parse(data, source=str(config))
    yield (
        localrun.provision_media_map(media_map, REPO / "template.yaml", endpoint_url=moto_endpoint, stack_name=f"mc-{suffix}"),
        config,
    )
    localrun.shutdown()


def test_one_poison_message_fails_alone_and_reaches_the_dead_letter_queue_with_its_reason(
    stack: tuple[localrun.LocalStack, Path], archive_db: str, moto_endpoint: str
) -> None:
    live_stack, config = stack
    primary = live_stack.topology.buckets[0].name
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    with psycopg.connect(archive_db, autocommit=True) as conn:
        for slug in ("ap", "dpa"):
            conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, f"icons/{slug}_icon.png"))
    for slug in ("ap", "dpa"):
        s3.put_object(Bucket=primary, Key=f"icons/{slug}_icon.png", Body=slug.encode(), ContentType="image/png")
    queue = live_stack.queue_urls["NormalizeQueue"]
    sqs.purge_queue(QueueUrl=queue)  # the uploads' own events: this batch is built by hand below
    for body in (
        moto_event(primary, "icons/ap_icon.png"),
        '{"detail-type": "Object Created", "poison": true}',
        moto_event(primary, "icons/dpa_icon.png"),
    ):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(messages) == 3
    poison_id = next(m["MessageId"] for m in messages if "poison" in m["Body"])
    records = [
        localrun.lambda_record(
            m, queue_arn=live_stack.queue_arns["NormalizeQueue"], region="us-east-1", body=inprocess.s3_body(m["Body"])
        )
        for m in messages
    ]
    env = localrun.local_environment(config, archive_db, endpoint_url=moto_endpoint)
    functions = localrun.functions_for(live_stack, env)
    normalize = next(fn for fn in live_stack.topology.functions if fn.logical_id == "NormalizeFunction")
    # the JSON lines as CloudWatch would get them, formatted when emitted (the warm handler's stream may be an
    # earlier test's captured stdout, so they are read through logging)
    # Powertools' logger for the service, set up as the handler's cold start sets it up (a Logger adds its JSON handler
    # only to a logger that has none): run alone, this test must not leave `keep` as the only handler
    Logger(service="normalize")
    powertools = logging.getLogger("normalize")
    lines: list[str] = []
    keep = logging.Handler()
    keep.emit = lambda record: lines.append(powertools.handlers[0].format(record))  # type: ignore[method-assign]
    powertools.addHandler(keep)
    try:
        response = functions.invoke(normalize, {"Records": records})
    finally:
        powertools.removeHandler(keep)

    # Powertools' partial batch response: only the poison record is reported failed, the two uploads were copied
    assert response == {"batchItemFailures": [{"itemIdentifier": poison_id}]}
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=primary)["Contents"]} >= {"icons/ap.png", "icons/dpa.png"}
    # its reason is logged, under the record's message id (Powertools' correlation id), for whoever reads the DLQ
    failed = [json.loads(line) for line in lines if '"record failed"' in line]
    assert [(f["level"], f["correlation_id"], f["error"]) for f in failed] == [("WARNING", poison_id, "KeyError: 'detail'")]
    assert "key" not in failed[0]  # not labelled with the key of the record handled before it

    # settled as Lambda's event-source mapping does: the two successes deleted, the failed one returned to the queue,
    # where the local runner redelivers it until maxReceiveCount moves it to the dead-letter queue
    for m in messages:
        if m["MessageId"] == poison_id:
            sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        else:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    report = localrun.run(live_stack, config=config, database_url=archive_db, progress=False, timeout=60)
    assert report.dlq_depths["NormalizeDeadLetterQueue"] == 1
    dead = sqs.receive_message(
        QueueUrl=live_stack.queue_urls["NormalizeDeadLetterQueue"], AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    assert [(m["MessageId"], json.loads(m["Body"]).get("poison")) for m in dead] == [(poison_id, True)]
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= 5  # received maxReceiveCount times in all


# -- the backfill: a batch meeting SlowDown -----------------------------------------------------------------------


def _backfill_site_module() -> Any:
    import importlib.util
    import sys

    name = "backfill_integration_site"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "integration" / "test_backfill.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


site = _backfill_site_module().site  # the backfill's site: messy names under three prefixes, rows, a legacy bucket


@pytest.mark.parametrize("storm_length", [MAX_ATTEMPTS - 1, MAX_ATTEMPTS + 2])
def test_a_backfill_batch_meeting_slowdown_again_and_again_still_succeeds(
    site: Any, monkeypatch: pytest.MonkeyPatch, storm_length: int
) -> None:
    """S3 answers 503 SlowDown above a prefix's request rate, "until S3 splits the prefix" (Amazon S3 User Guide,
    performance guidelines: "retry failed requests using an exponential backoff algorithm"). Two layers answer it with
    backoff, never with failure: botocore's standard retry mode on the worker's client (MAX_ATTEMPTS, exponential
    backoff with jitter), and past that the ASL's Retry on ProcessBatch (RetryableError: IntervalSeconds 2, BackoffRate
    2.0, MaxAttempts 6), which runs the batch again. A storm shorter than botocore's budget never reaches the state
    machine; a longer one costs the batch one ASL retry; both end SUCCEEDED with every object in place."""
    from mediacanon.local import sfnlocal

    real_client, storms = sfnlocal._data_client, list[Storm]()
    target = f"/{site.primary}/icons/nytimes.png"  # the canonical copy of one object: one call, botocore's attempts

    def storming(endpoint_url: str | None) -> Any:
        client = real_client(endpoint_url)
        if not storms:  # the first client built is the workers' (run_backfill's S3Adapter)
            storms.append(KeyStorm(client, ("CopyObject",), 503, "SlowDown", count=storm_length, path=target))
        return client

    from mediacanon.backfill import run_task as real_task  # what sfnlocal's invoke calls

    raised = Counter[str]()

    def counting(event: dict[str, Any], make_steps: Any) -> Any:
        try:
            return real_task(event, make_steps)
        except RetryableError:
            raised[str(event.get("action"))] += 1
            raise

    monkeypatch.setattr(sfnlocal, "_data_client", storming)
    monkeypatch.setattr(sfnlocal, "run_task", counting)
    result = site.run()

    assert (result.status, result.error, result.failed_items) == ("SUCCEEDED", None, 0)
    (storm,) = storms
    assert storm.left == 0 and storm.attempts["CopyObject"] == storm_length + 1  # met in full, then the copy went through
    assert raised == ({} if storm_length < MAX_ATTEMPTS else {"objects": 1})  # botocore's budget, then the ASL's Retry
    _backfill_site_module().assert_final_state(site)
