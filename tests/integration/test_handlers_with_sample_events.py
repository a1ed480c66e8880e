"""The real handlers (functions/*/app.py) fed the sample events of events/, the way `sam local invoke` would,
against the session's moto server and PostgreSQL: the events' own buckets and keys, end to end."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import psycopg
import pytest
import yaml

from mediacanon import live

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def load_handler(step: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"sample_event_{step}_app", ROOT / "functions" / step / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def invoke(step: str, event_file: str) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / event_file).read_text())
    context = SimpleNamespace(
        function_name=f"mediacanon-{step}",
        memory_limit_in_mb=512,
        aws_request_id="req-1",
        invoked_function_arn=f"arn:aws:lambda:us-east-1:111122223333:function:mediacanon-{step}",
    )
    result: dict[str, Any] = load_handler(step).lambda_handler(event, context)
    return result


@pytest.fixture
def events_stack(
    s3_client: Any, archive_db: str, archive_map: Any, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    for name in ("archive-media", "archive-cdn"):  # the buckets the sample events name
        s3_client.create_bucket(Bucket=name)
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(archive_map("archive-media", "archive-cdn")))
    for name, value in {
        "MEDIACANON_CONFIG": str(config),
        "DATABASE_URL": archive_db,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "mediacanon",
        "POWERTOOLS_SERVICE_NAME": "mediacanon-test",
    }.items():
        monkeypatch.setenv(name, value)
    live.steps.cache_clear()
    yield s3_client
    live.steps().db.close()
    live.steps.cache_clear()
    for name in ("archive-media", "archive-cdn"):
        for page in s3_client.get_paginator("list_object_versions").paginate(Bucket=name):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3_client.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
        s3_client.delete_bucket(Bucket=name)


def test_sample_events_drive_the_handlers_end_to_end(events_stack: Any, archive_db: str) -> None:
    s3 = events_stack
    with psycopg.connect(archive_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO archive_publicationsource (slug, icon, masthead) VALUES "
            "('nytimes', 'icons/nytimes_icon_v2_final.png', 'mastheads/NYTimes_Masthead_FINAL (1).JPG')"
        )
    s3.put_object(Bucket="archive-media", Key="icons/nytimes_icon_v2_final.png", Body=b"icon", ContentType="image/png")
    s3.put_object(Bucket="archive-media", Key="mastheads/NYTimes_Masthead_FINAL (1).JPG", Body=b"mast", ContentType="image/jpeg")

    assert invoke("normalize", "normalize_object_created.json") == {"batchItemFailures": []}
    assert invoke("normalize", "normalize_object_created_space.json") == {"batchItemFailures": []}  # '+' decoded once
    assert invoke("replicate", "replicate_object_created.json") == {"batchItemFailures": []}
    assert invoke("link", "link_object_created.json") == {"batchItemFailures": []}

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="archive-media")["Contents"]}
    assert {"icons/nytimes.png", "mastheads/nytimes.jpg"} <= keys
    assert "icons/nytimes_icon_v2_final.png" not in keys  # retired once the row moved
    assert s3.get_object(Bucket="archive-cdn", Key="icons/nytimes.png")["Body"].read() == b"icon"
    with psycopg.connect(archive_db, autocommit=True) as conn:
        icon = conn.execute("SELECT icon FROM archive_publicationsource WHERE slug = 'nytimes'").fetchone()
    assert icon == ("icons/nytimes.png",)

    # the deletion event of a canonical key that still exists is stale: nothing is removed from the CDN
    assert invoke("replicate", "replicate_object_deleted.json") == {"batchItemFailures": []}
    assert "Contents" in s3.list_objects_v2(Bucket="archive-cdn", Prefix="icons/nytimes.png")
