"""The media map loads the sample and names, for every mistake, the file, the place, the problem and the fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mediacanon.core.errors import ConfigError, PermanentError
from mediacanon.core.mediamap import Buckets, FieldMapping, MediaMap, Policies, StagingManifest, load, parse

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "sample" / "mediamap.yaml"
SOURCE = "test-mediamap.yaml"


def _valid() -> dict[str, Any]:
    return {
        "version": 1,
        "buckets": {"primary": "archive-media", "cdn": "archive-cdn", "fallbacks": ["archive-legacy"]},
        "fields": [
            {
                "name": "archive.PublicationSource.icon",
                "table": "archive_publicationsource",
                "column": "icon",
                "slug_column": "slug",
                "upload_to": "icons/",
                "canonical": "icons/{slug}{ext}",
            }
        ],
    }


def test_sample_map_loads() -> None:
    media_map = load(SAMPLE)
    assert isinstance(media_map, MediaMap)
    assert media_map.source == str(SAMPLE)
    assert media_map.buckets == Buckets(primary="archive-media", cdn="archive-cdn", fallbacks=("archive-legacy",))
    assert [f.name for f in media_map.fields] == [
        "archive.PublicationSource.icon",
        "archive.PublicationSource.masthead",
        "tenants.TenantPublication.icon",
    ]
    icon = media_map.field("archive.PublicationSource.icon")
    assert (icon.table, icon.column, icon.slug_column, icon.upload_to, icon.canonical) == (
        "archive_publicationsource",
        "icon",
        "slug",
        "icons/",
        "icons/{slug}{ext}",
    )
    assert icon.extension_aliases == {".jpeg": ".jpg", ".jpe": ".jpg", ".tif": ".tiff"}
    assert icon.policies == Policies(collision="keep-both", mirror_deletes="delete", retire="delete")
    assert "favicon" in icon.noise_tokens
    tenant = media_map.field("tenants.TenantPublication.icon")
    assert tenant.tenant_scoped and tenant.tenant_column == "tenant" and tenant.location == "{tenant}/"


def test_sample_map_unknown_field_name() -> None:
    with pytest.raises(KeyError):
        load(SAMPLE).field("archive.Nope.icon")


def test_minimal_map_gets_defaults() -> None:
    mapping = parse(_valid()).fields[0]
    assert mapping == FieldMapping(
        name="archive.PublicationSource.icon",
        table="archive_publicationsource",
        column="icon",
        slug_column="slug",
        upload_to="icons/",
        canonical="icons/{slug}{ext}",
        extension_aliases=mapping.extension_aliases,
        noise_tokens=mapping.noise_tokens,
    )
    assert mapping.extension_aliases[".jpeg"] == ".jpg"
    assert mapping.max_length == 100


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the valid map: 'fields.0.table' = value; value DELETE removes the key."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


DELETE = object()
FIELD = "fields[archive.PublicationSource.icon]"


def _duplicate_field(data: dict[str, Any]) -> None:
    data["fields"].append(copy.deepcopy(data["fields"][0]))


def _two_fields_one_prefix(data: dict[str, Any]) -> None:
    other = copy.deepcopy(data["fields"][0])
    other.update(name="archive.PublicationSource.logo", column="logo")
    data["fields"].append(other)


# (mutation, where, fragment of the problem)
INVALID = [
    pytest.param(_set("buckets", DELETE), "buckets", "is missing", id="missing-buckets"),
    pytest.param(_set("buckets", ["archive-media"]), "buckets", "must be a mapping", id="buckets-not-a-mapping"),
    pytest.param(_set("buckets.primary", "Archive_Media"), "buckets.primary", "not a valid S3 bucket name", id="bad-bucket-name"),
    pytest.param(_set("buckets.primary", "ab"), "buckets.primary", "not a valid S3 bucket name", id="bucket-name-too-short"),
    pytest.param(_set("buckets.cdn", DELETE), "buckets.cdn", "is missing", id="missing-cdn"),
    pytest.param(_set("buckets.cdn", "archive-media"), "buckets.cdn", "same bucket as buckets.primary", id="cdn-equals-primary"),
    pytest.param(
        _set("buckets.fallbacks", ["archive-media"]), "buckets.fallbacks", "primary or CDN", id="fallback-equals-primary"
    ),
    pytest.param(_set("buckets.fallbacks", ["archive-cdn"]), "buckets.fallbacks", "primary or CDN", id="fallback-equals-cdn"),
    pytest.param(_set("buckets.fallback", ["x-legacy"]), "buckets.fallback", "not a known setting", id="unknown-bucket-key"),
    pytest.param(_set("bucket", {}), "bucket", "not a known setting", id="unknown-top-level-key"),
    pytest.param(_set("version", 2), "version", "unsupported version", id="unsupported-version"),
    pytest.param(_set("schema", "media canon"), "schema", "not a valid PostgreSQL identifier", id="bad-schema"),
    pytest.param(_set("reports_prefix", "/reports"), "reports_prefix", "relative prefix ending in '/'", id="bad-reports-prefix"),
    pytest.param(_set("defaults", {"noise": []}), "defaults.noise", "not a known setting", id="unknown-defaults-key"),
    pytest.param(_set("fields", DELETE), "fields", "is missing", id="missing-fields"),
    pytest.param(_set("fields", []), "fields", "is empty", id="empty-fields"),
    pytest.param(_set("fields.0.colum", "icon"), f"{FIELD}.colum", "not a known setting", id="unknown-field-key"),
    pytest.param(_set("fields.0.name", DELETE), "fields[0].name", "is missing", id="missing-field-name"),
    pytest.param(_set("fields.0.table", DELETE), f"{FIELD}.table", "is missing", id="missing-table"),
    pytest.param(_set("fields.0.column", ""), f"{FIELD}.column", "is missing", id="empty-column"),
    pytest.param(_set("fields.0.slug_column", DELETE), f"{FIELD}.slug_column", "is missing", id="missing-slug-column"),
    pytest.param(_set("fields.0.upload_to", DELETE), f"{FIELD}.upload_to", "is missing", id="missing-upload-to"),
    pytest.param(_set("fields.0.canonical", DELETE), f"{FIELD}.canonical", "is missing", id="missing-canonical"),
    pytest.param(
        _set("fields.0.table", "x; drop table"), f"{FIELD}.table", "not a valid PostgreSQL identifier", id="sql-injection-table"
    ),
    pytest.param(_set("fields.0.column", 'icon"'), f"{FIELD}.column", "not a valid PostgreSQL identifier", id="quote-in-column"),
    pytest.param(
        _set("fields.0.id_column", "1id"), f"{FIELD}.id_column", "not a valid PostgreSQL identifier", id="bad-id-column"
    ),
    pytest.param(
        _set("fields.0.table", "t" * 64), f"{FIELD}.table", "not a valid PostgreSQL identifier", id="identifier-over-63"
    ),
    pytest.param(_set("fields.0.upload_to", "icons"), f"{FIELD}.upload_to", "ending in '/'", id="upload-to-without-slash"),
    pytest.param(_set("fields.0.upload_to", "/icons/"), f"{FIELD}.upload_to", "relative prefix", id="upload-to-absolute"),
    pytest.param(_set("fields.0.upload_to", "../icons/"), f"{FIELD}.upload_to", "relative prefix", id="upload-to-dot-dot"),
    pytest.param(
        _set("fields.0.canonical", "icons/logo{ext}"), f"{FIELD}.canonical", "does not contain {slug}", id="canonical-no-slug"
    ),
    pytest.param(
        _set("fields.0.canonical", "logos/{slug}{ext}"),
        f"{FIELD}.canonical",
        "outside upload_to",
        id="canonical-outside-upload-to",
    ),
    pytest.param(
        _set("fields.0.canonical", "icons/../{slug}{ext}"), f"{FIELD}.canonical", "no '', '.' or '..'", id="canonical-dot-dot"
    ),
    pytest.param(
        _set("fields.0.canonical", "icons/{slug}/"), f"{FIELD}.canonical", "relative object name", id="canonical-folder"
    ),
    pytest.param(
        _set("fields.0.canonical", "icons/{name}{ext}"), f"{FIELD}.canonical", "unknown placeholder", id="unknown-placeholder"
    ),
    pytest.param(_set("fields.0.canonical", "icons/{slug"), f"{FIELD}.canonical", "not a valid template", id="broken-template"),
    pytest.param(_set("fields.0.max_length", 0), f"{FIELD}.max_length", "integer from 1 to 1024", id="max-length-zero"),
    pytest.param(_set("fields.0.max_length", 2000), f"{FIELD}.max_length", "integer from 1 to 1024", id="max-length-over-s3"),
    pytest.param(_set("fields.0.max_length", "100"), f"{FIELD}.max_length", "integer from 1 to 1024", id="max-length-string"),
    pytest.param(_set("fields.0.max_length", True), f"{FIELD}.max_length", "integer from 1 to 1024", id="max-length-bool"),
    pytest.param(
        _set("fields.0.policies", {"collision": "replace"}), f"{FIELD}.policies.collision", "not a known policy", id="bad-policy"
    ),
    pytest.param(
        _set("fields.0.policies", {"retire": "archive"}), f"{FIELD}.policies.retire", "not a known policy", id="bad-retire-policy"
    ),
    pytest.param(
        _set("fields.0.policies", {"colision": "fail"}), f"{FIELD}.policies.colision", "not a known setting", id="typo-policy"
    ),
    pytest.param(
        _set("fields.0.location", "{tenant}/"), f"{FIELD}.tenant_column", "location uses {tenant}", id="tenant-without-column"
    ),
    pytest.param(
        _set("fields.0.tenant_column", "tenant"), f"{FIELD}.tenant_column", "no {tenant} placeholder", id="column-no-tenant"
    ),
    pytest.param(
        _set("fields.0.location", "media"), f"{FIELD}.location", "relative prefix ending in '/'", id="location-no-slash"
    ),
    pytest.param(_set("fields.0.location", "{site}/"), f"{FIELD}.location", "unknown placeholder", id="location-bad-placeholder"),
    pytest.param(_set("fields.0.staging", ["downloads/*/x"]), f"{FIELD}.staging[0]", "{slug} exactly once", id="staging-no-slug"),
    pytest.param(_set("fields.0.staging", "downloads/{slug}/*"), f"{FIELD}.staging", "must be a list", id="staging-not-a-list"),
    pytest.param(_set("fields.0.include", [""]), f"{FIELD}.include[0]", "non-empty string", id="empty-include-glob"),
    pytest.param(
        _set("fields.0.extension_aliases", {"jpeg": "jpg"}), f"{FIELD}.extension_aliases", "'.ext' to '.ext'", id="alias-no-dot"
    ),
    pytest.param(_duplicate_field, FIELD, "declared twice", id="duplicate-field-names"),
    pytest.param(_two_fields_one_prefix, FIELD, "shares upload_to", id="two-columns-one-prefix-no-include"),
]


@pytest.mark.parametrize(("mutate", "where", "problem"), INVALID)
def test_invalid_map_names_file_where_problem_and_fix(mutate: Callable[[dict[str, Any]], None], where: str, problem: str) -> None:
    data = _valid()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse(data, source=SOURCE)
    error = info.value
    assert isinstance(error, PermanentError)
    assert (error.path, error.where) == (SOURCE, where)
    assert problem in error.problem
    assert error.fix
    assert str(error) == f"{SOURCE}: {where}: {error.problem} (fix: {error.fix})"


@pytest.mark.parametrize(
    "data",
    [pytest.param(None, id="empty-document"), pytest.param(["fields"], id="list-document"), pytest.param("x", id="scalar")],
)
def test_document_that_is_not_a_mapping(data: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse(data, source=SOURCE)
    assert (info.value.where, info.value.problem) == ("file", "must be a mapping with 'buckets' and 'fields'")


def test_defaults_apply_to_every_field() -> None:
    data = _valid()
    data["defaults"] = {"max_length": 255, "policies": {"retire": "keep"}, "noise_tokens": ["_x"], "location": "media/"}
    mapping = parse(data).fields[0]
    assert (mapping.max_length, mapping.policies.retire, mapping.noise_tokens, mapping.location) == (
        255,
        "keep",
        ("_x",),
        "media/",
    )


def test_field_setting_overrides_default_policy() -> None:
    data = _valid()
    data["defaults"] = {"policies": {"collision": "fail", "retire": "keep"}}
    data["fields"][0]["policies"] = {"collision": "overwrite"}
    assert parse(data).fields[0].policies == Policies(collision="overwrite", mirror_deletes="delete", retire="keep")


def test_bad_default_policy_is_reported_on_the_field() -> None:
    data = _valid()
    data["defaults"] = {"policies": {"mirror_deletes": "never"}}
    with pytest.raises(ConfigError) as info:
        parse(data, source=SOURCE)
    assert info.value.where == f"{FIELD}.policies.mirror_deletes"


def test_nested_upload_to_prefixes_are_allowed() -> None:
    data = _valid()
    large = copy.deepcopy(data["fields"][0])
    large.update(name="archive.PublicationSource.large_icon", column="large_icon", upload_to="icons/large/")
    large["canonical"] = "icons/large/{slug}{ext}"
    data["fields"].append(large)
    assert len(parse(data).fields) == 2


# --- files


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "mediamap.yaml"
    path.write_text(yaml.safe_dump(_valid()), encoding="utf-8")
    assert load(path).source == str(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.path, info.value.where, info.value.problem) == (str(path), "file", "does not exist")
    assert "--config" in info.value.fix


def test_invalid_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "mediamap.yaml"
    path.write_text("buckets: {primary: archive-media\nfields: [", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.path, info.value.where) == (str(path), "file")
    assert info.value.problem.startswith("is not valid YAML")
    assert info.value.fix == "fix the YAML syntax"


def test_path_that_is_a_directory(tmp_path: Path) -> None:
    # fixed: IsADirectoryError escaped as a raw OSError instead of a ConfigError
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert (info.value.where, info.value.problem.startswith("cannot be read")) == ("file", True)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "mediamap.yaml"
    path.write_bytes(b"buckets:\n  primary: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load(path)


def test_error_in_file_names_the_file(tmp_path: Path) -> None:
    data = _valid()
    data["fields"][0]["table"] = "x; drop table"
    path = tmp_path / "mediamap.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: {FIELD}.table: 'x; drop table' is not a valid PostgreSQL identifier")


# -- staging_manifest: the audit CSV of `mediacanon upload DIR --manifest` ------------------------------------


def test_sample_map_names_its_audit_columns() -> None:
    assert load(SAMPLE).staging_manifest == StagingManifest(
        slug_column="slug", audit_column="audit_status", accepted=("passed", "approved")
    )


def test_staging_manifest_defaults_when_absent() -> None:
    assert parse(_valid()).staging_manifest == StagingManifest(
        slug_column="slug", audit_column="audit_status", accepted=("passed",)
    )


def test_staging_manifest_values_are_trimmed() -> None:
    data = _valid()
    data["staging_manifest"] = {"slug_column": " publication ", "audit_column": "qa", "accepted": [" ok ", "Yes"]}
    assert parse(data).staging_manifest == StagingManifest(slug_column="publication", audit_column="qa", accepted=("ok", "Yes"))


@pytest.mark.parametrize(
    ("manifest", "where", "problem"),
    [
        ({"audit": "x"}, "staging_manifest.audit", "is not a known setting"),
        ({"audit_column": ""}, "staging_manifest.audit_column", "must be a non-empty column name"),
        ({"slug_column": 3}, "staging_manifest.slug_column", "must be a non-empty column name"),
        ({"audit_column": "slug"}, "staging_manifest.audit_column", "is the same column as slug_column"),
        ({"accepted": []}, "staging_manifest.accepted", "lists no verdict"),
        ({"accepted": "passed"}, "staging_manifest.accepted", "must be a list"),
        ({"accepted": ["passed", " "]}, "staging_manifest.accepted", "lists no verdict"),
        ("passed", "staging_manifest", "must be a mapping"),
    ],
)
def test_bad_staging_manifest_names_the_place_and_the_fix(manifest: Any, where: str, problem: str) -> None:
    data = _valid()
    data["staging_manifest"] = manifest
    with pytest.raises(ConfigError) as info:
        parse(data, source=SOURCE)
    assert (info.value.path, info.value.where) == (SOURCE, where)
    assert problem in info.value.problem
    assert info.value.fix


def test_every_problem_is_reported_at_once() -> None:
    """One edit of a map with four unrelated mistakes shows all four, each with its place and fix, not the first alone."""
    from mediacanon.core.errors import ConfigErrors

    data = _valid()
    data["buckets"]["cdn"] = "Not_A_Bucket"
    data["schema"] = "media canon"
    data["fields"][0]["max_length"] = 5000
    second = copy.deepcopy(data["fields"][0])
    second.update(name="archive.PublicationSource.masthead", column="masthead", upload_to="mastheads", max_length=100)
    data["fields"].append(second)

    with pytest.raises(ConfigErrors) as info:
        parse(data, source=SOURCE)

    found = [(e.where, e.problem.split(" ")[-1]) for e in info.value.errors]
    assert [where for where, _ in found] == [
        "buckets.cdn",
        "schema",
        f"{FIELD}.max_length",
        "fields[archive.PublicationSource.masthead].upload_to",
    ]
    assert all(e.fix for e in info.value.errors)
    text = str(info.value)
    assert text.startswith(f"{SOURCE}: 4 problems:\n") and all(where in text for where, _ in found)
    assert isinstance(info.value, ConfigError)  # callers that catch one error still catch it


def test_two_fields_of_different_tables_that_claim_the_same_keys_are_named_together() -> None:
    data = _valid()
    other = copy.deepcopy(data["fields"][0])
    other.update(name="press.Outlet.logo", table="press_outlet", column="logo")
    data["fields"].append(other)
    with pytest.raises(ConfigError) as info:
        parse(data, source=SOURCE)
    assert info.value.where == FIELD
    assert "press.Outlet.logo" in info.value.problem and "both would claim every key" in info.value.problem
    other["include"] = ["*-logo.*"]
    assert len(parse(data).fields) == 2  # include globs tell them apart
