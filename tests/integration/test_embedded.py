"""The embedded default: `mediacanon local up | status | down` on this machine."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest

from mediacanon import embedded

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


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
