"""Session fixtures shared by every test: fake AWS credentials, an AWS emulator and a PostgreSQL of the test
session's own (started at the first use, stopped at the end), a fresh database per test, buckets.

The emulator is moto by default (mediacanon.local.embedded starts it); ``pytest --emulator=localstack`` starts LocalStack
instead (tests/localstack_server.py) for the suites that only need S3, SQS and EventBridge (`make test-localstack`). Tests that need a moto-only
facility carry ``@pytest.mark.moto_only(reason=...)`` and are deselected there; tests/integration/test_emulators.py
records where the two disagree and which one AWS follows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import localstack_server  # tests/localstack_server.py (pytest puts this conftest's directory on sys.path)
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from mediacanon.local import embedded

REPO = Path(__file__).resolve().parent.parent
EMULATORS = ("moto", "localstack")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--emulator",
        choices=EMULATORS,
        default="moto",
        help="the AWS emulator behind aws_endpoint (and moto_endpoint): moto (default) or LocalStack, started by the "
        "fixtures from .venv-localstack; tests marked moto_only are deselected on LocalStack",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "moto_only(reason): needs a facility only moto has (say which, and why it is inherent to the emulator, "
        "not a product failure); deselected with --emulator=localstack",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("moto_only"):
            if not marker.kwargs.get("reason"):
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.moto_only needs reason=... (the moto-only facility)")
    if config.getoption("emulator") == "moto":
        return
    deselected = [item for item in items if item.get_closest_marker("moto_only")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("moto_only")]


def pytest_report_header(config: pytest.Config) -> str:
    return f"AWS emulator: {config.getoption('emulator')}"


@pytest.fixture(scope="session", autouse=True)
def aws_env() -> Iterator[None]:
    """Credentials that can only reach the emulator; a developer's real profile is never used by the tests."""
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
def emulator(request: pytest.FixtureRequest) -> str:
    """The AWS emulator of this session: "moto" or "localstack" (``--emulator``)."""
    return str(request.config.getoption("emulator"))


@pytest.fixture(scope="session")
def aws_endpoint(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator of this session's own on a free port (other sessions may run theirs beside it): a moto server,
    or with ``--emulator=localstack`` LocalStack (S3, SQS, EventBridge; tests/localstack_server.py)."""
    if emulator == "localstack":
        server = localstack_server.start(tmp_path_factory.mktemp("localstack"))
        try:
            yield server.endpoint_url
        finally:
            server.stop()
        return
    endpoint_url, pid = embedded.start_moto(tmp_path_factory.mktemp("moto"))
    yield endpoint_url
    embedded.stop_moto(pid)


@pytest.fixture(scope="session")
def moto_endpoint(aws_endpoint: str) -> str:
    """The session's emulator under its first name: moto, unless ``--emulator=localstack``. The test modules not yet
    renamed to aws_endpoint request it; a test that needs moto itself says so with ``moto_only``."""
    return aws_endpoint


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
def s3_client(aws_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")


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
