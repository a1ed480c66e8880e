"""The command line, offline: explain from the name alone, check-config's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mediacanon.cli import main

SAMPLE_MAP = str(Path(__file__).resolve().parents[2] / "sample" / "mediamap.yaml")


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MEDIACANON_STATE_DIR", str(tmp_path / "no-local-stack"))
    return CliRunner()


@pytest.mark.parametrize(
    ("key", "tenant", "canonical"),
    [
        ("icons/nytimes_icon_v2_final.png", None, "icons/nytimes.png"),
        ("mastheads/NYTimes_Masthead_FINAL (1).JPG", None, "mastheads/nytimes.jpg"),
        ("icons/lemonde_icon_a1B2c3D.png", None, "icons/lemonde.png"),
        ("downloads/el-pais/google_favicon/google_icon.png", None, "icons/el-pais.png"),
        ("acme/icons/acme-news_icon.png", "acme", "acme/icons/acme-news.png"),
    ],
)
def test_explain_json(run: CliRunner, key: str, tenant: str | None, canonical: str) -> None:
    args = ["explain", "--json", "--config", SAMPLE_MAP, key] + (["--tenant", tenant] if tenant else [])
    result = run.invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["canonical_key"] == canonical
    assert data["key"] == key
    assert data["why"] and data["rule"]
    assert data["owner"] is None  # no database given: from the name alone


def test_explain_refuses_traversal_with_a_json_error(run: CliRunner) -> None:
    result = run.invoke(main, ["explain", "--json", "--config", SAMPLE_MAP, "icons/../etc/passwd"])
    assert result.exit_code == 2
    data = json.loads(result.output)
    assert data["key"] == "icons/../etc/passwd"
    assert "'..'" in data["error"]


def test_explain_decodes_an_event_key_once(run: CliRunner) -> None:
    result = run.invoke(main, ["explain", "--json", "--raw-event-key", "--config", SAMPLE_MAP, "icons/Le+Monde%2B_icon.png"])
    assert json.loads(result.output)["key"] == "icons/Le Monde+_icon.png"


def test_explain_human_output_names_the_rule(run: CliRunner) -> None:
    result = run.invoke(main, ["explain", "--config", SAMPLE_MAP, "icons/bbc-favicon.ico"])
    assert result.exit_code == 0
    assert "icons/bbc.ico" in result.output
    assert "stripped noise token" in result.output


def test_check_config_ok(run: CliRunner) -> None:
    result = run.invoke(main, ["check-config", "--config", SAMPLE_MAP])
    assert result.exit_code == 0
    assert "valid" in result.output
    assert "archive.PublicationSource.icon" in result.output


def test_check_config_names_file_place_problem_and_fix(run: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "mediamap.yaml"
    bad.write_text("buckets: {primary: archive-media, cdn: archive-media}\nfields: []\n")
    result = run.invoke(main, ["check-config", "--config", str(bad)])
    assert result.exit_code == 1
    assert str(bad) in result.output
    assert "buckets.cdn" in result.output
    assert "fix:" in result.output


def test_plan_without_a_database_says_how_to_get_one(run: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run.invoke(main, ["plan", "--config", SAMPLE_MAP])
    assert result.exit_code == 1
    assert "DATABASE_URL" in result.output


def test_upload_needs_exactly_one_source(run: CliRunner, tmp_path: Path) -> None:
    neither = run.invoke(main, ["upload", "--config", SAMPLE_MAP])
    both = run.invoke(main, ["upload", str(tmp_path), "--from-media-root", str(tmp_path), "--config", SAMPLE_MAP])
    for result in (neither, both):
        assert result.exit_code == 2
        assert "exactly one" in result.output


def test_upload_from_media_root_without_a_database_says_how_to_get_one(run: CliRunner, tmp_path: Path) -> None:
    result = run.invoke(main, ["upload", "--from-media-root", str(tmp_path), "--config", SAMPLE_MAP])
    assert result.exit_code == 2
    assert "DATABASE_URL" in result.output


def test_upload_manifest_is_for_a_staging_tree_only(run: CliRunner, tmp_path: Path) -> None:
    manifest = tmp_path / "audit.csv"
    manifest.write_text("slug,audit_status\n")
    result = run.invoke(main, ["upload", "--from-media-root", str(tmp_path), "--manifest", str(manifest), "--config", SAMPLE_MAP])
    assert result.exit_code == 2
    assert "--manifest applies to a staging DIRECTORY" in result.output


def test_phases_take_the_documented_syntax() -> None:
    from mediacanon.cli import spread_phases

    assert spread_phases(["--phase", "objects", "report", "--dry-run"]) == [
        "--phase",
        "objects",
        "--phase",
        "report",
        "--dry-run",
    ]
    assert spread_phases(["--phase=objects", "report"]) == ["--phase=objects", "--phase", "report"]
    assert spread_phases(["--field", "a", "--phase", "rows"]) == ["--field", "a", "--phase", "rows"]


def test_a_failed_task_reads_as_its_error_type_and_message_not_lambdas_json() -> None:
    """Step Functions carries a failed Lambda task's error as a JSON cause (errorMessage, errorType, stackTrace):
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html"""
    from mediacanon.cli import task_error

    cause = json.dumps(
        {
            "errorMessage": "link icons/a [draft].png: refused",
            "errorType": "PermanentError",
            "requestId": "r",
            "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n    raise\n'],
        }
    )
    assert task_error(f"PermanentError: {cause}") == "PermanentError: link icons/a [draft].png: refused"
    assert task_error(f"PermanentError: {cause[:60]}") == "PermanentError: link icons/a [draft].png: refused"
    assert task_error("States.Timeout: the task ran over 900 s") == "States.Timeout: the task ran over 900 s"


def test_plan_only_takes_every_action_the_plan_has() -> None:
    from mediacanon.cli import PLAN_ACTIONS
    from mediacanon.plan import Action

    assert sorted(PLAN_ACTIONS) == sorted(a.value for a in Action)


def test_db_indexes_prints_one_concurrent_index_per_file_column_in_the_order_s3_lists_keys(run: CliRunner) -> None:
    """The rows phase reads key ranges sorted as S3 lists keys ("List results are always returned in UTF-8 binary
    order", S3 API Reference, ListObjectsV2): byte order is PostgreSQL's "C" collation, so the index is on that."""
    result = run.invoke(main, ["db", "indexes", "--config", SAMPLE_MAP, "--django-schema", "django"])
    assert result.exit_code == 0, result.output
    statements = [line for line in result.output.splitlines() if line.startswith("CREATE")]
    assert statements == [
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "mediacanon_archive_publicationsource_icon_key_order" ON '
        '"django"."archive_publicationsource" ("icon" COLLATE "C", "id");',
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "mediacanon_archive_publicationsource_masthead_key_order" ON '
        '"django"."archive_publicationsource" ("masthead" COLLATE "C", "id");',
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "mediacanon_tenants_tenantpublication_icon_key_order" ON '
        '"django"."tenants_tenantpublication" (("tenant"::text) COLLATE "C", "icon" COLLATE "C", "id");',
    ]
