"""mediacanon.django.FallbackStorage on django-storages' S3Storage over a moto server of this module's own that
enforces IAM (tests/support/moto_auth.py): the production bucket is read through a read-only IAM user's keys.

Django's settings are process-global, and other modules of the session may configure them: each scenario runs this
file as a script in a child Python (`settings.configure` there), which prints what it saw as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROD, QA = "prod-media", "qa-media"
HERE = Path(__file__).resolve()


def s3_backend(endpoint: str, bucket: str, keys: dict[str, str]) -> dict[str, Any]:
    options = {"bucket_name": bucket, "endpoint_url": endpoint, "region_name": "us-east-1", "querystring_auth": False}
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**options, "access_key": keys["aws_access_key_id"], "secret_key": keys["aws_secret_access_key"]},
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in the child Python: configure Django, run the scenario's operations, answer what they saw."""
    from django.conf import settings

    settings.configure(USE_TZ=True, MEDIA_ROOT=spec["media_root"], MEDIA_URL="/media/", STORAGES=spec["storages"])
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    storage = storages["default"]
    seen: dict[str, Any] = {}
    for op, name in spec["ops"]:
        try:
            if op == "exists":
                value: Any = storage.exists(name)
            elif op == "read":
                with storage.open(name) as handle:
                    value = handle.read().decode()
            elif op == "size":
                value = storage.size(name)
            elif op == "url":
                value = storage.url(name)
            elif op == "listdir":
                value = list(storage.listdir(name))
            elif op == "save":
                value = storage.save(name, ContentFile(b"from qa"))
            elif op == "delete":
                value = storage.delete(name)
            else:
                raise ValueError(op)
        except Exception as exc:  # the parent asserts on the error's type
            value = {"error": type(exc).__name__, "message": str(exc)[:300]}
        seen[f"{op} {name}"] = value
    return seen


def run(spec: dict[str, Any]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, str(HERE)], input=json.dumps(spec), capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(json.dumps(child(json.load(sys.stdin))))
    sys.exit(0)

import boto3  # noqa: E402
import pytest  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from support import moto_auth  # noqa: E402

from mediacanon.local import embedded  # noqa: E402


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    endpoint, pid = embedded.start_moto(tmp_path_factory.mktemp("moto-auth"))
    try:
        setup = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for bucket in (PROD, QA):
            setup.create_bucket(Bucket=bucket)
        for key in ("media/icons/bbc.ico", "media/icons/nyt.png", "secret/payroll.csv"):
            setup.put_object(Bucket=PROD, Key=key, Body=f"prod {key}".encode())
        admin = moto_auth.create_user(endpoint, "admin", [{"Effect": "Allow", "Action": "*", "Resource": "*"}])
        readonly = moto_auth.create_user(
            endpoint,
            "prod-reader",
            [
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{PROD}"},
                # GetObject under media/ only: secret/ answers 403 to a HEAD, as S3 does for a missing key without
                # s3:ListBucket
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{PROD}/media/*"},
            ],
        )
        moto_auth.enable_auth(endpoint)
        yield {"endpoint": endpoint, "admin": admin, "readonly": readonly}
    finally:
        embedded.stop_moto(pid)


def prod_keys(authed: dict[str, Any]) -> dict[str, str]:
    client = boto3.client("s3", endpoint_url=authed["endpoint"], region_name="us-east-1", **authed["admin"])
    return {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=PROD).get("Contents", [])}


def test_the_read_only_keys_are_refused_writes(authed: dict[str, Any]) -> None:
    reader = boto3.client("s3", endpoint_url=authed["endpoint"], region_name="us-east-1", **authed["readonly"])
    assert reader.get_object(Bucket=PROD, Key="media/icons/bbc.ico")["Body"].read() == b"prod media/icons/bbc.ico"
    for call in (
        lambda: reader.put_object(Bucket=PROD, Key="media/leak.txt", Body=b"x"),
        lambda: reader.delete_object(Bucket=PROD, Key="media/icons/bbc.ico"),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as unknown:  # and the emulator's default keys are no longer accepted
        boto3.client("s3", endpoint_url=authed["endpoint"], region_name="us-east-1").list_buckets()
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "media/leak.txt" not in prod_keys(authed)


def laptop_spec(authed: dict[str, Any], media_root: Path, first: str, ops: list[list[str]]) -> dict[str, Any]:
    prod = s3_backend(authed["endpoint"], PROD, authed["readonly"]) | {}
    prod["OPTIONS"] = prod["OPTIONS"] | {"location": "media"}
    local = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media_root)}}
    qa = s3_backend(authed["endpoint"], QA, authed["admin"])
    qa["OPTIONS"] = qa["OPTIONS"] | {"location": "media"}
    own = local if first == "local" else qa
    return {
        "media_root": str(media_root),
        "storages": {
            "production": prod,
            "own": own,
            "default": {"BACKEND": "mediacanon.django.FallbackStorage", "OPTIONS": {"backends": ["own", "production"]}},
        },
        "ops": ops,
    }


@pytest.mark.parametrize("first", ["local", "qa-bucket"])
def test_writes_go_to_the_first_backend_and_reads_fall_through(authed: dict[str, Any], tmp_path: Path, first: str) -> None:
    (tmp_path / "icons").mkdir()
    (tmp_path / "icons" / "laptop.png").write_text("laptop only")
    before = prod_keys(authed)
    ops = [
        ["exists", "icons/bbc.ico"],
        ["read", "icons/bbc.ico"],
        ["size", "icons/bbc.ico"],
        ["url", "icons/bbc.ico"],
        ["exists", "icons/nowhere.png"],
        ["read", "icons/nowhere.png"],
        ["save", "icons/bbc.ico"],
        ["save", "uploads/new.txt"],
        ["delete", "icons/nyt.png"],
        ["exists", "icons/nyt.png"],
        ["listdir", "icons"],
    ]
    seen = run(laptop_spec(authed, tmp_path, "local" if first == "local" else "qa", ops))
    assert seen["exists icons/bbc.ico"] is True
    assert seen["read icons/bbc.ico"] == "prod media/icons/bbc.ico"
    assert seen["size icons/bbc.ico"] == len("prod media/icons/bbc.ico")
    assert seen["url icons/bbc.ico"] == f"{authed['endpoint']}/{PROD}/media/icons/bbc.ico"
    assert seen["exists icons/nowhere.png"] is False
    assert seen["read icons/nowhere.png"]["error"] == "FileNotFoundError"
    renamed = seen["save icons/bbc.ico"]
    assert renamed != "icons/bbc.ico" and renamed.startswith("icons/bbc_")  # never shadows the production file
    assert seen["save uploads/new.txt"] == "uploads/new.txt"
    assert seen["delete icons/nyt.png"] is None and seen["exists icons/nyt.png"] is True  # still read from production
    dirs, files = seen["listdir icons"]
    assert dirs == [] and "bbc.ico" in files and "nyt.png" in files and renamed.split("/")[1] in files
    assert files == sorted(set(files))
    assert prod_keys(authed) == before  # production unchanged: no write, no delete reached it
    if first == "local":
        assert (tmp_path / renamed).read_bytes() == b"from qa" and (tmp_path / "uploads" / "new.txt").exists()
        assert "laptop.png" in files
    else:
        client = boto3.client("s3", endpoint_url=authed["endpoint"], region_name="us-east-1", **authed["admin"])
        qa_keys = {o["Key"] for o in client.list_objects_v2(Bucket=QA).get("Contents", [])}
        assert {f"media/{renamed}", "media/uploads/new.txt"} <= qa_keys


def test_a_403_from_the_read_only_backend_reads_as_missing(authed: dict[str, Any], tmp_path: Path) -> None:
    spec = laptop_spec(authed, tmp_path, "local", [])
    spec["storages"]["production"]["OPTIONS"]["location"] = ""
    spec["ops"] = [["exists", "secret/payroll.csv"], ["read", "secret/payroll.csv"], ["url", "secret/payroll.csv"]]
    seen = run(spec)
    assert seen["exists secret/payroll.csv"] is False
    assert seen["read secret/payroll.csv"]["error"] == "FileNotFoundError"
    assert seen["url secret/payroll.csv"].endswith(f"/{PROD}/secret/payroll.csv")
    # the same 403 from the environment's own (writable) backend is not swallowed
    spec["storages"]["own"] = spec["storages"]["production"]
    spec["storages"]["default"]["OPTIONS"]["backends"] = ["own"]
    spec["ops"] = [["exists", "secret/payroll.csv"]]
    assert run(spec)["exists secret/payroll.csv"]["error"] == "ClientError"


def test_a_site_still_on_local_disk_serves_the_local_url_until_the_file_reaches_s3(
    authed: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "icons").mkdir()
    (tmp_path / "icons" / "old.png").write_text("on disk")
    spec = laptop_spec(authed, tmp_path, "qa", [["url", "icons/old.png"], ["read", "icons/old.png"]])
    local = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    spec["storages"]["disk"] = local
    spec["storages"]["default"]["OPTIONS"]["backends"] = ["own", "disk"]  # S3 first, the old MEDIA_ROOT second
    seen = run(spec)
    assert seen["url icons/old.png"] == "/media/icons/old.png" and seen["read icons/old.png"] == "on disk"
    client = boto3.client("s3", endpoint_url=authed["endpoint"], region_name="us-east-1", **authed["admin"])
    client.put_object(Bucket=QA, Key="media/icons/old.png", Body=b"in s3")
    seen = run(spec)
    assert seen["url icons/old.png"] == f"{authed['endpoint']}/{QA}/media/icons/old.png"
    assert seen["read icons/old.png"] == "in s3"


def test_deconstructs_for_migrations() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from mediacanon.django import FallbackStorage

    inline = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": "/srv/media"}}
    storage = FallbackStorage(backends=["default_local", inline], read_only=[1])
    assert storage.deconstruct() == (
        "mediacanon.django.FallbackStorage",
        (),
        {"backends": ["default_local", inline], "read_only": [1]},
    )
    with pytest.raises(ImproperlyConfigured):
        FallbackStorage(backends=["a", "b"], read_only=["a"])
    with pytest.raises(ImproperlyConfigured):
        FallbackStorage(backends=[])
