"""The settings as template.yaml configures them (the media map in SSM, the database in Secrets Manager), read the way
a cold start reads them since issue 19: the Powertools providers on boto3's default session, the media map parsed once
while its parameter is unchanged, an edited one parsed again once the cache expires."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from mediacanon import wiring

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_providers() -> Iterator[None]:
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    saved = dict(DEFAULT_PROVIDERS)
    DEFAULT_PROVIDERS.clear()
    yield
    DEFAULT_PROVIDERS.clear()
    DEFAULT_PROVIDERS.update(saved)


def test_the_deployed_settings_are_read_once_and_again_when_edited(
    moto_endpoint: str, archive_map: Any, fresh_providers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    ssm = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="us-east-1")
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"/mediacanon-{uuid.uuid4().hex[:8]}/media-map"
    ssm.put_parameter(Name=name, Value=yaml.safe_dump(archive_map("archive-media", "archive-cdn")), Type="String")
    value = {"host": "db.internal", "port": 5432, "username": "mediacanon", "password": "pw", "dbname": "archive"}
    arn = secrets.create_secret(Name=f"db-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(value))["ARN"]
    env = {"MEDIACANON_MEDIA_MAP_PARAMETER": name, "MEDIACANON_DB_SECRET_ARN": arn}
    monkeypatch.setattr(wiring, "PARAMETER_MAX_AGE", 0)  # every read fetches again, as after the cache's expiry

    first = wiring.load_settings(env)
    assert first.media_map.buckets.primary == "archive-media"
    assert conninfo_to_dict(first.database_url)["host"] == "db.internal"
    assert set(DEFAULT_PROVIDERS) == {"ssm", "secrets"}
    again = wiring.load_settings(env)  # fetched again, the same text: not parsed again
    assert again.media_map is first.media_map and again == first

    ssm.put_parameter(Name=name, Value=yaml.safe_dump(archive_map("archive-media", "archive-cdn-2")), Overwrite=True)
    edited = wiring.load_settings(env)
    assert edited.media_map.buckets.cdn == "archive-cdn-2" and edited != first
