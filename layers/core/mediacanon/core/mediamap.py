"""The media map: one declarative YAML file describing every Django file field mediacanon manages.

Loaded and validated once (cold start, CLI); every problem is reported with the file, the place in it,
what is wrong and how to fix it. Pure: no boto3, no psycopg.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args

import yaml

from mediacanon.core.errors import ConfigError, ConfigErrors

CollisionPolicy = Literal["keep-both", "overwrite", "fail"]
MirrorDeletesPolicy = Literal["delete", "report"]
RetirePolicy = Literal["delete", "delete-if-match", "keep"]
COLLISION_POLICIES: tuple[CollisionPolicy, ...] = get_args(CollisionPolicy)
MIRROR_DELETE_POLICIES: tuple[MirrorDeletesPolicy, ...] = get_args(MirrorDeletesPolicy)
RETIRE_POLICIES: tuple[RetirePolicy, ...] = get_args(RetirePolicy)

DEFAULT_NOISE_TOKENS = (
    "_icon",
    "-icon",
    "_fav",
    "favicon",
    "_logo",
    "-logo",
    "_masthead",
    "-masthead",
    "_v2",
    "_v3",
    "_final",
    "-final",
    "_copy",
    "copy",
    " (1)",
    " (2)",
    "_new",
    "_old",
)
DEFAULT_EXTENSION_ALIASES = {".jpeg": ".jpg", ".jpe": ".jpg", ".tif": ".tiff", ".htm": ".html"}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
TEMPLATE_FIELDS = {"slug", "ext", "tenant"}


@dataclass(frozen=True)
class Policies:
    collision: CollisionPolicy = "keep-both"  # canonical key holds other bytes: keep both and report
    mirror_deletes: MirrorDeletesPolicy = "delete"  # canonical key removed from primary: delete it from the CDN too
    # after the row points at the canonical key: delete the source key while it holds the copied bytes (with If-Match;
    # compare-then-delete where the store lacks conditional deletes), only with If-Match, or never
    retire: RetirePolicy = "delete"


@dataclass(frozen=True)
class FieldMapping:
    name: str  # "archive.PublicationSource.icon"
    table: str
    column: str
    slug_column: str
    upload_to: str  # "icons/"
    canonical: str  # "icons/{slug}{ext}", relative to location
    location: str = ""  # django-storages location, "" or "media/" or "{tenant}/"
    id_column: str = "id"
    tenant_column: str | None = None  # required when location contains {tenant}
    max_length: int = 100  # Django FileField default; checked against information_schema
    staging: tuple[str, ...] = ()  # "downloads/{slug}/*favicon*/*"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    extension_aliases: dict[str, str] = field(default_factory=dict)
    noise_tokens: tuple[str, ...] = ()
    policies: Policies = Policies()

    @property
    def tenant_scoped(self) -> bool:
        return "{tenant}" in self.location


@dataclass(frozen=True)
class Buckets:
    primary: str
    cdn: str
    fallbacks: tuple[str, ...] = ()  # read-only: never written to, never deleted from (I2)
    # the CDN fails over to the fallbacks (a QA stack's ReadOnlyFallbackBucket: docs/qa.md), so a row whose key only a
    # fallback holds is served, not a 404: `verify` reports it as served_from_fallback, not missing or repairable
    fallbacks_served: bool = False


@dataclass(frozen=True)
class StagingManifest:
    """The audit CSV of a local staging tree (`mediacanon upload DIR --manifest audit.csv`): which column holds
    the slug, which the audit verdict, and the verdicts that let a slug's files into the primary bucket."""

    slug_column: str = "slug"
    audit_column: str = "audit_status"
    accepted: tuple[str, ...] = ("passed",)  # compared case-insensitively, surrounding spaces ignored


@dataclass(frozen=True)
class MediaMap:
    buckets: Buckets
    fields: tuple[FieldMapping, ...]
    schema: str = "mediacanon"  # the project's own schema (ledger) in the Django database
    reports_prefix: str = "mediacanon-reports/"
    source: str = "<memory>"
    staging_manifest: StagingManifest = StagingManifest()

    def field(self, name: str) -> FieldMapping:
        for mapping in self.fields:
            if mapping.name == name:
                return mapping
        raise KeyError(name)


def load(path: str | Path) -> MediaMap:
    """Read and validate a media map file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "file", "does not exist", "pass --config PATH or set MEDIACANON_CONFIG") from exc
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, not UTF-8 text
        raise ConfigError(str(path), "file", f"cannot be read: {exc}", "pass the path of a readable UTF-8 YAML file") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "file", f"is not valid YAML: {exc}", "fix the YAML syntax") from exc
    return parse(data, source=str(path))


def parse(data: Any, source: str = "<memory>") -> MediaMap:
    """Validate a media map already read from YAML (a dict); every problem is reported at once."""
    v = _Validator(source)
    if not isinstance(data, dict):
        with v.part():
            v.fail("file", "must be a mapping with 'buckets' and 'fields'", "start from the sample mediamap.yaml")
        v.check()
    with v.part():
        v.known_keys("file", data, {"version", "buckets", "fields", "defaults", "schema", "reports_prefix", "staging_manifest"})
    if data.get("version", 1) != 1:
        v.soft("version", f"unsupported version {data.get('version')!r}", "set 'version: 1'")

    primary, cdn, fallbacks, fallbacks_served = "", "", tuple[str, ...](), False
    with v.part():
        buckets_data = v.mapping("buckets", data.get("buckets"))
        v.known_keys("buckets", buckets_data, {"primary", "cdn", "fallbacks", "fallbacks_served"})
        with v.part():
            primary = v.bucket("buckets.primary", buckets_data.get("primary"))
        with v.part():
            cdn = v.bucket("buckets.cdn", buckets_data.get("cdn"))
        if primary and primary == cdn:
            v.soft("buckets.cdn", "is the same bucket as buckets.primary", "give the CDN mirror its own bucket")
        fallbacks = tuple(
            v.bucket(f"buckets.fallbacks[{i}]", name)
            for i, name in enumerate(v.sequence("buckets.fallbacks", buckets_data.get("fallbacks", [])))
        )
        if primary in fallbacks or cdn in fallbacks:
            v.soft(
                "buckets.fallbacks", "lists the primary or CDN bucket", "fallbacks are read-only sources; list only other buckets"
            )
        fallbacks_served = _parse_fallbacks_served(v, buckets_data.get("fallbacks_served", False), fallbacks)

    defaults: dict[str, Any] = {}
    with v.part():
        defaults = v.mapping("defaults", data.get("defaults", {}))
        v.known_keys("defaults", defaults, {"noise_tokens", "extension_aliases", "policies", "staging", "location", "max_length"})

    schema = data.get("schema", "mediacanon")
    if not isinstance(schema, str) or not IDENTIFIER.match(schema):
        v.soft("schema", f"{schema!r} is not a valid PostgreSQL identifier", "use letters, digits and '_' (e.g. 'mediacanon')")
    reports_prefix = data.get("reports_prefix", "mediacanon-reports/")
    if not isinstance(reports_prefix, str) or not reports_prefix.endswith("/") or reports_prefix.startswith("/"):
        v.soft("reports_prefix", f"{reports_prefix!r} must be a relative prefix ending in '/'", "e.g. 'mediacanon-reports/'")

    fields: list[FieldMapping] = []
    with v.part():
        fields_data = v.sequence("fields", data.get("fields"))
        if not fields_data:
            v.fail("fields", "is empty", "add one entry per Django file field (table, column, slug_column, upload_to, canonical)")
        for i, item in enumerate(fields_data):
            with v.part():
                fields.append(_parse_field(v, i, item, defaults))
    names = [f.name for f in fields]
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        v.soft(f"fields[{name}]", "is declared twice", "give every field mapping a unique name")
    _check_prefix_overlap(v, tuple(fields))
    staging_manifest = StagingManifest()
    with v.part():
        staging_manifest = _parse_staging_manifest(v, data.get("staging_manifest", {}))
    v.check()
    return MediaMap(
        buckets=Buckets(primary=primary, cdn=cdn, fallbacks=fallbacks, fallbacks_served=fallbacks_served),
        fields=tuple(fields),
        schema=schema,
        reports_prefix=reports_prefix,
        source=source,
        staging_manifest=staging_manifest,
    )


def _parse_fallbacks_served(v: _Validator, value: Any, fallbacks: tuple[str, ...]) -> bool:
    """`buckets.fallbacks_served`: the CDN fails over to the fallback. A distribution's origin group holds two origins,
    so the stack's serves one read-only fallback (ReadOnlyFallbackBucket): the map then lists exactly that one."""
    where = "buckets.fallbacks_served"
    if not isinstance(value, bool):
        v.soft(where, f"must be true or false, got {value!r}", "write 'fallbacks_served: true' or leave it out (false)")
        return False
    if value and len(fallbacks) != 1:
        v.soft(
            where,
            f"is true with {len(fallbacks)} fallbacks; the CDN fails over to exactly one (the stack's ReadOnlyFallbackBucket)",
            "list exactly the ReadOnlyFallbackBucket under buckets.fallbacks (docs/qa.md)",
        )
    return bool(value)


def _parse_staging_manifest(v: _Validator, data: Any) -> StagingManifest:
    where = "staging_manifest"
    data = v.mapping(where, data)
    v.known_keys(where, data, {"slug_column", "audit_column", "accepted"})
    default = StagingManifest()
    columns = {}
    for key in ("slug_column", "audit_column"):
        value = data.get(key, getattr(default, key))
        if not isinstance(value, str) or not value.strip():
            v.fail(f"{where}.{key}", f"{value!r} must be a non-empty column name", "name the CSV header, e.g. 'audit_status'")
        columns[key] = value.strip()
    if columns["slug_column"] == columns["audit_column"]:
        v.fail(f"{where}.audit_column", "is the same column as slug_column", "name the column holding the audit verdict")
    accepted = tuple(a.strip() for a in v.strings(f"{where}.accepted", data.get("accepted", list(default.accepted))))
    if not accepted or not all(accepted):
        v.fail(f"{where}.accepted", "lists no verdict", "list the audit values that let a slug in, e.g. [passed, approved]")
    return StagingManifest(slug_column=columns["slug_column"], audit_column=columns["audit_column"], accepted=accepted)


FIELD_KEYS = frozenset(
    {
        "name",
        "table",
        "column",
        "slug_column",
        "id_column",
        "tenant_column",
        "upload_to",
        "canonical",
        "location",
        "max_length",
        "staging",
        "include",
        "exclude",
        "extension_aliases",
        "noise_tokens",
        "policies",
    }
)
REQUIRED_FIELD_KEYS = ("name", "table", "column", "slug_column", "upload_to", "canonical")


def _parse_field(v: _Validator, index: int, item: Any, defaults: dict[str, Any]) -> FieldMapping:
    where = f"fields[{index}]"
    item = v.mapping(where, item)
    if isinstance(item.get("name"), str):
        where = f"fields[{item['name']}]"
    v.known_keys(where, item, FIELD_KEYS)
    _check_required(v, where, item)
    for ident in ("table", "column", "slug_column", "id_column"):
        value = item.get(ident, "id")
        if not isinstance(value, str) or not IDENTIFIER.match(value):
            v.soft(
                f"{where}.{ident}",
                f"{value!r} is not a valid PostgreSQL identifier",
                "use the db_table / column name Django created",
            )
    upload_to = item["upload_to"]
    location, tenant_column = _parse_location(v, where, item, defaults)
    canonical = _parse_canonical(v, where, item["canonical"], upload_to)
    return FieldMapping(
        name=item["name"],
        table=item["table"],
        column=item["column"],
        slug_column=item["slug_column"],
        id_column=item.get("id_column", "id"),
        tenant_column=tenant_column,
        upload_to=upload_to,
        canonical=canonical,
        location=location,
        max_length=_parse_max_length(v, where, item.get("max_length", defaults.get("max_length", 100))),
        staging=_parse_staging(v, where, item.get("staging", defaults.get("staging", []))),
        include=tuple(v.strings(f"{where}.include", item.get("include", []))),
        exclude=tuple(v.strings(f"{where}.exclude", item.get("exclude", []))),
        extension_aliases=_parse_aliases(
            v, where, item.get("extension_aliases", defaults.get("extension_aliases", DEFAULT_EXTENSION_ALIASES))
        ),
        noise_tokens=tuple(
            v.strings(f"{where}.noise_tokens", item.get("noise_tokens", defaults.get("noise_tokens", list(DEFAULT_NOISE_TOKENS))))
        ),
        policies=_parse_policies(v, where, item, defaults),
    )


def _check_required(v: _Validator, where: str, item: dict[str, Any]) -> None:
    """Every required key, each a string; what follows reads them, so a missing one stops this field here."""
    missing = [r for r in REQUIRED_FIELD_KEYS if not item.get(r)]
    for required in REQUIRED_FIELD_KEYS:
        if required in missing or not isinstance(item.get(required), str):
            v.soft(f"{where}.{required}", "is missing", _REQUIRED_HELP[required])
            missing.append(required)
    if missing:
        raise _Invalid


def _upload_to_ok(upload_to: str) -> bool:
    return not (upload_to.startswith("/") or not upload_to.endswith("/") or ".." in upload_to.split("/"))


def _parse_location(v: _Validator, where: str, item: dict[str, Any], defaults: dict[str, Any]) -> tuple[str, str | None]:
    """upload_to, location (django-storages' AWS_LOCATION) and the tenant column a {tenant} location needs."""
    if not _upload_to_ok(item["upload_to"]):
        v.soft(
            f"{where}.upload_to",
            f"{item['upload_to']!r} must be a relative prefix ending in '/'",
            "copy upload_to from the model, e.g. 'icons/'",
        )
    location = item.get("location", defaults.get("location", ""))
    if not isinstance(location, str) or location.startswith("/") or (location and not location.endswith("/")):
        v.soft(
            f"{where}.location",
            f"{location!r} must be empty or a relative prefix ending in '/'",
            "copy AWS_LOCATION, e.g. 'media/' or '{tenant}/'",
        )
    _check_template(v, f"{where}.location", location, allowed={"tenant"})
    tenant_column = item.get("tenant_column")
    if "{tenant}" in location:
        if not isinstance(tenant_column, str) or not IDENTIFIER.match(tenant_column):
            v.soft(
                f"{where}.tenant_column",
                "is missing or not a valid identifier while location uses {tenant}",
                "name the column that holds the tenant, e.g. 'tenant'",
            )
    elif tenant_column is not None:
        v.soft(
            f"{where}.tenant_column", "is set but location has no {tenant} placeholder", "remove it, or set location: '{tenant}/'"
        )
    return location, tenant_column


def _parse_canonical(v: _Validator, where: str, canonical: str, upload_to: str) -> str:
    _check_template(v, f"{where}.canonical", canonical, allowed={"slug", "ext"})
    if "{slug}" not in canonical:
        v.soft(f"{where}.canonical", f"{canonical!r} does not contain {{slug}}", "e.g. 'icons/{slug}{ext}'")
    if canonical.startswith("/") or canonical.endswith("/") or any(seg in ("", ".", "..") for seg in canonical.split("/")):
        v.soft(
            f"{where}.canonical",
            f"{canonical!r} must be a relative object name with no '', '.' or '..' segment",
            "e.g. 'icons/{slug}{ext}'",
        )
    if _upload_to_ok(upload_to) and not canonical.startswith(upload_to):
        v.soft(
            f"{where}.canonical",
            f"{canonical!r} is outside upload_to {upload_to!r}",
            "keep canonical keys under upload_to so Django's storage finds them",
        )
    return canonical


def _parse_max_length(v: _Validator, where: str, max_length: Any) -> Any:
    if not isinstance(max_length, int) or isinstance(max_length, bool) or not 1 <= max_length <= 1024:
        v.soft(
            f"{where}.max_length",
            f"{max_length!r} must be an integer from 1 to 1024",
            "use the FileField's max_length (Django's default is 100)",
        )
    return max_length


def _parse_staging(v: _Validator, where: str, data: Any) -> tuple[str, ...]:
    staging = tuple(v.strings(f"{where}.staging", data))
    for i, pattern in enumerate(staging):
        _check_template(v, f"{where}.staging[{i}]", pattern, allowed={"slug"})
        if pattern.count("{slug}") != 1:
            v.soft(
                f"{where}.staging[{i}]", f"{pattern!r} must contain {{slug}} exactly once", "e.g. 'downloads/{slug}/*favicon*/*'"
            )
    return staging


def _parse_aliases(v: _Validator, where: str, data: Any) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for src, dst in v.mapping(f"{where}.extension_aliases", data).items():
        if not (isinstance(src, str) and isinstance(dst, str) and src.startswith(".") and dst.startswith(".")):
            v.soft(f"{where}.extension_aliases", f"{src!r}: {dst!r} must map '.ext' to '.ext'", "e.g. '.jpeg': '.jpg'")
        aliases[src.lower()] = dst.lower()
    return aliases


def _parse_policies(v: _Validator, where: str, item: dict[str, Any], defaults: dict[str, Any]) -> Policies:
    policies_data = dict(v.mapping("defaults.policies", defaults.get("policies", {})))
    policies_data.update(v.mapping(f"{where}.policies", item.get("policies", {})))
    v.known_keys(f"{where}.policies", policies_data, {"collision", "mirror_deletes", "retire"})
    allowed_by_key: dict[str, tuple[str, ...]] = {
        "collision": COLLISION_POLICIES,
        "mirror_deletes": MIRROR_DELETE_POLICIES,
        "retire": RETIRE_POLICIES,
    }
    for key, allowed in allowed_by_key.items():
        if key in policies_data and policies_data[key] not in allowed:
            v.soft(
                f"{where}.policies.{key}", f"{policies_data[key]!r} is not a known policy", f"use one of: {', '.join(allowed)}"
            )
    return Policies(**policies_data)


def _check_template(v: _Validator, where: str, template: str, allowed: set[str]) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        v.fail(where, f"{template!r} is not a valid template: {exc}", "use {slug}, {ext} or {tenant} placeholders")
    unknown = names - allowed
    if unknown:
        v.fail(where, f"{template!r} uses unknown placeholder(s) {sorted(unknown)}", f"allowed here: {sorted(allowed)}")


def _check_prefix_overlap(v: _Validator, fields: tuple[FieldMapping, ...]) -> None:
    """Two fields that can claim the same key are an error naming both: the same location and upload_to (nested
    prefixes are fine: the longer one wins), and no include patterns to tell their keys apart."""
    for i, a in enumerate(fields):
        for b in fields[i + 1 :]:
            if a.name == b.name or a.location != b.location or a.upload_to != b.upload_to or a.include or b.include:
                continue
            v.soft(
                f"fields[{a.name}]",
                f"shares upload_to {a.upload_to!r} with {b.name} and neither has include patterns: both would claim "
                "every key under it",
                "give each field its own upload_to, or include globs that tell them apart",
            )


_REQUIRED_HELP = {
    "name": "name it app_label.Model.field, e.g. 'archive.PublicationSource.icon'",
    "table": "the model's db_table, e.g. 'archive_publicationsource'",
    "column": "the file field's column, e.g. 'icon'",
    "slug_column": "the column holding the slug the canonical name is built from, e.g. 'slug'",
    "upload_to": "the field's upload_to, e.g. 'icons/'",
    "canonical": "the canonical template, e.g. 'icons/{slug}{ext}'",
}


class _Invalid(Exception):
    """Ends the part of the map being read; its problem is already recorded."""


class _Validator:
    """Collects every problem of a map: `fail` records one and ends the part being read (a field, a section), `soft`
    records one and reads on; `check` raises them all at once (ConfigErrors), one as it is (ConfigError)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[ConfigError] = []

    def soft(self, where: str, problem: str, fix: str) -> None:
        self.errors.append(ConfigError(self.source, where, problem, fix))

    def fail(self, where: str, problem: str, fix: str) -> NoReturn:
        self.soft(where, problem, fix)
        raise _Invalid

    @contextmanager
    def part(self) -> Iterator[None]:
        with suppress(_Invalid):
            yield

    def check(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)

    def mapping(self, where: str, value: Any) -> dict[str, Any]:
        if value is None:
            self.fail(where, "is missing", f"add a '{where.split('.')[-1]}:' mapping")
        if not isinstance(value, dict):
            self.fail(where, f"must be a mapping, got {type(value).__name__}", "indent its keys under it")
        return value

    def sequence(self, where: str, value: Any) -> list[Any]:
        if value is None:
            self.fail(where, "is missing", f"add a '{where.split('.')[-1]}:' list")
        if not isinstance(value, list):
            self.fail(where, f"must be a list, got {type(value).__name__}", "write one '- item' per line")
        return value

    def strings(self, where: str, value: Any) -> list[str]:
        items = self.sequence(where, value)
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item:
                self.fail(f"{where}[{i}]", f"must be a non-empty string, got {item!r}", "quote the value")
        return items

    def bucket(self, where: str, value: Any) -> str:
        if value is None:
            self.fail(where, "is missing", "name the bucket, e.g. 'archive-cdn'")
        if not isinstance(value, str) or not BUCKET_NAME.match(value):
            self.fail(where, f"{value!r} is not a valid S3 bucket name", "3-63 lower-case letters, digits, '.' or '-'")
        return value

    def known_keys(self, where: str, data: dict[str, Any], known: AbstractSet[str]) -> None:
        for key in data:
            if key not in known:
                self.fail(
                    f"{where}.{key}" if where != "file" else str(key),
                    "is not a known setting",
                    f"remove it or use one of: {', '.join(sorted(known))}",
                )
