"""The embedded default: `mediacanon local up | status | down` on this machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest

from mediacanon.local import embedded

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MEDIACANON = Path(sys.executable).with_name("mediacanon")  # the CLI of the environment running the tests


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # under the repo's .local-test (see conftest.database_url): pgserver's postgres runs as another OS user when root
    (REPO / ".local-test").mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="test-embedded-", dir=REPO / ".local-test"))
    yield path
    embedded.down(path, repo=REPO)  # also when an assertion failed half-way
    shutil.rmtree(path, ignore_errors=True)


def test_up_status_idempotent_up_down(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)

    endpoints = embedded.up(state_dir, repo=REPO)

    s3 = boto3.client("s3", endpoint_url=endpoints.endpoint_url, region_name="us-east-1")
    s3.create_bucket(Bucket="embedded-check")
    with psycopg.connect(endpoints.database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    state = embedded.status(state_dir)
    assert state["moto"]["running"] and state["postgres"]["running"]
    assert (state["endpoint_url"], state["database_url"]) == (endpoints.endpoint_url, endpoints.database_url)
    assert json.loads((state_dir / "state.json").read_text())["endpoint_url"] == endpoints.endpoint_url

    again = embedded.up(state_dir, repo=REPO)

    assert again == endpoints
    assert embedded.status(state_dir)["moto"]["pid"] == state["moto"]["pid"]  # reused, not restarted
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["embedded-check"]  # same server, same state

    embedded.down(state_dir, repo=REPO)

    stopped = embedded.status(state_dir)
    assert not stopped["moto"]["running"] and not stopped["postgres"]["running"]
    assert stopped["endpoint_url"] is None and stopped["database_url"] is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(endpoints.database_url, connect_timeout=2)


def test_an_external_database_url_is_used_and_left_alone(
    state_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)

    endpoints = embedded.up(state_dir, repo=REPO)

    assert endpoints.database_url == database_url
    assert embedded.status(state_dir)["postgres"] == {"external": True, "running": None}
    assert not (state_dir / "pgdata").exists()
    embedded.down(state_dir, repo=REPO)
    with psycopg.connect(database_url) as conn:  # not ours to stop
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_missing_pgserver_python_fails_with_the_fix(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIACANON_PGSERVER_PYTHON", str(state_dir / "no-python"))
    with pytest.raises(embedded.EmbeddedError, match="make setup"):
        embedded.start_postgres(state_dir / "pgdata")


def _kill_moto(state_dir: Path) -> None:
    """The moto server this test's `up` started dies (as a crash or a reboot would end it)."""
    pid = json.loads((state_dir / "state.json").read_text())["moto"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while embedded.status(state_dir)["moto"]["running"]:
        assert time.monotonic() < deadline, "moto did not die"
        time.sleep(0.1)


def _local_up(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["MEDIACANON_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [str(MEDIACANON), "local", "up", "--config", str(state_dir / "no-media-map.yaml"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_up_refuses_an_empty_moto_beside_a_database_that_remembers_objects(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    first = _local_up(state_dir)
    assert first.returncode == 0, first.stderr
    endpoints = embedded.status(state_dir)
    with psycopg.connect(endpoints["database_url"], autocommit=True) as conn:
        conn.execute("CREATE TABLE publication (id int, icon text)")
        conn.execute("INSERT INTO publication VALUES (1, 'icons/nytimes.png')")
    old_pid = endpoints["moto"]["pid"]
    _kill_moto(state_dir)

    again = _local_up(state_dir)

    assert again.returncode != 0
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr  # one line, no traceback
    assert lines[0].startswith("error: the local moto server") and "is gone" in lines[0]
    assert "public.publication (1)" in lines[0] and "`mediacanon local up --fresh`" in lines[0]
    assert "deletes that database too" in lines[0]  # what --fresh would lose
    after = embedded.status(state_dir)
    assert not after["moto"]["running"] and after["moto"]["pid"] == old_pid  # no new, empty moto was started
    with psycopg.connect(after["database_url"]) as conn:  # and the rows are untouched
        assert conn.execute("SELECT icon FROM publication").fetchall() == [("icons/nytimes.png",)]

    fresh = _local_up(state_dir, "--fresh")

    assert fresh.returncode == 0, fresh.stderr
    started = embedded.status(state_dir)
    assert started["moto"]["running"] and started["moto"]["pid"] != old_pid
    with psycopg.connect(started["database_url"]) as conn:  # --fresh started the database over too
        assert embedded.remembered_rows(started["database_url"]) == {}
        assert conn.execute("SELECT to_regclass('public.publication')").fetchone() == (None,)


def test_up_restarts_a_dead_moto_when_the_database_names_no_object(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    watched = embedded.Watched(columns=(("publication", "icon"),), schemas=("mediacanon",))
    endpoints = embedded.up(state_dir, repo=REPO, watched=watched)
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE publication (id int, icon text)")
        conn.execute("INSERT INTO publication VALUES (1, ''), (2, NULL)")  # rows, but naming no file
        conn.execute("CREATE TABLE django_migrations (id int)")
        conn.execute("INSERT INTO django_migrations VALUES (1)")
    _kill_moto(state_dir)

    restarted = embedded.up(state_dir, repo=REPO, watched=watched)  # nothing to contradict: a new moto is fine

    assert embedded.status(state_dir)["moto"]["running"] and restarted.database_url == endpoints.database_url
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        conn.execute("UPDATE publication SET icon = 'icons/bbc.ico' WHERE id = 1")
        conn.execute("CREATE SCHEMA mediacanon")
        conn.execute("CREATE TABLE mediacanon.ledger (id int)")
        conn.execute("INSERT INTO mediacanon.ledger VALUES (1), (2)")
    assert embedded.remembered_rows(endpoints.database_url, watched) == {"publication.icon": 1, "mediacanon.ledger": 2}
    embedded.down(state_dir, repo=REPO)  # `down` stops moto too: its objects are gone just the same

    with pytest.raises(embedded.StackLostError, match=r"publication\.icon \(1\), mediacanon\.ledger \(2\).*--fresh"):
        embedded.up(state_dir, repo=REPO, watched=watched)
