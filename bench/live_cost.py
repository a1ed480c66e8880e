"""The backfill's own events on the live path, measured: what the S3 -> EventBridge -> SQS messages that a listed
backfill batch causes cost the three handlers, per message and per backfilled object.

    .venv/bin/python bench/live_cost.py                      # 200 messy objects, on a moto server and PostgreSQL of its own
    .venv/bin/python bench/live_cost.py --objects 1000 --json out.json

On a fresh local stack (the topology of template.yaml on a moto server: buckets with EventBridge notifications, the
rules, the queues) N objects `icons/<slug>_icon_v2_final.png`, each referenced by its row, are written before the
notifications are turned on (a site older than mediacanon's events: no upload event is queued). Then:

1. the backfill runs to the end (`mediacanon.local.sfnlocal.run_backfill`: the real state machine, every phase; the objects
   phase in listed batches, `process_listed`) while nothing drains the live queues;
2. each retired source's delete marker sends S3's "Object Deleted" event (the embedded moto server,
   `mediacanon.local.motoserver`, sends it where moto itself does not), so the template's ReplicateRule routes it as on AWS;
3. the queues are drained through the real handlers (`mediacanon.local.localrun.run`), their S3 requests counted by
   operation at the wire (an HTTP proxy in front of the moto server, `bench/counting.py`) and their PostgreSQL round
   trips by a TCP proxy in front of PostgreSQL. The local runner's own SQS calls bypass both proxies, and the handler
   runs its records one after another, so what the proxies count between two records' results is that record's cost.

Printed: messages per queue, S3 requests by operation and DB round trips per backfilled object, and the largest
per-message figures. `measure` is what tests/integration/test_live_cost.py asserts on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
TABLE = "archive_publicationsource"
PUBLISHERS = ("nytimes", "bbc", "reuters", "guardian", "lemonde", "el-pais", "spiegel", "asahi", "globo", "hindu")
STEP_QUEUES = {"normalize": "NormalizeQueue", "replicate": "ReplicateQueue", "link": "LinkQueue"}

sys.path.insert(0, str(BENCH))  # bench/counting.py, run as a script from anywhere
from counting import PgRoundTripProxy, S3CountingProxy  # noqa: E402


def slug(i: int) -> str:
    return f"{PUBLISHERS[i % len(PUBLISHERS)]}-{i:06d}"


def messy_key(i: int) -> str:
    return f"icons/{slug(i)}_icon_v2_final.png"


def body(i: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + slug(i).encode() * (4 + i % 7)


def media_map_data(primary: str, cdn: str) -> dict[str, Any]:
    return {
        "buckets": {"primary": primary, "cdn": cdn},
        "fields": [
            {
                "name": "archive.PublicationSource.icon",
                "table": TABLE,
                "column": "icon",
                "slug_column": "slug",
                "upload_to": "icons/",
                "canonical": "icons/{slug}{ext}",
            }
        ],
    }


@dataclass
class Tally:
    """What one kind of message cost the handlers: messages, S3 requests by operation, DB round trips, and the most
    any one message of the kind cost."""

    messages: int = 0
    s3: Counter[str] = field(default_factory=Counter)
    db: int = 0
    max_s3: int = 0
    max_db: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, s3: Counter[str], db: int, outcome: str) -> None:
        self.messages += 1
        self.s3.update(s3)
        self.db += db
        self.max_s3 = max(self.max_s3, sum(s3.values()))
        self.max_db = max(self.max_db, db)
        self.outcomes[outcome] += 1

    def to_json(self, objects: int) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "s3": dict(sorted(self.s3.items())),
            "db_round_trips": self.db,
            "max_s3_per_message": self.max_s3,
            "max_db_per_message": self.max_db,
            "outcomes": dict(sorted(self.outcomes.items())),
            "per_object": {
                "messages": self.messages / objects,
                "s3": {op: n / objects for op, n in sorted(self.s3.items())},
                "s3_requests": sum(self.s3.values()) / objects,
                "db_round_trips": self.db / objects,
            },
        }


class PerRecord:
    """A local run's observer (`localrun.run(observe=...)`): the proxies' counts since the previous record's result are this record's."""

    def __init__(self, s3: S3CountingProxy, pg: PgRoundTripProxy, kind_of: Any) -> None:
        self.s3, self.pg, self.kind_of = s3, pg, kind_of
        self.last_s3, self.last_db = s3.snapshot().operations, pg.round_trips
        self.kinds: dict[str, Tally] = {}

    def __call__(self, step: str, result: Any) -> None:
        now_s3, now_db = self.s3.snapshot().operations, self.pg.round_trips
        kind = f"{step}: {self.kind_of(step, result.key)}"
        self.kinds.setdefault(kind, Tally()).add(now_s3 - self.last_s3, now_db - self.last_db, result.outcome.value)
        self.last_s3, self.last_db = now_s3, now_db


def _pg_proxy(database_url: str) -> PgRoundTripProxy:
    params = conninfo_to_dict(database_url)
    host = str(params.get("host") or "127.0.0.1")
    port = int(params.get("port") or 5432)
    if host.startswith("/"):
        return PgRoundTripProxy(unix_socket=Path(host) / f".s.PGSQL.{port}")
    return PgRoundTripProxy(host=host, port=port)


def _write_media_map(workdir: Path, suffix: str, primary: str, cdn: str) -> tuple[Path, Any]:
    """The media map's file (the local runner's handlers read it) and the map parsed from the same data."""
    from mediacanon.core import mediamap

    data = media_map_data(primary, cdn)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"mediamap-{suffix}.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config, mediamap.parse(data, source=str(config))


def _write_site(n: int, conninfo: str, s3_client: Any, primary: str, cdn: str) -> None:
    """The table with n rows, each referencing its messy key, and the versioned buckets with the n objects."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, slug varchar(50) UNIQUE NOT NULL, "
            "name varchar(200) NOT NULL DEFAULT '', masthead varchar(100), icon varchar(100))"
        )
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} (slug, icon) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((slug(i), messy_key(i)))
    for bucket in (primary, cdn):
        s3_client.create_bucket(Bucket=bucket)
        s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(n):
        s3_client.put_object(Bucket=primary, Key=messy_key(i), Body=body(i), ContentType="image/png")


def _backfill(
    media_map: Any, s3_proxy: S3CountingProxy, pg_proxy: PgRoundTripProxy, *, s3_url: str, database_url: str, timeout: float
) -> tuple[Any, float, Counter[str], int]:
    """The backfill to the end through the proxies: its result, wall time, S3 requests by operation and DB round
    trips."""
    from mediacanon.local.sfnlocal import run_backfill

    before_s3, before_db = s3_proxy.snapshot().operations, pg_proxy.round_trips
    started = time.perf_counter()
    result = run_backfill(media_map, endpoint_url=s3_url, database_url=database_url, progress=False, timeout=timeout)
    wall_s = time.perf_counter() - started
    s3, db = s3_proxy.snapshot().operations - before_s3, pg_proxy.round_trips - before_db
    if result.status != "SUCCEEDED":
        raise RuntimeError(f"the backfill did not succeed: {result.status} {result.error}")
    return result, wall_s, s3, db


def _delete_markers(s3_client: Any, bucket: str) -> list[Any]:
    """The bucket's current delete markers: one per retired source."""
    return [
        m
        for page in s3_client.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for m in page.get("DeleteMarkers", [])
        if m["IsLatest"]
    ]


def _kind_of(media_map: Any, sources: set[str]) -> Callable[[str, str], str]:
    """What caused a message, by its step and key: a report part, a retired source, or a copy."""

    def kind_of(step: str, key: str) -> str:
        if key.startswith(media_map.reports_prefix):
            return "report part"
        if key in sources:
            return "retired source (Object Deleted)"
        return "CDN copy" if step == "link" else "canonical copy"

    return kind_of


def _drain(stack: Any, config: Path, observer: PerRecord, *, s3_url: str, database_url: str, timeout: float) -> tuple[Any, float]:
    """The live queues drained through the real handlers (observed record by record): the run's report, wall time."""
    from mediacanon.local import localrun

    try:
        started = time.perf_counter()
        report = localrun.run(
            stack,
            config=config,
            database_url=database_url,
            environment={"AWS_ENDPOINT_URL_S3": s3_url, "LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"},
            progress=False,
            timeout=timeout,
            observe=observer,
        )
        wall_s = time.perf_counter() - started
    finally:
        localrun.shutdown()
    return report, wall_s


def _verified(media_map: Any, s3_client: Any, conninfo: str) -> bool:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.checks.verify import verify

    with Database(conninfo) as db:
        return verify(media_map, S3Adapter(s3_client), db, Ledger(db, media_map.schema)).ok


def _total(kinds: dict[str, Tally]) -> Tally:
    total = Tally()
    for tally in kinds.values():
        total.messages += tally.messages
        total.s3.update(tally.s3)
        total.db += tally.db
        total.max_s3 = max(total.max_s3, tally.max_s3)
        total.max_db = max(total.max_db, tally.max_db)
        total.outcomes.update(tally.outcomes)
    return total


def measure(n: int, *, moto_url: str, database_url: str, workdir: Path, timeout: float = 600.0) -> dict[str, Any]:
    """Backfill n messy objects on a fresh local stack, then drain the live queues through the real handlers,
    counting what each message costs. `database_url` names a server where a database can be created (and is dropped
    afterwards)."""
    from mediacanon.local import localrun

    suffix = uuid.uuid4().hex[:8]
    primary, cdn = f"cost-{suffix}-media", f"cost-{suffix}-cdn"
    dbname = f"live_cost_{suffix}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    conninfo = make_conninfo(database_url, dbname=dbname)
    s3_proxy = S3CountingProxy(moto_url)
    pg_proxy = _pg_proxy(database_url)
    s3_client = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
    config, media_map = _write_media_map(workdir, suffix, primary, cdn)
    try:
        # the site predates mediacanon's events: its objects are written before the notifications are on
        _write_site(n, conninfo, s3_client, primary, cdn)
        stack = localrun.provision_media_map(media_map, TEMPLATE, endpoint_url=moto_url, stack_name=f"cost-{suffix}")
        assert all(d == 0 for d in stack.depths().values()), stack.depths()

        s3_url, pg_port = s3_proxy.start(), pg_proxy.start()
        proxied = make_conninfo(conninfo, host="127.0.0.1", port=str(pg_port))
        result, backfill_s, backfill_s3, backfill_db = _backfill(
            media_map, s3_proxy, pg_proxy, s3_url=s3_url, database_url=proxied, timeout=timeout
        )
        migrated = int(result.counts.get("migrated", 0))
        markers = _delete_markers(s3_client, primary)
        queued = {queue: stack.depth(queue) for queue in STEP_QUEUES.values()}
        observer = PerRecord(s3_proxy, pg_proxy, _kind_of(media_map, {messy_key(i) for i in range(n)}))
        report, drain_s = _drain(stack, config, observer, s3_url=s3_url, database_url=proxied, timeout=timeout)
        verified = _verified(media_map, s3_client, conninfo)
    finally:
        s3_proxy.stop()
        pg_proxy.stop()
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    objects = max(migrated, 1)
    return {
        "objects": n,
        "migrated": migrated,
        "backfill": {
            "report_line": result.report_line,
            "wall_s": backfill_s,
            "s3": dict(sorted(backfill_s3.items())),
            "s3_per_object": sum(backfill_s3.values()) / objects,
            "db_round_trips_per_object": backfill_db / objects,
        },
        "delete_markers": len(markers),
        "queued": queued,
        "drain": {
            "line": report.line,
            "records": report.records,
            "failed_records": report.failed_records,
            "copies": dict(report.copies),
            "wall_s": drain_s,
        },
        "kinds": {kind: tally.to_json(objects) for kind, tally in sorted(observer.kinds.items())},
        "total": _total(observer.kinds).to_json(objects),
        "verified": verified,
    }


def render(results: dict[str, Any]) -> str:
    """The figures as a markdown table (the same numbers as the JSON)."""
    per = results["migrated"] or 1
    lines = [
        f"{results['objects']} objects, {results['migrated']} migrated by the backfill ({results['backfill']['report_line']});"
        f" {results['delete_markers']} delete markers (each an Object Deleted event); queued before the drain:"
        f" {', '.join(f'{q}={d}' for q, d in results['queued'].items())}; drain: {results['drain']['line']}",
        "",
        "| message (queue: what caused it) | messages | per object | S3 requests per object (by operation) "
        "| DB round trips per object | most S3 / DB in one message |",
        "|---|---:|---:|---|---:|---:|",
    ]
    rows = [*results["kinds"].items(), ("**all**", results["total"])]
    for kind, t in rows:
        ops = ", ".join(f"{op} {n / per:.3f}" for op, n in t["s3"].items()) or "none"
        lines.append(
            f"| {kind} | {t['messages']} | {t['messages'] / per:.3f} | {sum(t['s3'].values()) / per:.3f} ({ops}) "
            f"| {t['db_round_trips'] / per:.3f} | {t['max_s3_per_message']} / {t['max_db_per_message']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    opts = parser.parse_args()
    from mediacanon.local import embedded

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)  # noqa: S106
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    state = BENCH / ".work" / f"live-cost-{os.getpid()}"
    external = os.environ.get("DATABASE_URL")
    moto_url, moto_pid = embedded.start_moto(state / "moto")
    try:
        pg_url = external or embedded.start_postgres(state / "pg", repo=REPO)
        results = measure(opts.objects, moto_url=moto_url, database_url=pg_url, workdir=state)
    finally:
        embedded.stop_moto(moto_pid)
        if not external:
            embedded.stop_postgres(state / "pg", repo=REPO)
    print(render(results))
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if not results["verified"] or results["drain"]["failed_records"]:
        sys.exit("the stack did not settle cleanly: these figures are not a measurement")


if __name__ == "__main__":
    main()
