"""`mediacanon local run` as a user runs it: where its output goes. The handlers' structured logs, EMF metrics and
warnings go to the log file it names (CloudWatch Logs' stand-in), on a terminal as off one; the terminal (or the
pipe) gets progress and the table, and no library warning."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MEDIACANON = Path(sys.executable).with_name("mediacanon")  # the CLI of the environment running the tests
PROGRESS = re.compile(r"^local run: \d+ messages, queues: normalize \d+ replicate \d+ link \d+$")


def _stack(aws_endpoint: str, conninfo: str, archive_map: Callable[..., dict[str, Any]], tmp_path: Path) -> dict[str, str]:
    """A media map on buckets of this test's own, a row with a messy upload, and an upload no row will ever own (its
    normalize retries until the owner wait is over: batches that publish no metric, which Powertools warns about)."""
    tag = uuid.uuid4().hex[:8]
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(archive_map(f"out-media-{tag}", f"out-cdn-{tag}")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIACANON_")}
    env.update(
        MEDIACANON_CONFIG=str(config),
        MEDIACANON_STATE_DIR=str(tmp_path / "state"),
        DATABASE_URL=conninfo,
        AWS_ENDPOINT_URL=aws_endpoint,
        PYTHONWARNINGS="default",  # every warning printed once, DeprecationWarning included
        COLUMNS="200",
        TERM="xterm",
    )
    return env


def _upload(env: dict[str, str], primary: str) -> None:
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    s3.put_object(Bucket=primary, Key="icons/NYTimes_Icon_FINAL.png", Body=b"nyt", ContentType="image/png")
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/NYTimes_Icon_FINAL.png')")
    s3.put_object(Bucket=primary, Key="icons/nobody_owns_this_v3.png", Body=b"orphan", ContentType="image/png")


def _provision(env: dict[str, str]) -> str:
    config = yaml.safe_load(Path(env["MEDIACANON_CONFIG"]).read_text(encoding="utf-8"))
    # the buckets (and their EventBridge notifications) first, so that the uploads below send events
    from mediacanon.core import mediamap
    from mediacanon.local import localrun

    media_map = mediamap.parse(config, source=env["MEDIACANON_CONFIG"])
    localrun.provision_media_map(media_map, REPO / "template.yaml", endpoint_url=env["AWS_ENDPOINT_URL"])
    return str(media_map.buckets.primary)


def _run(env: dict[str, str], *args: str, terminal: bool) -> tuple[int, str, str]:
    command = [str(MEDIACANON), "local", "run", "--until-idle", "--owner-wait", "2", "--timeout", "120", *args]
    if not terminal:
        proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
        return proc.returncode, proc.stdout, proc.stderr
    leader, follower = pty.openpty()
    child = subprocess.Popen(command, env=env, cwd=REPO, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 1)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif child.poll() is not None:
            break
    os.close(leader)
    return child.wait(timeout=30), out.decode(errors="replace"), ""


def _log_lines(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["MEDIACANON_STATE_DIR"]) / "lambda-logs.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]  # every line is JSON


def _assert_no_leak(output: str) -> None:
    assert "Warning" not in output and "warnings.warn" not in output, output
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    json_lines = [line for line in plain.replace("\r", "\n").splitlines() if line.strip().startswith('{"')]
    assert not json_lines, json_lines[:3]  # the handlers' logs and metrics are not on the terminal


def test_on_a_terminal_the_logs_go_to_the_file_and_the_terminal_shows_progress(
    aws_endpoint: str, archive_db: str, archive_map: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    env = _stack(aws_endpoint, archive_db, archive_map, tmp_path)
    _upload(env, _provision(env))

    code, output, _ = _run(env, terminal=True)

    assert code == 0, output
    _assert_no_leak(output)
    assert re.search(r"\d+ messages, \d+ failed \| normalized=", output), output  # the live status line
    assert "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=0" in output, output
    assert re.search(r"^\s*unowned\s+1\s", output, re.M), output
    logs = _log_lines(env)
    messages = [line.get("message") for line in logs]
    assert "normalized" in messages and "unowned" in messages  # Powertools' JSON logs, in the file
    assert any("_aws" in line for line in logs)  # EMF metrics
    warned = [line for line in logs if line.get("category") == "UserWarning"]
    assert warned and all(line["function_name"].endswith("Function") for line in warned), warned
    assert any("No application metrics to publish" in line["message"] for line in warned)


def test_off_a_terminal_progress_is_plain_lines_and_nothing_else_leaks(
    aws_endpoint: str, archive_db: str, archive_map: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    env = _stack(aws_endpoint, archive_db, archive_map, tmp_path)
    _upload(env, _provision(env))

    code, stdout, stderr = _run(env, "--progress-every", "0.5", terminal=False)

    assert code == 0, stderr
    _assert_no_leak(stdout + stderr)
    progress = stderr.splitlines()
    assert progress and all(PROGRESS.match(line) for line in progress), stderr  # stderr holds progress, only
    assert "\x1b[" not in stdout + stderr  # no terminal control codes in a pipe
    assert stdout.splitlines()[-1] == "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=0"
    assert any(line.get("message") == "normalized" for line in _log_lines(env))
