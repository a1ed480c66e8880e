"""Interrupted staging uploads resume: `mediacanon upload` is killed (SIGKILL) or interrupted (SIGINT, as Ctrl-C)
in the middle of a real run on a moto server, then run again; and a failing PUT is retried by the next run.

The interruption is placed exactly: the command runs in a subprocess whose boto3 clients carry a hook that
signals the process itself at the N-th PutObject (or UploadPart), so the test does not race the uploads."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from PIL import Image

from mediacanon import upload
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.core import mediamap
from mediacanon.upload import Outcome as Up

pytestmark = pytest.mark.integration

MIB = 1024 * 1024

# Runs `mediacanon` with a hook on every boto3 client: at call number INTERRUPT_AT of INTERRUPT_OP it sends
# INTERRUPT_SIGNAL to its own process, then holds that call back long enough for the signal to be handled.
RUNNER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import boto3

    at, op, sig = int(os.environ["INTERRUPT_AT"]), os.environ["INTERRUPT_OP"], getattr(signal, os.environ["INTERRUPT_SIGNAL"])
    calls, lock = [0], threading.Lock()

    def hook(**kwargs):
        with lock:
            calls[0] += 1
            n = calls[0]
        if n == at:
            os.kill(os.getpid(), sig)
            time.sleep(5)

    real_client = boto3.client

    def client(*args, **kwargs):
        c = real_client(*args, **kwargs)
        c.meta.events.register(f"before-call.s3.{op}", hook)
        return c

    boto3.client = client
    from mediacanon.cli import main
    sys.exit(main())
    """
)


def image(seed: int, padding: int = 0) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, (seed * 3) % 256, 9)).save(out, format="PNG")
    return out.getvalue() + os.urandom(padding)  # bytes after IEND: still a PNG to any reader


def md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


@pytest.fixture
def env(s3_client: Any, bucket: Any, archive_map: Any, moto_endpoint: str, tmp_path: Path) -> dict[str, Any]:
    primary, cdn = bucket("primary"), bucket("cdn")
    data = archive_map(primary, cdn)
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data))
    (tmp_path / "runner.py").write_text(RUNNER)
    run_env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MEDIACANON_STATE_DIR": str(tmp_path / "no-local-stack"),
    }
    run_env.pop("DATABASE_URL", None)
    return {"primary": primary, "config": config, "data": data, "client": s3_client, "env": run_env, "tmp": tmp_path}


def tree(root: Path, slugs: int, padding: int = 0) -> dict[str, bytes]:
    files = {}
    for i in range(slugs):
        key = f"downloads/paper-{i:03d}/google_favicon/icon.png"
        body = image(i, padding)
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body)
        files[key] = body
    return files


def run(
    env: dict[str, Any], root: Path, *extra: str, interrupt: tuple[str, int, str] | None = None
) -> subprocess.CompletedProcess[str]:
    run_env = dict(env["env"])
    if interrupt:
        op, at, sig = interrupt
        run_env.update(INTERRUPT_OP=op, INTERRUPT_AT=str(at), INTERRUPT_SIGNAL=sig)
    else:
        run_env.update(INTERRUPT_OP="PutObject", INTERRUPT_AT="0", INTERRUPT_SIGNAL="SIGINT")  # never reached
    cmd = [sys.executable, str(env["tmp"] / "runner.py"), "upload", str(root), "--config", str(env["config"]), *extra]
    return subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=120, check=False)


def landed(env: dict[str, Any]) -> dict[str, str]:
    return {o.key: o.etag for o in S3Adapter(env["client"]).iter_objects(env["primary"])}


def settled(env: dict[str, Any], quiet: float = 0.5) -> dict[str, str]:
    """What landed once the server has finished the requests a killed client had already sent (a PutObject in
    flight still lands after its client is gone): the listing, once it stays the same for `quiet` seconds."""
    seen, deadline = landed(env), time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = landed(env)
        if now == seen:
            return now
        seen = now
    raise AssertionError(f"the bucket kept changing for 30 s after the client was killed: {len(seen)} objects")


def summary_counts(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("UPLOAD | "))
    return {k: int(v) for k, v in (pair.split("=") for pair in line.removeprefix("UPLOAD | ").split())}


def test_a_killed_run_resumes_and_uploads_only_what_did_not_land(env: dict[str, Any]) -> None:
    root = env["tmp"] / "scrape"
    files = tree(root, 40)

    killed = run(env, root, "--workers", "2", interrupt=("PutObject", 15, "SIGKILL"))

    assert killed.returncode == -signal.SIGKILL
    before = settled(env)
    assert 0 < len(before) < len(files)  # killed mid-run: some landed, some did not
    assert all(before[k] == md5(files[k]) for k in before)  # and what landed is whole

    resumed = run(env, root, "--workers", "2")

    assert resumed.returncode == 0, resumed.stderr
    counts = summary_counts(resumed.stdout)
    assert (counts["present"], counts["uploaded"]) == (len(before), len(files) - len(before))
    assert landed(env) == {k: md5(b) for k, b in files.items()}
    assert summary_counts(run(env, root).stdout)["uploaded"] == 0


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])  # Ctrl-C, and `kill` (a CI job cancelled)
def test_an_interrupt_during_a_multipart_upload_leaves_no_object_and_no_open_upload_then_resumes(
    env: dict[str, Any], signal_name: str
) -> None:
    root = env["tmp"] / "scrape"
    files = tree(root, 1, padding=11 * MIB)  # above the 8 MiB threshold: two parts, 8 MiB and the rest
    [(key, body)] = files.items()

    interrupted = run(env, root, interrupt=("UploadPart", 2, signal_name))

    assert interrupted.returncode == 130, interrupted.stdout + interrupted.stderr
    assert "run the same command again to resume" in interrupted.stderr
    assert landed(env) == {}  # a partial multipart upload never looks complete
    assert env["client"].list_multipart_uploads(Bucket=env["primary"]).get("Uploads", []) == []  # aborted, not left behind

    resumed = run(env, root)

    assert resumed.returncode == 0, resumed.stderr
    assert summary_counts(resumed.stdout)["uploaded"] == 1
    etag = landed(env)[key]
    assert etag.endswith("-2")  # multipart: 8 MiB + the rest
    assert env["client"].get_object(Bucket=env["primary"], Key=key)["Body"].read() == body
    again = run(env, root)
    assert (summary_counts(again.stdout)["present"], summary_counts(again.stdout)["uploaded"]) == (1, 0)  # predicted ETag


def test_a_failed_put_is_reported_the_others_land_and_the_next_run_retries_it(env: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "scrape"
    files = tree(root, 6)
    doomed = "downloads/paper-003/google_favicon/icon.png"
    client = env["client"]

    def fail_one(params: dict[str, Any], **kwargs: Any) -> None:
        if params["Key"] == doomed:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "PutObject")

    client.meta.events.register("before-parameter-build.s3.PutObject", fail_one)
    media_map = mediamap.parse(env["data"])
    s3 = S3Adapter(client)

    def once() -> tuple[upload.Summary, list[upload.Item]]:
        items: list[upload.Item] = []
        early, tasks, _ = upload.staging_tasks(media_map, s3, root, manifest=None)
        assert early == []
        return upload.Uploader(s3, env["primary"], workers=3, on_item=items.append).run(tasks), items

    first, items = once()

    assert (first.counts[Up.UPLOADED], first.counts[Up.FAILED], first.ok) == (5, 1, False)
    [failed] = [i for i in items if i.outcome == Up.FAILED]
    assert failed.key == doomed and "SlowDown" in failed.reason and "run the same command again" in failed.reason
    assert set(landed(env)) == set(files) - {doomed}

    client.meta.events.unregister("before-parameter-build.s3.PutObject", fail_one)
    second, _ = once()

    assert (second.counts[Up.UPLOADED], second.counts[Up.PRESENT], second.ok) == (1, 5, True)
    assert landed(env) == {k: md5(b) for k, b in files.items()}
