"""The real handlers (functions/*/app.py) fed the sample events of events/, the way `sam local invoke` would,
against the session's moto server and PostgreSQL: the events' own buckets and keys, end to end."""

from __future__ import annotations

import copy
import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from mediacanon import wiring
from mediacanon.adapters import cdn
from mediacanon.core.errors import ConfigError

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
    wiring.live_steps.cache_clear()
    yield s3_client
    wiring.live_steps().db.close()
    wiring.live_steps.cache_clear()
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


# -- CloudFront: replicate invalidates what it replaced, one request per batch -------------------------------------


def _distribution(moto_endpoint: str) -> tuple[Any, str]:
    cloudfront = boto3.client("cloudfront", endpoint_url=moto_endpoint, region_name="us-east-1")
    origin = {
        "Id": "cdn-bucket",
        "DomainName": "archive-cdn.s3.us-east-1.amazonaws.com",
        "S3OriginConfig": {"OriginAccessIdentity": ""},
    }
    config = {
        "CallerReference": f"test-{uuid.uuid4().hex}",
        "Comment": "",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [origin]},
        "DefaultCacheBehavior": {"TargetOriginId": "cdn-bucket", "ViewerProtocolPolicy": "redirect-to-https", "MinTTL": 0},
    }
    return cloudfront, cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


def _invalidated_paths(cloudfront: Any, distribution_id: str) -> list[list[str]]:
    listed = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"].get("Items", [])
    return [
        cloudfront.get_invalidation(DistributionId=distribution_id, Id=i["Id"])["Invalidation"]["InvalidationBatch"]["Paths"].get("Items", [])
        for i in listed
    ]  # fmt: skip


def test_replicate_invalidates_the_replaced_paths_of_a_batch_in_one_request(
    events_stack: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = events_stack
    cloudfront, distribution_id = _distribution(moto_endpoint)
    monkeypatch.setenv("MEDIACANON_CDN_DISTRIBUTION_ID", distribution_id)
    s3.put_object(Bucket="archive-media", Key="icons/nytimes.png", Body=b"v1", ContentType="image/png")
    s3.put_object(Bucket="archive-media", Key="icons/bbc.png", Body=b"v1", ContentType="image/png")
    template = json.loads((ROOT / "events" / "replicate_object_created.json").read_text())
    batch = copy.deepcopy(template)
    second = copy.deepcopy(template["Records"][0])
    body = json.loads(second["body"])
    body["detail"]["object"]["key"] = "icons/bbc.png"
    second["body"], second["messageId"] = json.dumps(body), "second-message"
    batch["Records"].append(second)
    handler = load_handler("replicate").lambda_handler

    assert handler(batch, _context("replicate", "req-1")) == {"batchItemFailures": []}
    assert _invalidated_paths(cloudfront, distribution_id) == [["/icons/bbc.png", "/icons/nytimes.png"]]

    # the same batch again: both keys are mirrored already, nothing is replaced, no request
    assert handler(batch, _context("replicate", "req-2")) == {"batchItemFailures": []}
    assert len(_invalidated_paths(cloudfront, distribution_id)) == 1

    # new bytes under a canonical key: the CDN copy is replaced, its path invalidated
    s3.put_object(Bucket="archive-media", Key="icons/nytimes.png", Body=b"v2", ContentType="image/png")
    assert handler(template, _context("replicate", "req-3")) == {"batchItemFailures": []}
    assert s3.get_object(Bucket="archive-cdn", Key="icons/nytimes.png")["Body"].read() == b"v2"
    assert _invalidated_paths(cloudfront, distribution_id)[1:] == [["/icons/nytimes.png"]]


def test_an_invalidation_failure_leaves_the_batch_done(events_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = events_stack
    monkeypatch.setenv("MEDIACANON_CDN_DISTRIBUTION_ID", "EDOESNOTEXIST")  # moto answers NoSuchDistribution
    s3.put_object(Bucket="archive-media", Key="icons/nytimes.png", Body=b"v1", ContentType="image/png")
    assert invoke("replicate", "replicate_object_created.json") == {"batchItemFailures": []}
    assert s3.get_object(Bucket="archive-cdn", Key="icons/nytimes.png")["Body"].read() == b"v1"


def test_no_distribution_no_cloudfront_call(events_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIACANON_CDN_DISTRIBUTION_ID", raising=False)
    calls: list[Any] = []

    def flush(self: Any, reference: Any) -> list[Any]:
        calls.append(reference)
        return []

    monkeypatch.setattr(cdn.CdnInvalidations, "flush", flush)
    events_stack.put_object(Bucket="archive-media", Key="icons/nytimes.png", Body=b"v1", ContentType="image/png")
    assert invoke("replicate", "replicate_object_created.json") == {"batchItemFailures": []}
    assert calls == []


def test_cdn_paths_are_quoted_as_django_quotes_urls() -> None:
    assert cdn.cdn_path("icons/nytimes.png") == "/icons/nytimes.png"
    assert cdn.cdn_path("mastheads/le monde+été.jpg") == "/mastheads/le%20monde%2B%C3%A9t%C3%A9.jpg"


# -- the database secret: cached, never shown -----------------------------------------------------------------------


def test_secret_becomes_a_conninfo_that_never_shows(
    moto_endpoint: str, tmp_path: Path, archive_map: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    value = {"host": "db.internal", "port": 5432, "username": "mediacanon", "password": "s3cr3t-pw", "dbname": "archive"}
    arn = secrets.create_secret(Name=f"db-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(value))["ARN"]
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(archive_map("archive-media", "archive-cdn")))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    env = {"MEDIACANON_CONFIG": str(config), "MEDIACANON_DB_SECRET_ARN": arn}

    settings = wiring.load_settings(env)
    assert conninfo_to_dict(settings.database_url)["password"] == "s3cr3t-pw"
    assert conninfo_to_dict(settings.database_url)["host"] == "db.internal"
    assert "s3cr3t-pw" not in repr(settings) and "s3cr3t-pw" not in str(settings)

    # a rotated password reaches a warm environment only after the cache's max_age (one call per cold start)
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({**value, "password": "rotated"}))
    assert conninfo_to_dict(wiring.load_settings(env).database_url)["password"] == "s3cr3t-pw"

    proxied = wiring.load_settings({**env, "MEDIACANON_DB_HOST": "proxy.internal"})
    assert conninfo_to_dict(proxied.database_url)["host"] == "proxy.internal"


def test_a_secret_missing_keys_names_the_keys_not_the_values() -> None:
    with pytest.raises(ConfigError) as raised:
        wiring._conninfo_from_secret({"host": "db", "password": "s3cr3t-pw"})
    assert "username" in str(raised.value) and "s3cr3t-pw" not in str(raised.value)


def _context(step: str, request_id: str) -> Any:
    return SimpleNamespace(
        function_name=f"mediacanon-{step}",
        memory_limit_in_mb=512,
        aws_request_id=request_id,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:111122223333:function:mediacanon-{step}",
    )


def test_a_rotated_secret_reaches_a_warm_environment(
    events_stack: Any, archive_db: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = conninfo_to_dict(archive_db)
    secret = {
        "host": parts["host"],
        "port": int(str(parts.get("port", 5432))),
        "username": parts["user"],
        "password": parts.get("password", "unused-by-trust-auth"),
        "dbname": parts["dbname"],
    }
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    arn = secrets.create_secret(Name=f"db-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(secret))["ARN"]
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("MEDIACANON_DB_SECRET_ARN", arn)
    monkeypatch.setattr(wiring, "PARAMETER_MAX_AGE", 0)  # the cache's expiry, without waiting for it
    wiring.live_steps.cache_clear()
    events_stack.put_object(Bucket="archive-media", Key="icons/nytimes.png", Body=b"v1", ContentType="image/png")
    handler = load_handler("replicate").lambda_handler

    assert handler(json.loads((ROOT / "events" / "replicate_object_created.json").read_text()), _context("replicate", "r1")) == {
        "batchItemFailures": []
    }
    first = wiring.live_steps().db
    wiring.refresh_live_steps()
    assert wiring.live_steps().db is first, "an unchanged secret keeps the environment's connection"

    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({**secret, "password": "rotated-pw"}))
    wiring.refresh_live_steps()
    assert wiring.live_steps().db is not first
    assert conninfo_to_dict(wiring._built_from[0].database_url)["password"] == "rotated-pw"

    # Secrets Manager unreachable (here: the secret gone): the warm environment keeps what it has
    rotated = wiring.live_steps().db
    secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    wiring.refresh_live_steps()
    assert wiring.live_steps().db is rotated
    # RDS Proxy multiplexes connections only while no server-side prepared statement pins them
    with wiring.live_steps().db.connection() as conn:
        assert conn.prepare_threshold is None
        for _ in range(8):  # psycopg would prepare a query from its 5th run on; never here
            conn.execute("SELECT 1")
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
