"""`mediacanon db grants`: the SQL it prints, from the media map alone."""

from __future__ import annotations

from typing import Any

import pytest

from mediacanon.adapters.grants import grants, grants_script
from mediacanon.core import mediamap


def _map(*fields: dict[str, Any], schema: str = "mediacanon") -> mediamap.MediaMap:
    return mediamap.parse({"schema": schema, "buckets": {"primary": "media-a", "cdn": "media-b"}, "fields": list(fields)})


ICON = {"name": "archive.Source.icon", "table": "archive_source", "column": "icon", "slug_column": "slug",
        "upload_to": "icons/", "canonical": "icons/{slug}{ext}"}  # fmt: skip
MASTHEAD = {**ICON, "name": "archive.Source.masthead", "column": "masthead", "upload_to": "mastheads/",
            "canonical": "mastheads/{slug}{ext}"}  # fmt: skip
TENANT_ICON = {**ICON, "name": "tenants.Pub.icon", "table": "tenants_pub", "location": "{tenant}/", "tenant_column": "tenant"}


def _lines(media_map: mediamap.MediaMap, role: str = "mediacanon_fn", **kwargs: Any) -> list[str]:
    return [s.as_string(None) for s in grants(media_map, role, **kwargs)]


def test_select_on_the_table_update_on_its_file_columns_only() -> None:
    lines = _lines(_map(ICON, MASTHEAD))
    assert 'GRANT SELECT ON "public"."archive_source" TO "mediacanon_fn"' in lines
    assert 'GRANT UPDATE ("icon", "masthead") ON "public"."archive_source" TO "mediacanon_fn"' in lines
    updates = [line for line in lines if line.startswith("GRANT UPDATE")]
    assert len(updates) == 1 and '"slug"' not in updates[0] and '"id"' not in updates[0]
    assert not [line for line in lines if "DELETE" in line or "INSERT" in line]


def test_one_grant_per_table() -> None:
    lines = _lines(_map(ICON, TENANT_ICON))
    assert 'GRANT UPDATE ("icon") ON "public"."archive_source" TO "mediacanon_fn"' in lines
    assert 'GRANT UPDATE ("icon") ON "public"."tenants_pub" TO "mediacanon_fn"' in lines
    assert 'GRANT SELECT ON "public"."tenants_pub" TO "mediacanon_fn"' in lines  # the tenant column is read, never written


def test_its_own_schema_and_ledger_tables() -> None:
    lines = _lines(_map(ICON, schema="media_ops"))
    assert lines[-4:] == [
        'CREATE SCHEMA IF NOT EXISTS "media_ops"',
        'GRANT USAGE, CREATE ON SCHEMA "media_ops" TO "mediacanon_fn"',
        'ALTER TABLE IF EXISTS "media_ops"."claims" OWNER TO "mediacanon_fn"',
        'ALTER TABLE IF EXISTS "media_ops"."ledger" OWNER TO "mediacanon_fn"',
    ]
    assert not [line for line in lines if "ON DATABASE" in line], "no CREATE on the database: the schema is made for it"


def test_connect_only_when_a_database_is_named_and_django_schema_option() -> None:
    assert _lines(_map(ICON), database="archive")[0] == 'GRANT CONNECT ON DATABASE "archive" TO "mediacanon_fn"'
    lines = _lines(_map(ICON), django_schema="django")
    assert 'GRANT USAGE ON SCHEMA "django" TO "mediacanon_fn"' in lines
    assert 'GRANT SELECT ON "django"."archive_source" TO "mediacanon_fn"' in lines


@pytest.mark.parametrize(
    ("role", "quoted"), [("Media Canon", '"Media Canon"'), ('x"; DROP TABLE t; --', '"x""; DROP TABLE t; --"')]
)
def test_role_names_are_quoted_never_pasted(role: str, quoted: str) -> None:
    for line in _lines(_map(ICON), role=role):
        if line.startswith("GRANT"):
            assert line.endswith(f" TO {quoted}")


def test_a_file_column_that_is_also_the_slug_is_refused() -> None:
    with pytest.raises(ValueError, match="slug"):
        grants(_map({**ICON, "column": "slug"}), "r")


def test_the_script_is_one_transaction_with_a_header() -> None:
    script = grants_script(_map(ICON), "mediacanon_fn")
    lines = script.splitlines()
    assert lines[0].startswith("-- mediacanon: the least privilege")
    assert "BEGIN;" in lines and lines[-1] == "COMMIT;"
    body = lines[lines.index("BEGIN;") + 1 : -1]
    assert body and all(line.endswith(";") for line in body)
    assert "PASSWORD" not in "".join(body), "the password stays in the secret"
