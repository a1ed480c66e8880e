"""Session fixtures shared by every test: fake AWS credentials, a moto server and a PostgreSQL of the test
session's own (started through mediacanon.embedded, stopped at the end), a fresh database per test, buckets."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from mediacanon import embedded

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def aws_env() -> Iterator[None]:
    """Credentials that can only reach moto; a developer's real profile is never used by the tests."""
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN")
    }
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server of this session's own on a free port (other sessions may run theirs beside it)."""
    endpoint_url, pid = embedded.start_moto(tmp_path_factory.mktemp("moto"))
    yield endpoint_url
    embedded.stop_moto(pid)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """DATABASE_URL when set, else an embedded PostgreSQL of this session's own (removed at the end)."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    # under the repo, not /tmp/pytest-of-*: pgserver runs postgres as another OS user when root, and the data
    # dir's parents must be traversable by it; and a short path keeps the unix socket under its length limit
    parent = REPO / ".local-test"  # not .local: `mediacanon local up --fresh` wipes that one
    parent.mkdir(exist_ok=True)
    datadir = Path(tempfile.mkdtemp(prefix="test-pg-", dir=parent))
    shutil.rmtree(datadir)  # pgserver creates it itself (and owns it)
    try:
        yield embedded.start_postgres(datadir, repo=REPO)
    finally:
        embedded.stop_postgres(datadir, repo=REPO)
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def db_conninfo(database_url: str) -> Iterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(database_url, dbname=name)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def s3_client(moto_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client: Any) -> Callable[[str], str]:
    """bucket("primary") creates and returns a uniquely named bucket, e.g. "primary-3f9a1c2b"."""

    def make(prefix: str = "test") -> str:
        name = f"{prefix.lower()[:40]}-{uuid.uuid4().hex[:8]}"
        s3_client.create_bucket(Bucket=name)
        return name

    return make


# The sample's archive.PublicationSource, as Django's migration creates it, and its media map: shared by the
# integration tests that need a Django-like table and a media map over their own buckets.
ARCHIVE_TABLE = """
CREATE TABLE archive_publicationsource (
    id serial PRIMARY KEY,
    slug varchar(50) UNIQUE NOT NULL,
    name varchar(200) NOT NULL DEFAULT '',
    icon varchar(100),
    masthead varchar(100)
)
"""


@pytest.fixture
def archive_map() -> Callable[..., dict[str, Any]]:
    """archive_map(primary, cdn, fallbacks=[...]) -> the media map (as YAML data) of the archive's two fields."""

    def make(primary: str, cdn: str, fallbacks: list[str] | None = None) -> dict[str, Any]:
        field = {"table": "archive_publicationsource", "slug_column": "slug"}
        return {
            "buckets": {"primary": primary, "cdn": cdn, "fallbacks": fallbacks or []},
            "fields": [
                {**field, "name": "archive.PublicationSource.icon", "column": "icon", "upload_to": "icons/",
                 "canonical": "icons/{slug}{ext}", "staging": ["downloads/{slug}/*favicon*/*"]},
                {**field, "name": "archive.PublicationSource.masthead", "column": "masthead", "upload_to": "mastheads/",
                 "canonical": "mastheads/{slug}{ext}"},
            ],
        }  # fmt: skip

    return make


@pytest.fixture
def archive_db(db_conninfo: str) -> str:
    """A fresh database holding an empty archive_publicationsource table; returns its conninfo."""
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute(ARCHIVE_TABLE)
    return db_conninfo
