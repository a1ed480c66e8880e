"""`mediacanon plan`, `explain` with a database, and `verify`, on a real moto server and PostgreSQL."""

from __future__ import annotations

import json
import os
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


def test_a_row_mediacanon_moved_to_a_404_is_broken_not_missing(stack: dict[str, str], s3_client: Any) -> None:
    """The same row in the plan and in verify: a 404 of mediacanon's making is I1 broken in both, never "missing"
    (the word for rows that pointed at a 404 before mediacanon came)."""
    from mediacanon.adapters.db import Database, Swap
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.core import mediamap

    media_map = mediamap.load(os.environ["MEDIACANON_CONFIG"])
    mapping = media_map.field("archive.PublicationSource.icon")
    for bucket in (stack["primary"], stack["cdn"]):
        s3_client.put_object(Bucket=bucket, Key="icons/nytimes.png", Body=b"nyt")
    with Database(os.environ["DATABASE_URL"]) as db:
        (row,) = [r for r in db.iter_rows(mapping) if r.slug == "nytimes"]
        moved = (
            Ledger(db, media_map.schema)
            .link(
                mapping,
                [Swap(row.id, "icons/nytimes_icon_v2_final.png", "icons/nytimes.png")],
                source_key="icons/nytimes_icon_v2_final.png",
                canonical_key="icons/nytimes.png",
                etag=None,
                sequencer=None,
            )
            .rows_changed
        )
    assert moved == 1
    s3_client.delete_object(Bucket=stack["primary"], Key="icons/nytimes.png")  # then the file is gone

    plan = json.loads(CliRunner().invoke(main, ["plan", "--json"]).output)
    rows = {i["key"]: i["action"] for i in plan["items"] if i["action"] in ("broken", "missing", "repair")}
    assert rows == {"icons/nytimes.png": "broken", "icons/gone.png": "missing", "icons/old.png": "repair"}
    assert "PLAN | " in (text := CliRunner().invoke(main, ["plan"]).output) and " broken=1" in text

    result = CliRunner().invoke(main, ["verify", "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 1  # mediacanon's fault: verify fails
    assert [b["key"] for b in data["i1_never_a_404"]["broken"]] == ["icons/nytimes.png"]
    assert {m["key"] for m in data["report"]["missing"]} == {"icons/gone.png"}  # the old 404 only
    assert data["reported"]["missing"] == plan["totals"]["missing"] == 1
