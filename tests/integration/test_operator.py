"""The bad-input suite: every command run the way an operator gets it wrong, as a real process
(`python -m mediacanon`) on a real moto server and PostgreSQL.

Each case asserts three things: the exit code (2: the command line or its input is wrong and nothing started;
1: the run met a failure), one message that names the thing at fault and its fix with no traceback, and that
nothing changed in either bucket or the database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import yaml

from mediacanon.local import embedded

pytestmark = pytest.mark.integration

ROWS = [
    ("nytimes", "icons/nytimes_icon_v2_final.png"),
    ("bbc", "icons/bbc.ico"),
    ("gone", "icons/gone.png"),
    ("draft", "icons/[draft] logo.png"),
    ("smile", "icons/smile 😀:v2.png"),
]
OBJECTS = ["icons/nytimes_icon_v2_final.png", "icons/bbc.ico", "icons/[draft] logo.png", "icons/smile 😀:v2.png"]


@dataclass
class World:
    env: dict[str, str]
    config: Path
    primary: str
    cdn: str
    conninfo: str
    s3: Any
    tmp: Path

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mediacanon", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp,
        )

    def snapshot(self) -> dict[str, Any]:
        """Both buckets' keys and ETags, every row, and every table of mediacanon's own schema (the ledger)."""
        buckets = {}
        for name in (self.primary, self.cdn):
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=name)
            buckets[name] = sorted((o["Key"], o["ETag"]) for page in pages for o in page.get("Contents", []))
        with psycopg.connect(self.conninfo) as conn:
            rows = conn.execute("SELECT id, slug, icon FROM archive_publicationsource ORDER BY id").fetchall()
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'mediacanon'"
            ).fetchall()
            ledger = {
                t: conn.execute(f'SELECT count(*) FROM "{s}"."{t}"').fetchone()  # noqa: S608 (names read from the catalog)
                for s, t in tables
            }
        return {"buckets": buckets, "rows": rows, "ledger": ledger}


@pytest.fixture
def world(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any, aws_endpoint: str, tmp_path: Path) -> World:
    primary, cdn = bucket("primary"), bucket("cdn")
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(archive_map(primary, cdn)), encoding="utf-8")
    with psycopg.connect(archive_db, autocommit=True) as conn:
        for slug, icon in ROWS:
            conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, icon))
    for key in OBJECTS:
        s3_client.put_object(Bucket=primary, Key=key, Body=key.encode())
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "DATABASE_URL": archive_db,
        "MEDIACANON_CONFIG": str(config),
        "MEDIACANON_STATE_DIR": str(tmp_path / "no-local-stack"),
        "COLUMNS": "200",
        "PYTHONWARNINGS": "default",
    }
    return World(env, config, primary, cdn, archive_db, s3_client, tmp_path)


def closed_port() -> int:
    return embedded.free_port()


def assert_refused(result: subprocess.CompletedProcess[str], code: int, *named: str) -> None:
    """Exit `code`, no traceback, and every `named` text (the thing at fault, its fix) in what was printed."""
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out, out
    for text in named:
        assert text in out, f"{text!r} not in:\n{out}"


# (id, arguments, environment overrides, exit code, texts the message must hold); {tmp} is the test's folder
Case = tuple[str, list[str], dict[str, str], int, list[str]]
CASES: list[Case] = [
    ("rollback-bad-since", ["rollback", "--since", "yesterday"], {}, 2,
     ["'--since'", "'yesterday' is not an ISO 8601 time", "fix:"]),
    ("rollback-bad-since-dry-run", ["rollback", "--since", "2026-13-45", "--dry-run"], {}, 2, ["'--since'", "fix:"]),
    ("rollback-neither", ["rollback"], {}, 2, ["name an EXECUTION or pass --since TIME"]),
    ("rollback-unknown-execution", ["rollback", "backfill-nope"], {}, 2,
     ["no rename of execution 'backfill-nope' is in the ledger", "fix:"]),
    ("rollback-unknown-execution-dry-run", ["rollback", "backfill-nope", "--dry-run"], {}, 2, ["'backfill-nope'", "fix:"]),
    ("report-unknown-execution", ["report", "backfill-nope"], {}, 1, ["no report for 'backfill-nope'", "fix:"]),
    ("plan-unknown-action", ["plan", "--only", "renam"], {}, 2, ["'--only'", "'renam'", "rename"]),
    ("backfill-unknown-field", ["backfill", "--field", "archive.Nope.icon"], {}, 2,
     ["'--field'", "unknown field 'archive.Nope.icon'", "archive.PublicationSource.icon", "fix:"]),
    ("backfill-negative-max-deletes", ["backfill", "--max-deletes", "-1"], {}, 2, ["'--max-deletes'", "-1"]),
    ("backfill-unknown-phase", ["backfill", "--phase", "objects", "mirrors"], {}, 2, ["'--phase'", "'mirrors'", "mirror"]),
    ("upload-missing-folder", ["upload", "{tmp}/no-such-scrape"], {}, 2, ["no-such-scrape is not there", "fix:"]),
    ("upload-a-file-not-a-folder", ["upload", "{tmp}/mediamap.yaml"], {}, 2, ["mediamap.yaml is not a folder", "fix:"]),
    ("upload-missing-manifest", ["upload", "{tmp}/scrape", "--manifest", "{tmp}/audit.csv"], {}, 2,
     ["audit.csv is not there", "'--manifest'", "fix:"]),
    ("upload-manifest-without-its-columns", ["upload", "{tmp}/scrape", "--manifest", "{tmp}/wrong.csv"], {}, 2,
     ["'--manifest'", "missing", "fix:"]),
    ("upload-neither-source", ["upload"], {}, 2, ["pass a staging DIRECTORY or --from-media-root PATH"]),
    ("plan-database-refuses", ["plan"], {"DATABASE_URL": "postgresql://nobody@127.0.0.1:{port}/archive"}, 1,
     ["the database refuses the connection", "DATABASE_URL", "127.0.0.1:{port}/archive", "fix:"]),
    ("verify-database-refuses", ["verify"], {"DATABASE_URL": "postgresql://nobody@127.0.0.1:{port}/archive"}, 1,
     ["DATABASE_URL", "fix:"]),
    ("backfill-database-refuses", ["backfill"], {"DATABASE_URL": "postgresql://nobody@127.0.0.1:{port}/archive"}, 1,
     ["DATABASE_URL", "fix:"]),
    ("rollback-database-refuses", ["rollback", "--since", "2026-01-01T00:00:00+00:00"],
     {"DATABASE_URL": "postgresql://nobody@127.0.0.1:{port}/archive"}, 1, ["DATABASE_URL", "fix:"]),
    ("plan-malformed-database-url", ["plan"], {"DATABASE_URL": "postgresql://a:b@localhost:notaport/db"}, 1,
     ["DATABASE_URL", "not a PostgreSQL URL", "fix:"]),
    ("verify-malformed-conninfo", ["verify"], {"DATABASE_URL": "host=localhost dbname"}, 1,
     ["DATABASE_URL", "not a PostgreSQL URL", "fix:"]),
    ("plan-endpoint-gone", ["plan"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:{port}"}, 1,
     ["cannot reach AWS_ENDPOINT_URL http://127.0.0.1:{port}", "fix:"]),
    ("backfill-endpoint-gone", ["backfill"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:{port}"}, 1,
     ["cannot reach AWS_ENDPOINT_URL http://127.0.0.1:{port}", "fix:"]),
    ("check-config-missing-map", ["check-config", "--config", "{tmp}/nope.yaml"], {}, 1, ["nope.yaml", "fix:"]),
]  # fmt: skip


@pytest.mark.parametrize(("args", "env", "code", "named"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_its_name_and_fix_and_changes_nothing(
    world: World, args: list[str], env: dict[str, str], code: int, named: list[str]
) -> None:
    (world.tmp / "scrape/downloads/paper/google_favicon").mkdir(parents=True)
    (world.tmp / "scrape/downloads/paper/google_favicon/icon.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (world.tmp / "wrong.csv").write_text("name,verdict\npaper,passed\n", encoding="utf-8")
    port = str(closed_port())

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(world.tmp)).replace("{port}", port)

    before = world.snapshot()
    # env holds environment variables only, never run's timeout
    result = world.run(*map(fill, args), **{k: fill(v) for k, v in env.items()})  # type: ignore[arg-type]
    assert_refused(result, code, *map(fill, named))
    assert world.snapshot() == before


def test_a_media_map_error_keeps_its_field_name_and_brackets(world: World) -> None:
    data = yaml.safe_load(world.config.read_text(encoding="utf-8"))
    data["fields"][0]["canonical"] = "icons/[{slug}]{ext"  # an unclosed placeholder, in a name holding brackets
    world.config.write_text(yaml.safe_dump(data), encoding="utf-8")
    before = world.snapshot()
    result = world.run("check-config")
    assert_refused(result, 1, "archive.PublicationSource.icon", "icons/[{slug}]{ext")
    assert world.snapshot() == before


def test_keys_with_brackets_colons_and_emoji_print_verbatim(world: World) -> None:
    """Rich would read `[draft]` as a style tag and `:smile:` as an emoji code: every output is verbatim."""
    table = world.run("plan")
    assert table.returncode == 0, table.stderr
    assert "icons/[draft] logo.png" in table.stdout
    assert "icons/smile 😀:v2.png" in table.stdout
    as_json = json.loads(world.run("plan", "--json").stdout)
    assert {"icons/[draft] logo.png", "icons/smile 😀:v2.png"} <= {i["key"] for i in as_json["items"]}
    explained = world.run("explain", "--offline", "icons/[draft] logo.png")
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith("icons/[draft] logo.png -> icons/draft-logo.png"), explained.stdout
    emoji = world.run("explain", "--offline", "icons/:smile: [bold]x[/bold].png")
    assert "icons/:smile: [bold]x[/bold].png" in emoji.stdout, emoji.stdout


@pytest.mark.moto_only(reason="starts and kills a moto server of its own (the embedded default's), not the session's")
def test_a_backfill_whose_moto_server_dies_names_the_endpoint(archive_db: str, archive_map: Any, tmp_path: Path) -> None:
    """A moto server of the test's own, killed once the objects phase has claimed its first objects."""
    endpoint, pid = embedded.start_moto(tmp_path / "moto")
    try:
        own = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        own.create_bucket(Bucket="primary")
        own.create_bucket(Bucket="cdn")
        with psycopg.connect(archive_db, autocommit=True) as conn:
            for i in range(600):
                conn.execute(
                    "INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (f"p{i}", f"icons/p{i}_v2.png")
                )
        for i in range(600):
            own.put_object(Bucket="primary", Key=f"icons/p{i}_v2.png", Body=b"x" * 64)
        config = tmp_path / "mediamap.yaml"
        config.write_text(yaml.safe_dump(archive_map("primary", "cdn")), encoding="utf-8")
        env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "DATABASE_URL": archive_db, "MEDIACANON_CONFIG": str(config),
               "MEDIACANON_STATE_DIR": str(tmp_path / "no-local-stack")}  # fmt: skip
        process = subprocess.Popen(
            [sys.executable, "-m", "mediacanon", "backfill"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        claimed = wait_for(lambda: ledger_entries(archive_db) > 0, timeout=60)
        os.kill(pid, signal.SIGKILL)
        out, err = process.communicate(timeout=300)
    finally:
        with_suppressed_kill(pid)
    assert claimed, "the backfill never claimed an object"
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert_refused(result, 1, f"cannot reach AWS_ENDPOINT_URL {endpoint}", "fix:")


def ledger_entries(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'mediacanon' AND table_name = 'ledger'"
        ).fetchone()
        if not found or not found[0]:
            return 0
        row = conn.execute("SELECT count(*) FROM mediacanon.ledger").fetchone()
        return int(row[0]) if row else 0


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def with_suppressed_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_backfill_whose_task_fails_shows_its_error_type_message_and_key_not_a_traceback(world: World) -> None:
    """A database trigger refuses the rows' update: each object's link fails for good (P0001 is permanent), the run
    exits 1, and each failure is printed as its key and the error's message, not a JSON-escaped trace."""
    with psycopg.connect(world.conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS "
            "$$BEGIN RAISE EXCEPTION 'icons are frozen for the audit'; END$$"
        )
        conn.execute("CREATE TRIGGER frozen BEFORE UPDATE ON archive_publicationsource FOR EACH ROW EXECUTE FUNCTION frozen()")
    rows = world.snapshot()["rows"]
    result = world.run("backfill", "--phase", "objects", "report")
    assert_refused(result, 1, "failed: icons/nytimes_icon_v2_final.png: ", "icons are frozen for the audit", "3 item(s) failed",
                   "fix:")  # fmt: skip
    assert '\\"' not in result.stderr and "stackTrace" not in result.stderr, result.stderr
    assert world.snapshot()["rows"] == rows  # no row moved


def test_a_missing_cdn_bucket_is_named_before_the_backfill_starts(world: World) -> None:
    """S3 answers a request on a bucket that is not there with 404 NoSuchBucket ("The specified bucket does not
    exist": https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList), a configuration error
    (errors.BucketNotFound, never retried): found before any execution starts."""
    data = yaml.safe_load(world.config.read_text(encoding="utf-8"))
    data["buckets"]["cdn"] = "cdn-that-is-not-there"
    world.config.write_text(yaml.safe_dump(data), encoding="utf-8")
    before = world.snapshot()
    result = world.run("backfill")
    assert_refused(result, 1, "the cdn bucket 'cdn-that-is-not-there' is not there", "buckets.cdn", "fix:")
    assert "execution:" not in result.stdout  # nothing started
    assert world.snapshot() == before


def test_orphans_are_deleted_only_on_request_after_a_dry_run_and_within_max_deletes(world: World) -> None:
    world.s3.put_object(Bucket=world.primary, Key="icons/old_unused_banner.png", Body=b"nobody's")
    backfill = world.run("backfill")
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    execution = next(line.split()[1].rsplit(":", 1)[-1] for line in backfill.stdout.splitlines() if line.startswith("execution:"))

    bad_age = world.run("orphans", "--min-age", "soon")
    assert_refused(bad_age, 2, "'--min-age'", "'soon' is not an age", "fix:")
    before = world.snapshot()
    young = world.run("orphans", "--execution", execution)  # default --min-age 7d: just uploaded, so kept
    assert young.returncode == 0, young.stderr
    assert "kept: icons/old_unused_banner.png (too young" in young.stdout, young.stdout
    dry = world.run("orphans", "--execution", execution, "--min-age", "0", "--dry-run")
    assert "would delete: icons/old_unused_banner.png" in dry.stdout, dry.stdout + dry.stderr
    assert dry.stdout.splitlines()[-1].startswith("ORPHANS DRY RUN | would_delete=1 ")
    refused = world.run("orphans", "--execution", execution, "--min-age", "0", "--max-deletes", "0")
    assert_refused(refused, 1, "more than --max-deletes=0: nothing deleted", "fix:")
    unknown = world.run("orphans", "--execution", "backfill-nope", "--min-age", "0")
    assert_refused(unknown, 1, "backfill-nope")
    assert world.snapshot() == before

    done = world.run("orphans", "--execution", execution, "--min-age", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deleted: icons/old_unused_banner.png" in done.stdout
    keys = {o["Key"] for o in world.s3.list_objects_v2(Bucket=world.primary).get("Contents", [])}
    assert "icons/old_unused_banner.png" not in keys
    assert {k for k, _ in before["buckets"][world.primary]} - keys == {"icons/old_unused_banner.png"}


def test_check_config_with_a_database_names_every_missing_column_and_max_length_at_once(world: World) -> None:
    data = yaml.safe_load(world.config.read_text(encoding="utf-8"))
    data["fields"][0]["max_length"] = 255  # the column is varchar(100)
    data["fields"][1]["column"] = "banner"  # no such column
    world.config.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = world.run("check-config", "--database-url", world.conninfo)
    assert_refused(result, 1, "2 problem(s) against the database", "fix:")
    assert "field archive.PublicationSource.icon: archive_publicationsource.icon: max_length 255" in result.stderr
    assert "varchar(100) in the database (fix: set max_length: 100" in result.stderr
    assert "field archive.PublicationSource.masthead: archive_publicationsource.banner: no such column" in result.stderr
    data["fields"][0]["max_length"] = 100
    data["fields"][1]["column"] = "masthead"
    world.config.write_text(yaml.safe_dump(data), encoding="utf-8")
    ok = world.run("check-config", "--database-url", world.conninfo)
    assert ok.returncode == 0, ok.stderr
    assert "valid (tables and columns checked against the database)" in ok.stdout
