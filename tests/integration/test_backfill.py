"""The backfill state machine, run locally: the real ASL on moto's Step Functions executor, its Lambda tasks in
this process, against the session's moto server and PostgreSQL (mediacanon.local.sfnlocal)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import yaml

from mediacanon.core import mediamap
from mediacanon.local.sfnlocal import run_backfill
from mediacanon.sfnremote import BackfillResult

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROWS = [
    ("nytimes", "icons/nytimes_icon_v2_final.png", "mastheads/NYTimes_Masthead_FINAL (1).JPG"),  # messy names
    ("bbc", "icons/bbc.ico", None),  # canonical already, not mirrored yet
    ("reuters", None, None),  # empty column, canonical object exists: linked by slug
    ("el-pais", None, None),  # empty column, a staged download holds its icon
    ("guardian", "icons/guardian_old.png", None),  # missing from primary; the read-only legacy bucket holds it
    ("lemonde", "icons/lemonde_gone.png", None),  # missing everywhere
]
PRIMARY_OBJECTS = {
    "icons/nytimes_icon_v2_final.png": b"nyt icon",
    "mastheads/NYTimes_Masthead_FINAL (1).JPG": b"nyt masthead",
    "icons/bbc.ico": b"bbc icon",
    "icons/reuters.png": b"reuters icon",
    "downloads/el-pais/google_favicon/x.png": b"el pais staged",
    "icons/nobody_icon.png": b"an orphan",
}
CANONICAL = {
    "icons/nytimes.png": b"nyt icon",
    "mastheads/nytimes.jpg": b"nyt masthead",
    "icons/bbc.ico": b"bbc icon",
    "icons/reuters.png": b"reuters icon",
    "icons/el-pais.png": b"el pais staged",
    "icons/guardian.png": b"guardian from legacy",
}

FINAL_ROWS = {
    "nytimes": ("icons/nytimes.png", "mastheads/nytimes.jpg"),
    "bbc": ("icons/bbc.ico", None),
    "reuters": ("icons/reuters.png", None),
    "el-pais": ("icons/el-pais.png", None),
    "guardian": ("icons/guardian.png", None),
    "lemonde": ("icons/lemonde_gone.png", None),  # reported missing, left alone
}


@dataclass
class Site:
    media_map: mediamap.MediaMap
    map_data: dict[str, Any]
    client: Any
    conninfo: str
    endpoint_url: str
    primary: str
    cdn: str
    legacy: str

    def run(self, **kwargs: Any) -> BackfillResult:
        kwargs.setdefault("progress", False)
        return run_backfill(self.media_map, endpoint_url=self.endpoint_url, database_url=self.conninfo, timeout=120, **kwargs)

    def objects(self, bucket: str, *, reports: bool = False) -> dict[str, tuple[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {
            o["Key"]: (o["ETag"], o["LastModified"])
            for page in pages
            for o in page.get("Contents", [])
            if reports or not o["Key"].startswith("mediacanon-reports/")
        }

    def body(self, bucket: str, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    def rows(self) -> dict[str, tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            return {r[0]: r[1:] for r in conn.execute("SELECT slug, icon, masthead FROM archive_publicationsource")}

    def ledger_size(self) -> int:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            found = conn.execute("SELECT to_regclass('mediacanon.ledger')").fetchone()
            if found is None or found[0] is None:
                return 0
            row = conn.execute("SELECT count(*) FROM mediacanon.ledger").fetchone()
            return int(row[0]) if row else 0

    def state(self) -> tuple[Any, ...]:
        return (self.objects(self.primary), self.objects(self.cdn), self.objects(self.legacy), self.rows(), self.ledger_size())


@pytest.fixture
def site(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any, moto_endpoint: str) -> Iterator[Site]:
    db_conninfo = archive_db
    primary, cdn, legacy = bucket("primary"), bucket("cdn"), bucket("legacy")
    data = archive_map(primary, cdn, [legacy])
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        for slug, icon, masthead in ROWS:
            conn.execute(
                "INSERT INTO archive_publicationsource (slug, icon, masthead) VALUES (%s, %s, %s)", (slug, icon, masthead)
            )
    for key, body in PRIMARY_OBJECTS.items():
        s3_client.put_object(Bucket=primary, Key=key, Body=body, ContentType="image/png")
    s3_client.put_object(Bucket=legacy, Key="icons/guardian_old.png", Body=b"guardian from legacy", ContentType="image/png")
    s3_client.put_object(Bucket=cdn, Key="icons/stale_icon_v2.png", Body=b"not canonical")
    yield Site(mediamap.parse(data), data, s3_client, db_conninfo, moto_endpoint, primary, cdn, legacy)


def assert_final_state(site: Site) -> None:
    """What every complete backfill of the site ends in: the canonical objects in both buckets, byte-identical (the
    stale CDN key pruned, I3), the sources retired, the orphan kept (I5), and every row on its canonical key."""
    assert set(site.objects(site.primary)) == {*CANONICAL, "icons/nobody_icon.png"}
    assert set(site.objects(site.cdn)) == set(CANONICAL)
    for key, body in CANONICAL.items():
        assert site.body(site.primary, key) == site.body(site.cdn, key) == body
    assert site.rows() == FINAL_ROWS


def test_backfill_makes_buckets_and_rows_agree(site: Site) -> None:
    legacy_before = site.objects(site.legacy)

    result = site.run()

    assert (result.status, result.error, result.failed_items) == ("SUCCEEDED", None, 0)
    assert result.report_line == "DONE | migrated=3 linked=1 missing=1 skipped=0 failed=0 repaired=1 mirrored=1 pruned=1 orphan=1"
    # one Distributed Map per prefix (icons/, mastheads/, downloads/), and the rows map over Prepare's manifest
    labels = sorted(arn.rsplit("/", 1)[1].split(":")[0] for arn in result.map_run_counts)
    assert labels == ["objects", "objects", "objects", "rows"]
    execution = result.execution_arn.rsplit(":", 1)[1]
    # each map run's results went to S3 (ResultWriter), a manifest per run under the execution's results prefix
    manifests = [k for k in site.objects(site.primary, reports=True) if k.startswith(f"mediacanon-reports/{execution}/results/")]
    assert len(manifests) == 4 and all(k.endswith("/manifest.json") for k in manifests)
    rows_manifest = json.loads(site.body(site.primary, f"mediacanon-reports/{execution}/rows-manifest.json"))
    assert [r["field"] for r in rows_manifest] == ["archive.PublicationSource.icon", "archive.PublicationSource.masthead"]
    # objects canonical in both buckets, byte-identical; sources retired; the orphan kept (I5)
    assert_final_state(site)
    assert site.objects(site.legacy) == legacy_before  # read-only source untouched (I2)
    # the report: JSON and CSV, with per-object outcomes
    assert sorted(result.report_keys) == sorted(
        f"mediacanon-reports/{result.execution_arn.rsplit(':', 1)[1]}/report.{ext}" for ext in ("json", "csv")
    )
    report = json.loads(site.body(site.primary, next(k for k in result.report_keys if k.endswith(".json"))))
    assert report["line"] == result.report_line
    outcomes = {(i["key"], i["outcome"]) for i in report["items"]}
    assert {
        ("icons/lemonde_gone.png", "missing"),
        ("icons/nobody_icon.png", "orphan"),
        ("icons/stale_icon_v2.png", "pruned"),
    } <= outcomes
    # the ledger names the execution, so rollback can find its renames
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        executions = {r[0] for r in conn.execute("SELECT DISTINCT execution FROM mediacanon.ledger")}
    assert executions == {result.execution_arn.rsplit(":", 1)[1]}


def test_a_second_backfill_changes_nothing(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.run()
    before = site.state()

    again = site.run(progress=True)

    assert again.status == "SUCCEEDED"
    assert again.report_line == "DONE | migrated=0 linked=0 missing=1 skipped=6 failed=0 orphan=1"
    assert site.state() == before  # no copy, no delete, no row or ledger change
    # not a terminal: plain progress lines from describe_map_run, no bar
    assert "map run 3 (succeeded, 0 failed):" in capsys.readouterr().err


def test_a_dry_run_writes_nothing_but_the_report(site: Site) -> None:
    before = site.state()

    result = site.run(dry_run=True)

    assert result.status == "SUCCEEDED"
    assert result.report_line is not None and result.report_line.startswith("DRY RUN | migrated=3 linked=1 missing=1")
    assert site.state() == before
    reports = set(site.objects(site.primary, reports=True)) - set(site.objects(site.primary))
    assert set(result.report_keys) <= reports
    assert all(k.startswith(f"mediacanon-reports/{result.execution_arn.rsplit(':', 1)[1]}/") for k in reports)


def test_phases_select_what_runs(site: Site) -> None:
    result = site.run(phases=["mirror", "report"])

    assert result.status == "SUCCEEDED"
    assert result.map_run_counts == {}  # no objects phase
    assert result.report_line == "DONE | migrated=0 linked=0 missing=0 skipped=0 failed=0 pruned=1"
    assert "icons/nytimes_icon_v2_final.png" in site.objects(site.primary)


def test_max_deletes_guards_the_mirror_and_the_report_still_runs(site: Site) -> None:
    result = site.run(phases=["mirror", "report"], max_deletes=0)

    assert result.status == "FAILED"
    assert result.error is not None and "maxDeletes=0" in result.error
    assert "icons/stale_icon_v2.png" in site.objects(site.cdn)  # nothing deleted


def test_a_bad_input_fails_before_any_work(site: Site) -> None:
    result = site.run(fields=["archive.PublicationSource.nope"])

    assert result.status == "FAILED"
    assert result.error is not None and "PermanentError" in result.error and "unknown field" in result.error


def test_the_lambda_handler_runs_a_task(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """functions/backfill/app.py as Lambda would run it: settings from the environment, one core call."""
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(site.map_data))
    monkeypatch.setenv("MEDIACANON_CONFIG", str(config))
    monkeypatch.setenv("DATABASE_URL", site.conninfo)
    monkeypatch.setenv("AWS_ENDPOINT_URL", site.endpoint_url)
    spec = importlib.util.spec_from_file_location("backfill_app", ROOT / "functions" / "backfill" / "app.py")
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "backfill_app", app)
    spec.loader.exec_module(app)
    context = SimpleNamespace(
        function_name="backfill", memory_limit_in_mb=1024, aws_request_id="req-1",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:backfill",
    )  # fmt: skip

    planned = app.lambda_handler({"action": "prepare", "execution": "by-hand", "input": {"dryRun": True}}, context)
    batch = app.lambda_handler(
        {"action": "objects", "execution": "by-hand", "dryRun": True, "items": [{"Key": "icons/nytimes_icon_v2_final.png"}]},
        context,
    )

    assert planned["prefixes"] == ["icons/", "mastheads/", "downloads/"]
    # the row ranges go to S3 for the rows map's ItemReader, not into the state
    assert planned["rowsManifest"] == "mediacanon-reports/by-hand/rows-manifest.json"
    ranges = json.loads(site.body(site.primary, planned["rowsManifest"]))
    assert [r["field"] for r in ranges] == ["archive.PublicationSource.icon", "archive.PublicationSource.masthead"]
    assert planned["resultsPrefix"] == "mediacanon-reports/by-hand/results"
    assert planned["run"] == {"objects": True, "rows": True, "mirror": True, "report": True}
    assert batch == {"counts": {"migrated": 1}}


def test_a_backfill_killed_midway_and_run_again_ends_in_the_same_state(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from mediacanon.steps import Steps

    real_link = Steps.link
    calls = {"n": 0}

    def dies_after_two(self: Steps, event: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 2:  # the worker process dies mid-batch: after its copies, before the rows commit
            raise RuntimeError("the worker crashed")
        return real_link(self, event)

    monkeypatch.setattr(Steps, "link", dies_after_two)
    killed = site.run()
    assert killed.status == "FAILED" or killed.failed_items > 0
    monkeypatch.setattr(Steps, "link", real_link)
    assert site.rows() != FINAL_ROWS  # really midway: some rows were never linked

    again = site.run()

    assert again.status == "SUCCEEDED"
    assert_final_state(site)


def test_rollback_restores_the_names_and_rows_of_an_execution(site: Site) -> None:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.checks.invariants import check_invariants
    from mediacanon.rollback import rollback

    rows_before = site.rows()
    result = site.run()
    execution = result.execution_arn.rsplit(":", 1)[1]
    assert site.rows() != rows_before

    with Database(site.conninfo) as db:
        ledger = Ledger(db, site.media_map.schema)
        undone = rollback(site.media_map, S3Adapter(site.client), db, ledger, execution=execution)

    assert undone.rows_changed_since == []
    # every row is back where it was, but the repair: guardian's row pointed at a 404 (its file only in the legacy
    # bucket) and stays on the copy the backfill made, reported with its reason (I1: never back onto a 404)
    rows_after = site.rows()
    assert rows_after["nytimes"] == rows_before["nytimes"]
    assert rows_after["el-pais"] == rows_before["el-pais"]  # it had no file: empty again
    assert rows_before["guardian"] == ("icons/guardian_old.png", None) and rows_after["guardian"] == ("icons/guardian.png", None)
    assert {k: v for k, v in rows_after.items() if k != "guardian"} == {k: v for k, v in rows_before.items() if k != "guardian"}
    assert [s["reason"] for s in undone.skipped] == [
        "left on its key: its file 'icons/guardian_old.png' was in no bucket before (a repair)"
    ]
    # every key a row points at again exists in both buckets, with its bytes, marked as restored
    for key, body in (
        ("icons/nytimes_icon_v2_final.png", b"nyt icon"),
        ("mastheads/NYTimes_Masthead_FINAL (1).JPG", b"nyt masthead"),
    ):
        assert site.body(site.primary, key) == site.body(site.cdn, key) == body
    with Database(site.conninfo) as db:
        checked = check_invariants(site.media_map, S3Adapter(site.client), db, Ledger(db, site.media_map.schema))
    assert checked.ok, checked.summary()


# -- the batch worker on listed objects (what the ItemReader gives it: key, ETag, size) --------------------------------


@contextmanager
def worker(site: Site) -> Iterator[Any]:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.steps import Steps

    with Database(site.conninfo) as db:
        ledger = Ledger(db, site.media_map.schema, execution="by-hand")
        ledger.ensure()
        yield Steps(site.media_map, S3Adapter(site.client), db, ledger, owner_wait_seconds=0)


def listing(site: Site, prefix: str) -> list[Any]:
    from mediacanon.backfill import Listed

    pages = site.client.get_paginator("list_objects_v2").paginate(Bucket=site.primary, Prefix=prefix)
    return [Listed(o["Key"], o["ETag"].strip('"'), o["Size"]) for page in pages for o in page.get("Contents", [])]


def sent_requests(site: Site) -> list[str]:
    sent: list[str] = []
    site.client.meta.events.register("before-call.s3.*", lambda model, **_: sent.append(model.name))
    return sent


def test_a_listed_batch_costs_two_copies_per_object_and_no_head(site: Site) -> None:
    from mediacanon.backfill import process_listed

    for i in range(40):
        site.client.put_object(Bucket=site.primary, Key=f"icons/paper-{i:03d}_icon_v2_final.png", Body=f"p{i}".encode())
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        for i in range(40):
            conn.execute(
                "INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)",
                (f"paper-{i:03d}", f"icons/paper-{i:03d}_icon_v2_final.png"),
            )
    items = [item for item in listing(site, "icons/paper-")]
    sent = sent_requests(site)

    with worker(site) as steps:
        result = process_listed(steps, items, dry_run=False)

    assert result.counts == {"migrated": 40}
    # 2 copies each; the canonical and CDN keys' state and the sources' before retiring from one listing page
    # each; one DeleteObjects: no HEAD, no GET
    assert sorted(set(sent)) == ["CopyObject", "DeleteObjects", "ListObjectsV2"]
    assert (sent.count("CopyObject"), sent.count("DeleteObjects"), sent.count("ListObjectsV2")) == (80, 1, 3)
    rows = site.rows()
    for i in range(40):
        key = f"icons/paper-{i:03d}.png"
        assert rows[f"paper-{i:03d}"][0] == key
        assert site.body(site.primary, key) == site.body(site.cdn, key) == f"p{i}".encode()
        assert site.client.head_object(Bucket=site.primary, Key=key)["ContentType"] == "binary/octet-stream"  # kept
    assert not [k for k in site.objects(site.primary) if k.startswith("icons/paper-") and "_icon_v2" in k]
    # where each copy came from is in the ledger: the claim (source and ETag) and the link, for rollback
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        claims: dict[str, str] = dict(conn.execute("SELECT canonical_key, source_key FROM mediacanon.claims").fetchall())
        links = conn.execute("SELECT count(*) FROM mediacanon.ledger WHERE retired_at IS NOT NULL").fetchone()
    assert claims == {f"icons/paper-{i:03d}.png": f"icons/paper-{i:03d}_icon_v2_final.png" for i in range(40)}
    assert links == (40,)


def test_a_listed_object_that_changed_since_the_listing_goes_through_the_steps(site: Site) -> None:
    from mediacanon.backfill import Listed, process_listed

    [item] = listing(site, "icons/nytimes_icon_v2_final.png")
    site.client.put_object(Bucket=site.primary, Key=item.key, Body=b"nyt icon, newer bytes")

    with worker(site) as steps:
        result = process_listed(steps, [Listed(item.key, item.etag, item.size)], dry_run=False)

    assert result.counts == {"migrated": 1}
    assert site.body(site.primary, "icons/nytimes.png") == site.body(site.cdn, "icons/nytimes.png") == b"nyt icon, newer bytes"
    assert site.rows()["nytimes"][0] == "icons/nytimes.png"


def test_a_source_overwritten_before_its_retirement_is_kept(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from mediacanon import backfill
    from mediacanon.backfill import listed as listed_batches

    real_link = listed_batches._link_and_retire

    def overwritten_then_link(steps: Any, moves: Any, result: Any) -> None:
        site.client.put_object(Bucket=site.primary, Key="icons/nytimes_icon_v2_final.png", Body=b"a newer upload")
        real_link(steps, moves, result)

    monkeypatch.setattr(listed_batches, "_link_and_retire", overwritten_then_link)  # where process_listed looks it up
    items = listing(site, "icons/nytimes_icon_v2_final.png")
    with worker(site) as steps:
        backfill.process_listed(steps, items, dry_run=False)

    assert site.rows()["nytimes"][0] == "icons/nytimes.png"  # the row moved to the bytes it referenced
    assert site.body(site.primary, "icons/nytimes_icon_v2_final.png") == b"a newer upload"  # I5: not deleted


def test_a_backfill_killed_while_linking_listed_batches_converges(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from mediacanon.adapters.ledger import Ledger

    real = Ledger.link  # what the backfill and the steps' link_rows both go through
    calls = {"n": 0}

    def dies_after_one(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:  # the worker dies after the copies of its batch, with one row linked
            raise RuntimeError("the worker crashed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "link", dies_after_one)
    killed = site.run()
    assert killed.status == "FAILED" or killed.failed_items > 0
    monkeypatch.setattr(Ledger, "link", real)
    assert site.rows() != FINAL_ROWS

    again = site.run()

    assert again.status == "SUCCEEDED"
    assert_final_state(site)


@pytest.mark.parametrize("stride", [1, 7, 400], ids=["dense", "spread", "sparse"])
def test_present_answers_from_listing_pages_and_heads_where_a_page_would_not_pay(site: Site, stride: int) -> None:
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.backfill import present

    keys = [f"bulk/{i:05d}.png" for i in range(0, 2400)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: site.client.put_object(Bucket=site.cdn, Key=k, Body=b"x"), keys))
    wanted = [*keys[::stride][:30], "bulk/absent.png", "bulk/00001.png.old", "other/00001.png"]
    sent = sent_requests(site)

    found = present(S3Adapter(site.client), site.cdn, wanted)

    assert set(found) == set(wanted)
    assert {k for k, v in found.items() if v is not None} == set(keys[::stride][:30])
    pages, heads = sent.count("ListObjectsV2"), sent.count("HeadObject")
    assert pages + heads <= {1: 2, 7: 3, 400: 33}[stride], (pages, heads)


def test_the_rows_phase_reads_the_key_space_a_slice_at_a_time(site: Site) -> None:
    """Rows added over the years reference keys all over the bucket: by id, a range's keys lie about one per
    listing page and each costs a HEAD; a range in key order is a run of adjacent keys, answered ~1,000 a page."""
    from mediacanon.backfill import process_rows, row_ranges

    n = 3000
    keys = [f"icons/site-{i:05d}.png" for i in range(n)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: site.client.put_object(Bucket=site.primary, Key=k, Body=b"x"), keys))
    shuffled = sorted(range(n), key=lambda i: (i * 7919) % n)  # ids in an order unrelated to the keys
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM archive_publicationsource")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)",
                [(f"site-{i:05d}", keys[i]) for i in shuffled],
            )
    field = site.media_map.field("archive.PublicationSource.icon")
    with worker(site) as steps:
        ranges = row_ranges(steps.db, field, rows_per_range=1000)
        sent = sent_requests(site)
        results = [process_rows(steps, field, span, dry_run=False) for span in ranges]
        by_key = (sent.count("ListObjectsV2"), sent.count("HeadObject"))
        sent.clear()
        ids = [r.id for r in steps.db.iter_rows(field)]
        # 20 ids over 3,000 keys: as 10,000 ids lie over 1.5 M keys, so one in ~150 keys (a manifest written before
        # key ranges holds id ranges: a redriven execution still reads them)
        by_id = [{"field": field.name, "start": ids[i], "end": ids[i + 20]} for i in (0, 1000, 2000)]
        for span in by_id:
            process_rows(steps, field, span, dry_run=False)
        old = (sent.count("ListObjectsV2"), sent.count("HeadObject"))

    assert len(ranges) == 3
    assert all(r.counts.get("missing", 0) == 0 and not r.items for r in results)  # every row's file is there
    assert by_key[1] == 0, by_key  # no HEAD per row
    assert by_key[0] <= n * 0.002, by_key  # <= 0.002 listing pages per row: ~1,000 rows a page
    assert sum(old) >= 60 * 0.25, old  # 60 rows by id: pages that place a handful each, then HEADs


def test_the_mirror_prune_walks_slices_of_the_key_space_side_by_side_and_misses_none(site: Site) -> None:
    """The prune cuts the key space at the media map's prefixes and a few characters after them; keys on both
    sides of every cut, outside every prefix and at the cuts themselves are judged as one walk would judge them."""
    from mediacanon.backfill import mirror

    names = [f"{c}{i}" for c in "0123456789abcdefghijklmnopqrstuvwxyz" for i in range(2)]
    kept = [f"icons/{n}.png" for n in names]  # canonical names, in both buckets
    stale = [f"icons/{n}_icon_v2.png" for n in [*names, "-0", "_0", "A0", "Z0"]]  # in the CDN only: pruned
    loose = ["0top.png", "icons", "icons0/x.png", "zzz/other.png", "mastheads/", "icons/", "icons/0", "icons/x"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: site.client.put_object(Bucket=site.primary, Key=k, Body=b"k"), kept))
        list(pool.map(lambda k: site.client.put_object(Bucket=site.cdn, Key=k, Body=b"k"), [*kept, *stale, *loose]))
    slices = mirror._slices(site.media_map)
    assert len(slices) > 16  # more than one walk at a time
    assert slices[0][0] == "" and slices[-1][1] is None
    assert all(a[1] == b[0] for a, b in pairwise(slices))  # contiguous: every key in exactly one slice
    with worker(site) as steps:
        extra = mirror._extra_keys(steps)
    expected = {k for k in [*stale, *loose]} | {"icons/stale_icon_v2.png"}  # the site's own stale CDN key too
    assert [k for k, _ in extra] == sorted(k for k, _ in extra)  # in key order, as one walk gives them
    assert {k for k, _ in extra} == expected


# -- the listed batch's database work: a statement per batch (claims, retire marks) or per field (rows + ledger) --------


def papers(site: Site, n: int) -> list[Any]:
    """n messy icons, each referenced by its row; their listing."""
    for i in range(n):
        site.client.put_object(Bucket=site.primary, Key=f"icons/paper-{i:03d}_icon_v2_final.png", Body=f"p{i}".encode())
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        for i in range(n):
            conn.execute(
                "INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)",
                (f"paper-{i:03d}", f"icons/paper-{i:03d}_icon_v2_final.png"),
            )
    return listing(site, "icons/paper-")


def test_a_listed_batch_claims_links_and_retires_in_a_statement_each(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.backfill import process_listed

    items = papers(site, 40)
    calls: dict[str, int] = {}
    for name in ("claim", "link", "mark_retired", "claim_many", "record_links", "mark_retired_many"):
        real = getattr(Ledger, name)

        def counted(self: Ledger, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Ledger, name, counted)

    with worker(site) as steps:
        result = process_listed(steps, items, dry_run=False)

    assert result.counts == {"migrated": 40}
    assert calls == {"claim_many": 1, "record_links": 1, "mark_retired_many": 1}  # none per object
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        entries = conn.execute(
            "SELECT source_key, canonical_key, rows_changed, retired_at IS NOT NULL FROM mediacanon.ledger ORDER BY id"
        ).fetchall()
    # one ledger entry per object, as before: rollback reverses each on its own
    assert entries == [(f"icons/paper-{i:03d}_icon_v2_final.png", f"icons/paper-{i:03d}.png", 1, True) for i in range(40)]


def test_rollback_of_listed_batches_restores_each_row_and_source(site: Site) -> None:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.backfill import process_listed
    from mediacanon.rollback import rollback

    items = papers(site, 30)
    rows_before = site.rows()
    with worker(site) as steps:
        assert process_listed(steps, items[:15], dry_run=False).counts == {"migrated": 15}
        assert process_listed(steps, items[15:], dry_run=False).counts == {"migrated": 15}
    # someone saves a new file on one row meanwhile: rollback leaves it and says so
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        conn.execute("UPDATE archive_publicationsource SET icon = 'icons/paper-007-new.png' WHERE slug = 'paper-007'")

    with Database(site.conninfo) as db:
        undone = rollback(site.media_map, S3Adapter(site.client), db, Ledger(db, site.media_map.schema), execution="by-hand")

    assert undone.entries == 30
    assert undone.rows_restored == 29
    assert [c["expected"] for c in undone.rows_changed_since] == ["icons/paper-007.png"]
    rows_after = site.rows()
    for i in range(30):
        slug = f"paper-{i:03d}"
        if i == 7:
            assert rows_after[slug][0] == "icons/paper-007-new.png"
            continue
        assert rows_after[slug] == rows_before[slug]
        assert site.body(site.primary, f"icons/{slug}_icon_v2_final.png") == f"p{i}".encode()


def test_a_permanent_error_linking_one_listed_object_fails_that_object_alone(site: Site) -> None:
    from mediacanon.backfill import process_listed

    items = papers(site, 12)
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        conn.execute("ALTER TABLE archive_publicationsource ADD CONSTRAINT not_3 CHECK (icon <> 'icons/paper-003.png')")

    with worker(site) as steps:
        result = process_listed(steps, items, dry_run=False)

    assert result.counts == {"migrated": 11, "failed": 1}
    [failed] = [item for item in result.items if item["outcome"] == "failed"]
    assert failed["key"] == "icons/paper-003_icon_v2_final.png"
    assert "not_3" in failed["detail"]
    rows = site.rows()
    assert rows["paper-003"][0] == "icons/paper-003_icon_v2_final.png"
    assert site.body(site.primary, "icons/paper-003_icon_v2_final.png") == b"p3"  # I2: its row still references it
    assert all(rows[f"paper-{i:03d}"][0] == f"icons/paper-{i:03d}.png" for i in range(12) if i != 3)


def test_a_permanent_error_claiming_one_listed_object_fails_that_object_alone(site: Site) -> None:
    from mediacanon.backfill import process_listed

    items = papers(site, 12)
    with worker(site) as steps:  # the ledger's tables exist
        with psycopg.connect(site.conninfo, autocommit=True) as conn:
            conn.execute("ALTER TABLE mediacanon.claims ADD CONSTRAINT not_5 CHECK (canonical_key <> 'icons/paper-005.png')")
        result = process_listed(steps, items, dry_run=False)

    assert result.counts == {"migrated": 11, "failed": 1}
    assert [item["key"] for item in result.items if item["outcome"] == "failed"] == ["icons/paper-005_icon_v2_final.png"]
    assert site.rows()["paper-005"][0] == "icons/paper-005_icon_v2_final.png"
    assert "icons/paper-005.png" not in site.objects(site.primary)  # not copied without its claim
    assert site.rows()["paper-004"][0] == "icons/paper-004.png"


@pytest.mark.parametrize(("method", "survives"), [("claim_many", 1), ("record_links", 1), ("mark_retired_many", 0)])
def test_a_backfill_killed_in_a_batched_ledger_write_converges(
    site: Site, monkeypatch: pytest.MonkeyPatch, method: str, survives: int
) -> None:
    from mediacanon.adapters.ledger import Ledger

    real = getattr(Ledger, method)
    calls = {"n": 0}

    def dies(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > survives:  # the worker dies there: after the copies, or after the sources' DeleteObjects
            raise RuntimeError("the worker crashed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, method, dies)
    killed = site.run()
    assert killed.status == "FAILED" or killed.failed_items > 0
    assert calls["n"] > survives
    monkeypatch.setattr(Ledger, method, real)

    again = site.run()

    assert again.status == "SUCCEEDED"
    assert_final_state(site)


@pytest.mark.parametrize("listed", [True, False], ids=["listed-batch", "per-object"])
def test_a_generic_name_is_renamed_from_the_row_that_references_it(site: Site, listed: bool) -> None:
    """Regression: a name canonical for another slug ('icons/favicon.ico' is slug 'favicon') was taken as canonical
    by the listed batch's shortcut and by normalize alike; the row that references it names it."""
    from mediacanon.backfill import process_listed, process_objects

    site.client.put_object(Bucket=site.primary, Key="icons/favicon.ico", Body=b"cnn icon")
    site.client.put_object(Bucket=site.primary, Key="icons/favicon.png", Body=b"the favicon row's own")
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES ('cnn', 'icons/favicon.ico')")
        conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES ('favicon', 'icons/favicon.png')")

    def batch() -> Any:
        items = listing(site, "icons/favicon.") + listing(site, "icons/cnn.")
        with worker(site) as steps:
            if listed:
                return process_listed(steps, items, dry_run=False)
            return process_objects(steps, [item.key for item in items], dry_run=False)

    first, second = batch(), batch()

    assert first.counts == {"migrated": 1, "mirrored": 1}, first.items
    assert second.counts == {"skipped": 2}, second.items  # converged: nothing renamed back or again
    assert site.rows()["cnn"][0] == "icons/cnn.ico"
    assert site.rows()["favicon"][0] == "icons/favicon.png"  # its own slug's name: left alone
    for bucket in (site.primary, site.cdn):
        assert {k for k in site.objects(bucket) if k.startswith(("icons/favicon.", "icons/cnn."))} == {
            "icons/cnn.ico",
            "icons/favicon.png",
        }
    assert site.body(site.cdn, "icons/cnn.ico") == b"cnn icon"


def test_a_listed_batch_killed_between_its_commit_and_its_delete_retires_its_sources_when_retried(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (found by the property schedules): a worker that died after its batch's record_links committed and
    before its DeleteObjects left the sources in the primary bucket for good. The retried batch found no row
    referencing them (the rows are on the canonical keys now) and counted them as orphans, and the batch's copies
    carry no source key in their metadata, so the live link step could not retire them either. The retry now finds
    the ledger's unretired links and retires each source that still holds the bytes its canonical key holds."""
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.backfill import process_listed

    items = papers(site, 5)

    def dies(self: S3Adapter, bucket: str, etags: dict[str, str]) -> Any:
        raise RuntimeError("the worker died")

    real = S3Adapter.delete_if_unchanged
    monkeypatch.setattr(S3Adapter, "delete_if_unchanged", dies)
    with worker(site) as steps, pytest.raises(RuntimeError):
        process_listed(steps, items, dry_run=False)
    monkeypatch.setattr(S3Adapter, "delete_if_unchanged", real)
    assert all(site.rows()[f"paper-{i:03d}"][0] == f"icons/paper-{i:03d}.png" for i in range(5))  # committed
    # one source is saved over meanwhile (Django re-saves the file): its new bytes are under no other key
    site.client.put_object(Bucket=site.primary, Key="icons/paper-001_icon_v2_final.png", Body=b"newer bytes")

    with worker(site) as steps:
        retried = process_listed(steps, items, dry_run=False)  # the same batch, its listing stale by now
        again = process_listed(steps, listing(site, "icons/paper-"), dry_run=False)  # a later backfill

    assert retried.counts == {"migrated": 4, "orphan": 1}, retried.items
    assert again.counts == {"skipped": 5, "orphan": 1}, again.items
    papers_left = {k for k in site.objects(site.primary) if k.startswith("icons/paper-")}
    assert papers_left == {*(f"icons/paper-{i:03d}.png" for i in range(5)), "icons/paper-001_icon_v2_final.png"}
    assert site.body(site.primary, "icons/paper-001_icon_v2_final.png") == b"newer bytes"  # I5: kept
    assert {k for k in site.objects(site.cdn) if k.startswith("icons/paper-")} == {f"icons/paper-{i:03d}.png" for i in range(5)}
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        unretired = conn.execute("SELECT source_key FROM mediacanon.ledger WHERE retired_at IS NULL").fetchall()
    assert unretired == [("icons/paper-001_icon_v2_final.png",)]


def test_a_source_another_worker_retired_first_does_not_fail_the_listed_batch(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (found by the property schedules, two workers on one listed batch): a source deleted by another
    worker between this batch's check of the sources and its DeleteObjects comes back as a NoSuchKey error (S3
    evaluates the per-object ETag against an object that is gone); that error failed the whole batch for good
    (NotFoundError is permanent: no retry, the batch's other retires never marked, its part never written). The
    source is gone as the batch wanted: only a changed or gone source is left alone, the rest of the batch goes on."""
    from mediacanon.adapters.s3 import DeleteError, DeleteResult, S3Adapter
    from mediacanon.backfill import process_listed

    items = papers(site, 5)
    gone = "icons/paper-002_icon_v2_final.png"
    real = S3Adapter.delete_if_unchanged

    def raced(self: S3Adapter, bucket: str, etags: dict[str, str]) -> DeleteResult:
        site.client.delete_object(Bucket=bucket, Key=gone)  # the other worker's retire, just before this one's
        # what S3 answers for it (moto ignores DeleteObjects' per-object ETag and would count it deleted)
        done = real(self, bucket, {k: e for k, e in etags.items() if k != gone})
        return DeleteResult(done.deleted, (*done.errors, DeleteError(gone, "NoSuchKey", "The specified key does not exist.")))

    monkeypatch.setattr(S3Adapter, "delete_if_unchanged", raced)
    with worker(site) as steps:
        result = process_listed(steps, items, dry_run=False)

    assert result.counts == {"migrated": 5}, result.items
    assert not [k for k in site.objects(site.primary) if k.startswith("icons/paper-") and "_icon_v2" in k]
    assert all(site.rows()[f"paper-{i:03d}"][0] == f"icons/paper-{i:03d}.png" for i in range(5))
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        unmarked = conn.execute("SELECT source_key FROM mediacanon.ledger WHERE retired_at IS NULL").fetchall()
    assert unmarked == [(gone,)]  # its retire is the other worker's to mark


def test_the_report_lists_the_objects_of_batches_that_failed_for_good(site: Site) -> None:
    """A batch that failed for good (within the map's tolerated failures) wrote no part; its objects reach the report
    from the map run's ResultWriter output, read in the shapes "ResultWriter (Map)" documents: manifest.json with
    ResultFiles by status, each FAILED file a JSON array of child executions with their Input, Error and Cause. moto
    writes the manifest but never a FAILED file, so this one is written here as Step Functions writes it."""
    from mediacanon.backfill import run_task

    results = "mediacanon-reports/by-hand/results/0f0e1d2c-3b4a-5968-7786-95a4b3c2d1e0"
    cause = {"errorType": "RetryableError", "errorMessage": "SlowDown on s3://primary: retries exhausted", "stackTrace": ["..."]}
    failed_child = {
        "ExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:stack-backfill/objects:1",
        "Input": json.dumps(
            {"Items": [{"Key": "icons/a [draft].png", "Etag": '"e1"', "Size": 1}, {"Key": "icons/b.png"}], "BatchInput": {}}
        ),
        "InputDetails": {"Included": True},
        "Name": "1",
        "Error": "RetryableError",
        "Cause": json.dumps(cause),
        "Status": "FAILED",
    }
    failed_rows = {
        **failed_child,
        "Input": json.dumps({"range": {"field": "archive.PublicationSource.icon", "start": 1, "end": 10001}}),
        "Error": "States.Timeout",
        "Cause": "",
    }
    site.client.put_object(Bucket=site.primary, Key=f"{results}/FAILED_0.json", Body=json.dumps([failed_child, failed_rows]))
    manifest = {
        "DestinationBucket": site.primary,
        "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:stack-backfill/objects:0f0e1d2c-3b4a-5968-7786-95a4b3c2d1e0",
        "ResultFiles": {"FAILED": [{"Key": f"{results}/FAILED_0.json", "Size": 1}], "PENDING": [], "SUCCEEDED": []},
    }
    site.client.put_object(Bucket=site.primary, Key=f"{results}/manifest.json", Body=json.dumps(manifest))

    with worker(site) as steps:
        answer = run_task({"action": "report", "execution": "by-hand"}, lambda _: steps)

    assert answer["counts"]["failed"] == 3
    report = json.loads(site.body(site.primary, "mediacanon-reports/by-hand/report.json"))
    failed = {(i["phase"], i["key"], i["detail"]) for i in report["items"] if i["outcome"] == "failed"}
    why = "batch failed: RetryableError: SlowDown on s3://primary: retries exhausted"
    assert failed == {
        ("objects", "icons/a [draft].png", why),
        ("objects", "icons/b.png", why),
        ("rows", "", "rows archive.PublicationSource.icon ids from 1 to 10001 not checked: States.Timeout"),
    }
