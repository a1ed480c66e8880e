"""One set of numbers: the demo's flow (`make demo`: the sample's messy archive uploaded the way Django would, a
staging upload, the plan, the live path, verify, the backfill, verify again) on a stack of this test's own, and the
counts each output gives cross-checked against the others'. Every number is read from an output (`plan --json`,
`local run`'s table and DONE line, the backfill's report.json and DONE line, `verify --json`), none typed in: the
outputs count the same things the same way (orphan, missing, repair, refused), and the keys behind them agree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo

from mediacanon.core import mediamap
from mediacanon.local import localrun

pytestmark = [
    pytest.mark.acceptance,
    pytest.mark.moto_only(reason="the backfill runs on moto's Step Functions executor (mediacanon.local.sfnlocal)"),
]

REPO = Path(__file__).resolve().parents[2]
MANAGE = REPO / "sample" / "manage.py"
MEDIACANON = Path(sys.executable).with_name("mediacanon")  # the CLI of the environment running the tests
COUNT, SEED = 80, 42


@dataclass
class Flow:
    """What each step of the demo's flow printed (and the documents it wrote)."""

    plan: dict[str, Any]
    run_output: str
    verify_live: dict[str, Any]
    backfill_output: str
    report: dict[str, Any]
    verify_end: dict[str, Any]


def counts(line_head: str, output: str) -> dict[str, int]:
    """`HEAD | a=1 b=2` -> {"a": 1, "b": 2}, from the one line of `output` that starts with it."""
    lines = [line for line in output.splitlines() if line.startswith(f"{line_head} | ")]
    assert len(lines) == 1, f"one {line_head!r} line expected in:\n{output}"
    return {name: int(n) for name, n in re.findall(r"([\w-]+)=(\d+)", lines[0])}


@pytest.fixture(scope="module")
def flow(database_url: str, aws_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    tmp = tmp_path_factory.mktemp("numbers")
    tag = uuid.uuid4().hex[:8]
    data = yaml.safe_load((REPO / "sample" / "mediamap.yaml").read_text(encoding="utf-8"))
    data["buckets"] = {"primary": f"num-media-{tag}", "cdn": f"num-cdn-{tag}", "fallbacks": [f"num-legacy-{tag}"]}
    config = tmp / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    media_map = mediamap.parse(data, source=str(config))
    name = f"numbers_{tag}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = make_conninfo(database_url, dbname=name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MEDIACANON_"))}
    env.update(
        DATABASE_URL=conninfo,
        AWS_ENDPOINT_URL=aws_endpoint,
        PYTHONIOENCODING="utf-8",
        MEDIACANON_CONFIG=str(config),
        MEDIACANON_STATE_DIR=str(tmp / "state"),
        MEDIACANON_PRIMARY_BUCKET=media_map.buckets.primary,
        MEDIACANON_LEGACY_BUCKET=media_map.buckets.fallbacks[0],
        MEDIACANON_CDN_BUCKET=media_map.buckets.cdn,
    )

    def run(*command: str, ok: tuple[int, ...] = (0,)) -> str:
        proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
        assert proc.returncode in ok, f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def cli(*args: str) -> str:
        return run(str(MEDIACANON), *args)

    def manage(*args: str) -> str:
        return run(sys.executable, str(MANAGE), *args)

    try:
        # as `mediacanon local up` does: the template's buckets, notifications, queues and rules, before any upload
        localrun.provision_media_map(media_map, REPO / "template.yaml", endpoint_url=aws_endpoint)
        manage("migrate", "--verbosity", "0")
        manage("generate_archive", "--count", str(COUNT), "--seed", str(SEED))
        staging = tmp / "staging"
        manage("generate_staging", "--out", str(staging), "--count", "12", "--seed", "7")
        run(str(MEDIACANON), "upload", str(staging / "scrape" / "downloads"), "--manifest", str(staging / "scrape" / "audit.csv"))
        run(str(MEDIACANON), "upload", "--from-media-root", str(staging / "media"), ok=(0, 1))  # missing files: reported
        plan = json.loads(cli("plan", "--json"))
        run_output = cli("local", "run", "--until-idle")
        verify_live = json.loads(cli("verify", "--json"))
        backfill_output = cli("backfill")
        report_key = re.search(r"^report: s3://[^/]+/(\S+\.json)$", backfill_output, re.M)
        assert report_key, backfill_output
        s3 = boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1")
        report = json.loads(s3.get_object(Bucket=media_map.buckets.primary, Key=report_key.group(1))["Body"].read())
        verify_end = json.loads(cli("verify", "--json"))
        yield Flow(plan, run_output, verify_live, backfill_output, report, verify_end)
    finally:
        localrun.shutdown()
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def plan_keys(flow: Flow, action: str) -> set[str]:
    return {i["key"] for i in flow.plan["items"] if i["action"] == action}


def report_keys(flow: Flow, outcome: str, phase: str | None = None) -> set[str]:
    return {i["key"] for i in flow.report["items"] if i["outcome"] == outcome and phase in (None, i["phase"])}


def test_the_flow_has_every_kind_to_count(flow: Flow) -> None:
    totals = flow.plan["totals"]
    for action in ("rename", "orphan", "missing", "repair", "refuse"):
        assert totals.get(action, 0) > 0, totals  # else the cross-checks below would compare zeros
    assert flow.verify_live["ok"] and flow.verify_end["ok"], (flow.verify_live, flow.verify_end)


def test_orphans_are_the_same_keys_in_the_plan_the_report_and_verify(flow: Flow) -> None:
    orphans = plan_keys(flow, "orphan")
    assert set(flow.verify_live["report"]["orphans"]) == orphans
    assert report_keys(flow, "orphan") == orphans
    assert set(flow.verify_end["report"]["orphans"]) == orphans
    assert counts("DONE", flow.backfill_output)["orphan"] == flow.report["counts"]["orphan"] == len(orphans)
    assert flow.verify_end["reported"]["orphan"] == flow.plan["totals"]["orphan"]
    # canonical names are no exception: a key canonical by its name that no row owns is an orphan everywhere
    assert any(i["key"] == i["canonical_key"] for i in flow.plan["items"] if i["action"] == "orphan")


def test_missing_and_repairable_rows_mean_the_same_in_the_plan_the_report_and_verify(flow: Flow) -> None:
    missing, repair = plan_keys(flow, "missing"), plan_keys(flow, "repair")
    assert {m["key"] for m in flow.verify_live["report"]["missing"]} == missing
    assert {m["key"] for m in flow.verify_live["report"]["repairable"]} == repair
    assert report_keys(flow, "missing", "rows") == missing
    assert report_keys(flow, "repaired", "rows") == repair
    done = counts("DONE", flow.backfill_output)
    assert (done["missing"], done["repaired"]) == (len(missing), len(repair))
    # after the backfill: what it could repair is repaired, what no bucket holds is still missing, not I1's
    assert {m["key"] for m in flow.verify_end["report"]["missing"]} == missing
    assert flow.verify_end["report"]["repairable"] == []
    assert flow.verify_end["i1_never_a_404"]["broken"] == []


def test_refused_keys_agree(flow: Flow) -> None:
    refused = plan_keys(flow, "refuse")
    assert set(flow.verify_live["report"]["refused"]) == refused == set(flow.verify_end["report"]["refused"])
    assert report_keys(flow, "refused", "objects") | report_keys(flow, "collision") == refused
    assert counts("DONE", flow.run_output)["refused"] <= len(refused)  # the live path sees the uploads it got events for


def test_the_local_run_table_shows_the_done_line_numbers(flow: Flow) -> None:
    done = counts("DONE", flow.run_output)
    table = {
        m.group(1): int(m.group(2)) for m in re.finditer(r"^  ([a-z]+(?: results: [a-z ]+?)?) +(\d+)  ", flow.run_output, re.M)
    }
    for name, n in done.items():
        assert table[name] == n, (name, table, done)
    assert done["normalized"] == len(plan_keys(flow, "rename"))  # each planned rename copied once
    assert done["linked"] == done["retired"] == done["normalized"]  # one row per renamed file in the sample
    assert done["failed"] == 0
    # the uploads the live path left for the backfill are orphans in the plan (not every orphan: one whose name is
    # canonical is no upload to wait for)
    assert table["unowned"] <= len(plan_keys(flow, "orphan"))


def test_the_report_counts_are_its_items(flow: Flow) -> None:
    by_outcome = Counter(i["outcome"] for i in flow.report["items"])
    assert {k: v for k, v in flow.report["counts"].items() if v} == dict(by_outcome)
    done = counts("DONE", flow.backfill_output)
    assert {k: v for k, v in done.items() if v} == dict(by_outcome)
