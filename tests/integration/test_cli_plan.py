"""`mediacanon plan`, `explain` with a database, and `verify`, on a real moto server and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from mediacanon.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(
    s3_client: Any,
    bucket: Any,
    archive_db: str,
    archive_map: Any,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    db_conninfo = archive_db
    primary, cdn, legacy = bucket("primary"), bucket("cdn"), bucket("legacy")
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(archive_map(primary, cdn, [legacy])))
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO archive_publicationsource (slug, icon) VALUES "
            "('nytimes', 'icons/nytimes_icon_v2_final.png'), ('el-pais', NULL), ('bbc', 'icons/bbc.ico'), "
            "('gone', 'icons/gone.png'), ('old', 'icons/old.png')"
        )
    for key in (
        "icons/nytimes_icon_v2_final.png",
        "downloads/el-pais/google_favicon/google_icon.png",
        "icons/bbc.ico",
        "icons/old_unused_banner.png",
    ):
        s3_client.put_object(Bucket=primary, Key=key, Body=key.encode())
    s3_client.put_object(Bucket=cdn, Key="icons/bbc.ico", Body=b"icons/bbc.ico")
    s3_client.put_object(Bucket=legacy, Key="icons/old.png", Body=b"legacy")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("DATABASE_URL", db_conninfo)
    monkeypatch.setenv("MEDIACANON_CONFIG", str(config))
    return {"primary": primary, "cdn": cdn, "legacy": legacy}


def test_plan_lists_each_object_and_row_with_its_action(stack: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["plan", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    actions = {item["key"]: (item["action"], item["canonical_key"]) for item in plan["items"]}
    assert actions == {
        "icons/nytimes_icon_v2_final.png": ("rename", "icons/nytimes.png"),
        "downloads/el-pais/google_favicon/google_icon.png": ("rename", "icons/el-pais.png"),
        "icons/bbc.ico": ("ok", "icons/bbc.ico"),
        "icons/old_unused_banner.png": ("orphan", "icons/old-unused-banner.png"),
        "icons/gone.png": ("missing", "icons/gone.png"),
        "icons/old.png": ("repair", "icons/old.png"),
    }
    assert plan["totals"] == {"missing": 1, "ok": 1, "orphan": 1, "rename": 2, "repair": 1}


def test_plan_writes_nothing(stack: dict[str, str], s3_client: Any) -> None:
    before = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=stack["primary"])["Contents"])
    CliRunner().invoke(main, ["plan"])
    after = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=stack["primary"])["Contents"])
    assert before == after
    assert "cdn" not in [o["Key"] for o in s3_client.list_objects_v2(Bucket=stack["cdn"]).get("Contents", [])]


def test_explain_with_a_database_names_the_owner_row(stack: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["explain", "--json", "downloads/el-pais/google_favicon/google_icon.png"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["owner"]["slug"] == "el-pais"
    assert data["owner"]["matched_by"] == "slug"
    assert data["canonical_key"] == "icons/el-pais.png"


def test_verify_reports_missing_rows_and_orphans_without_failing(stack: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["verify", "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 0, result.output  # nothing mediacanon changed points at a 404; the CDN is exact
    # the plan's words: gone.png is missing (no bucket holds it), old.png repairable (the plan's "repair")
    assert {m["key"] for m in data["report"]["missing"]} == {"icons/gone.png"}
    assert {m["key"] for m in data["report"]["repairable"]} == {"icons/old.png"}
    assert "icons/old_unused_banner.png" in data["report"]["orphans"]
    plan = json.loads(CliRunner().invoke(main, ["plan", "--json"]).output)
    assert data["reported"]["missing"] == plan["totals"]["missing"]
    assert data["reported"]["repairable"] == plan["totals"]["repair"]
    assert data["reported"]["orphan"] == plan["totals"]["orphan"]


def test_verify_fails_when_the_cdn_holds_a_non_canonical_key(stack: dict[str, str], s3_client: Any) -> None:
    s3_client.put_object(Bucket=stack["cdn"], Key="icons/nytimes_icon_v2_final.png", Body=b"x")
    result = CliRunner().invoke(main, ["verify", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["i3_exact_mirror"]["not_canonical_primary_keys"] == ["icons/nytimes_icon_v2_final.png"]
