"""`mediacanon init`: the media map written from a Django project's models.

Three steps, the first the only one that touches Django:

1. `walk(apps)`: every model's FileField and ImageField, read into plain `FieldInfo` data (table, column, upload_to,
   max_length, the slug column, the storage's bucket, location and custom_domain); nothing is called that could
   do harm (a callable upload_to is named, never called; no database connection, no S3 request);
2. `build(infos)`: the media map as data, with the comments that explain each value init could not read (the
   gaps): the primary bucket is the one most fields write to, fields on another bucket are written commented out;
3. `render(draft)`: the commented YAML text, which `mediamap.parse` accepts.

Placeholders hold `gaps.MARKER`, so `mediacanon check-config` finds and reports them in the parsed map.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mediacanon.core.gaps import MARKER

IMAGE_PATTERNS = ("*.png", "*.jpg", "*.jpeg", "*.gif", "*.webp", "*.svg", "*.ico", "*.avif", "*.bmp", "*.tif", "*.tiff")
MAX_LENGTH_LIMIT = 1024  # the media map's bound (mediamap._parse_max_length)
BUCKET_PLACEHOLDER = f"{MARKER.lower()}-primary-bucket"


@dataclass(frozen=True)
class StorageInfo:
    """A field's storage as django-storages configured it."""

    label: str  # "STORAGES['documents']", "ledger.storage.documents_storage() -> STORAGES['documents']", a class
    backend: str  # "storages.backends.s3.S3Storage"
    s3: bool
    bucket: str | None = None  # bucket_name (AWS_STORAGE_BUCKET_NAME or OPTIONS)
    location: str = ""  # normalized: "" or "media/"
    custom_domain: str | None = None  # AWS_S3_CUSTOM_DOMAIN: where a CDN serves the files


@dataclass(frozen=True)
class FieldInfo:
    """What `walk` reads off one Django file field: plain data, so `build` is testable without Django."""

    name: str  # "archive.PublicationSource.icon"
    table: str
    column: str
    db_column: bool  # the column comes from db_column=
    id_column: str
    slug_column: str | None  # a unique SlugField's column (one named 'slug' preferred), else None
    upload_to: str | None  # the string as the model gives it; None when a callable
    upload_to_callable: str | None  # "module.qualname" of a callable upload_to
    max_length: int
    image: bool  # an ImageField
    storage: StorageInfo
    extensions: tuple[str, ...] = ()  # FileExtensionValidator's allowed_extensions
    slug_hint: str | None = None  # why no slug column was chosen though a SlugField exists


@dataclass
class FieldDraft:
    name: str
    values: dict[str, Any]  # the entry's keys, in the order written
    notes: dict[str, list[str]] = field(default_factory=dict)  # comment lines above a key
    header: list[str] = field(default_factory=list)  # comment lines above the entry
    enabled: bool = True  # False: written commented out (its storage writes to another bucket)


@dataclass
class MapDraft:
    primary: str
    cdn: str
    fields: list[FieldDraft]
    header: list[str] = field(default_factory=list)
    primary_notes: list[str] = field(default_factory=list)
    cdn_notes: list[str] = field(default_factory=list)

    @property
    def enabled(self) -> list[FieldDraft]:
        return [f for f in self.fields if f.enabled]


# -- 1. the walk (Django) ----------------------------------------------------------------------------------------


def walk(apps: Any) -> list[FieldInfo]:
    """Every concrete model's own FileField/ImageField (ImageField is a FileField), in app and model order."""
    from django.db import models

    infos: list[FieldInfo] = []
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or meta.swapped:
            continue  # a proxy shares its concrete model's table, which is walked on its own
        for f in meta.get_fields():
            if isinstance(f, models.FileField) and f.model is model:
                infos.append(read_field(model, f))
    return infos


def read_field(model: Any, f: Any) -> FieldInfo:
    from django.core.validators import FileExtensionValidator
    from django.db import models

    meta = model._meta
    slug_column, slug_hint = _slug_column(model)
    upload_to = f.upload_to
    extensions: list[str] = []
    for validator in f.validators:
        if isinstance(validator, FileExtensionValidator) and validator.allowed_extensions:
            extensions.extend(str(e).lower().lstrip(".") for e in validator.allowed_extensions)
    return FieldInfo(
        name=f"{meta.app_label}.{meta.object_name}.{f.name}",
        table=meta.db_table,
        column=f.column,
        db_column=f.db_column is not None,
        id_column=meta.pk.column,
        slug_column=slug_column,
        slug_hint=slug_hint,
        upload_to=upload_to if isinstance(upload_to, str) else None,
        upload_to_callable=None if isinstance(upload_to, str) else _qualified_name(upload_to),
        max_length=int(f.max_length or 100),
        image=isinstance(f, models.ImageField),
        storage=read_storage(f),
        extensions=tuple(extensions),
    )


def _slug_column(model: Any) -> tuple[str | None, str | None]:
    """A unique SlugField's column, the one named 'slug' first; else None and, when a SlugField is unique only
    together with other fields (a UniqueConstraint, unique_together), a hint naming them."""
    from django.db import models

    meta = model._meta
    slugs = [f for f in meta.get_fields() if isinstance(f, models.SlugField) and f.model is model]
    unique = sorted((f for f in slugs if f.unique), key=lambda f: f.name != "slug")
    if unique:
        return unique[0].column, None
    groups: list[tuple[str, ...]] = [tuple(g) for g in meta.unique_together]
    groups += [tuple(c.fields) for c in meta.constraints if isinstance(c, models.UniqueConstraint) and c.fields]
    for slug in slugs:
        for group in groups:
            if slug.name in group and len(group) > 1:
                others = ", ".join(n for n in group if n != slug.name)
                return None, (
                    f"the SlugField '{slug.name}' is unique only together with {others}: if each {others} has its own "
                    f"storage location, set location: '{{tenant}}/', tenant_column: {others} and slug_column: {slug.column}"
                )
    if slugs:
        return None, f"the SlugField '{slugs[0].name}' is not unique: make it unique=True to name keys by it"
    return None, None


def read_storage(f: Any) -> StorageInfo:
    """The field's storage (the STORAGES alias, a `storage=` instance or callable, the default), read without
    connecting anywhere: django-storages keeps its settings (bucket_name, location, custom_domain) as attributes."""
    storage = f.storage
    backend = f"{type(storage).__module__}.{type(storage).__qualname__}"
    if type(storage).__name__ == "DefaultStorage":  # the LazyObject: its class is the wrapped storage's
        backend = f"{storage.__class__.__module__}.{storage.__class__.__qualname__}"
    label = _storage_alias(storage)
    storage_callable = getattr(f, "_storage_callable", None)
    if storage_callable is not None:
        label = f"{_qualified_name(storage_callable)}() -> {label}"
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages missing: no S3 storage can be configured
        return StorageInfo(label=label, backend=backend, s3=False)
    if not isinstance(storage, S3Storage):
        return StorageInfo(label=label, backend=backend, s3=False)
    bucket = getattr(storage, "bucket_name", None)
    location = str(getattr(storage, "location", "") or "").strip("/")
    domain = getattr(storage, "custom_domain", None)
    return StorageInfo(
        label=label,
        backend=backend,
        s3=True,
        bucket=str(bucket) if bucket else None,
        location=f"{location}/" if location else "",
        custom_domain=str(domain) if domain else None,
    )


def _storage_alias(storage: Any) -> str:
    from django.conf import settings
    from django.core.files.storage import default_storage, storages

    if storage is default_storage:
        return "STORAGES['default']"
    for alias in getattr(settings, "STORAGES", {}):
        try:
            if storages[alias] is storage:
                return f"STORAGES[{alias!r}]"
        except Exception:  # noqa: S112 - a backend that cannot be built is not this field's storage
            continue
    cls = storage.__class__
    return f"a {cls.__module__}.{cls.__qualname__} instance"


def _qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}"


# -- 2. the map as data (pure) -----------------------------------------------------------------------------------


def build(infos: Sequence[FieldInfo], settings_module: str = "") -> MapDraft:
    """The media map of these fields, with a comment on each value init could not read."""
    s3_buckets = Counter(i.storage.bucket or BUCKET_PLACEHOLDER for i in infos if i.storage.s3)
    primary = s3_buckets.most_common(1)[0][0] if s3_buckets else BUCKET_PLACEHOLDER
    drafts = [_field_draft(info, primary) for info in infos]
    _placeholder_includes(drafts)
    draft = MapDraft(primary=primary, cdn=_cdn_placeholder(primary), fields=drafts)
    draft.header = [
        f"The media map of the Django project {settings_module or '(settings)'}, written by `mediacanon init`.",
        "One entry per FileField/ImageField. Values init could not read off the project are placeholders holding "
        f"{MARKER}, or choices explained by a 'GAP:' comment; `mediacanon check-config --config FILE` lists each gap "
        "with its fix.",
        "Reference: docs/mediamap.md. Staging patterns, noise tokens and policies keep their defaults here.",
    ]
    if primary == BUCKET_PLACEHOLDER:
        draft.primary_notes.append("GAP: no field is on a django-storages S3Storage: name the bucket Django will write to")
    else:
        draft.primary_notes.append("the bucket the fields' S3Storage writes to (bucket_name / AWS_STORAGE_BUCKET_NAME)")
    others = sorted(b for b in s3_buckets if b != primary)
    if others:
        draft.primary_notes.append(
            f"GAP: other fields write to {', '.join(others)}: a media map has one primary bucket, so their entries are "
            "commented out below (give each bucket its own stack and media map)"
        )
    domains = sorted({i.storage.custom_domain for i in infos if i.storage.custom_domain and i.storage.bucket == primary})
    draft.cdn_notes.append(
        "GAP: the bucket the CDN serves is not known from Django: replace this placeholder with it (the stack's CdnBucketName)"
    )
    if domains:
        draft.cdn_notes.append(f"the CDN domain Django links to (custom_domain): {', '.join(domains)}")
    else:
        draft.cdn_notes.append("no custom_domain in the storage settings: Django links to the bucket itself")
    return draft


def _cdn_placeholder(primary: str) -> str:
    suffix = f"-cdn-{MARKER.lower()}"
    return primary[: 63 - len(suffix)].rstrip(".-") + suffix


def _field_draft(info: FieldInfo, primary: str) -> FieldDraft:
    draft = FieldDraft(name=info.name, values={"name": info.name, "table": info.table, "column": info.column})
    if info.db_column:
        draft.notes["column"] = [f"db_column of {info.name.rsplit('.', 1)[1]}"]
    _slug(draft, info)
    storage = info.storage
    draft.values["location"] = storage.location
    draft.notes["location"] = [
        f"storage: {storage.label}" + ("" if storage.backend in storage.label else f" ({storage.backend})")
    ]
    if storage.s3 and storage.bucket != primary:
        draft.enabled = False
        draft.header.append(
            f"GAP: {info.name} writes to bucket {storage.bucket or '(no bucket_name)'}, not the primary {primary}: left "
            "out (commented); it belongs in that bucket's own media map"
        )
    elif not storage.s3:
        draft.notes["location"].append(
            "GAP: not an S3 storage: mediacanon manages S3 only; move the field to django-storages' S3Storage "
            "(`mediacanon upload --from-media-root` uploads its files), then check location"
        )
    upload_to = _upload_to(draft, info)
    draft.values["upload_to"] = upload_to
    draft.values["canonical"] = f"{upload_to}{{slug}}{{ext}}"
    max_length = info.max_length
    if not 1 <= max_length <= MAX_LENGTH_LIMIT:
        draft.notes["max_length"] = [f"the model says {max_length}; the media map allows 1-{MAX_LENGTH_LIMIT}"]
        max_length = min(max(max_length, 1), MAX_LENGTH_LIMIT)
    draft.values["max_length"] = max_length
    if info.extensions:
        draft.values["include"] = [f"*.{e}" for e in dict.fromkeys(info.extensions)]
        draft.notes["include"] = ["the field's FileExtensionValidator"]
    elif info.image:
        draft.values["include"] = list(IMAGE_PATTERNS)
        draft.notes["include"] = ["an ImageField: image files only (edit to taste)"]
    return draft


def _slug(draft: FieldDraft, info: FieldInfo) -> None:
    if info.slug_column is not None:
        draft.values["slug_column"] = info.slug_column
    else:
        draft.values["slug_column"] = info.id_column
        model = info.name.rsplit(".", 1)[0]
        draft.notes["slug_column"] = [
            f"GAP: no unique SlugField on {model}: canonical keys are named by row id "
            "(fix: add a unique SlugField and set slug_column)"
        ]
        if info.slug_hint:
            draft.notes["slug_column"].append(info.slug_hint)
    if info.id_column != "id":
        draft.values["id_column"] = info.id_column


def _upload_to(draft: FieldDraft, info: FieldInfo) -> str:
    """The field's upload_to as the media map wants it (a relative prefix ending in '/'), a comment on what changed."""
    placeholder = f"{MARKER}-{_safe(info.name)}/"
    if info.upload_to is None:
        draft.notes["upload_to"] = [
            f"GAP: upload_to is the callable {info.upload_to_callable}; init does not call it. Fill in the prefix it "
            "returns (the folders before the file name) here and in canonical"
        ]
        return placeholder
    raw = info.upload_to
    prefix = raw.lstrip("/")
    if "%" in prefix:
        fixed = prefix[: prefix.index("%")]
        fixed = fixed[: fixed.rfind("/") + 1]
        if not fixed:
            draft.notes["upload_to"] = [
                f"GAP: upload_to is {raw!r}, a strftime pattern with no fixed prefix: fill in a prefix for its files"
            ]
            return placeholder
        draft.notes["upload_to"] = [
            f"GAP: upload_to is {raw!r}, a strftime pattern: files sit in dated folders under {fixed!r}; the canonical",
            f"keys below leave the dates out ({fixed}{{slug}}{{ext}}): keep that, or choose another template",
        ]
        return fixed
    if not prefix.strip("/"):
        draft.notes["upload_to"] = [
            "GAP: upload_to is empty (files at the storage root): the media map needs a prefix; fill one in"
        ]
        return placeholder
    if not prefix.endswith("/"):
        draft.notes["upload_to"] = [f"the model's upload_to is {raw!r}: Django stores under {prefix}/"]
        prefix += "/"
    return prefix


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text)


def _placeholder_includes(drafts: Iterable[FieldDraft]) -> None:
    """Two entries with the same location and upload_to and no include patterns would both claim every key there
    (mediamap refuses that): each gets a placeholder include and a comment naming the others."""
    groups: dict[tuple[str, str], list[FieldDraft]] = {}
    for d in drafts:
        if d.enabled:
            groups.setdefault((d.values["location"], d.values["upload_to"]), []).append(d)
    for (location, upload_to), members in groups.items():
        bare = [d for d in members if "include" not in d.values]
        if len(bare) < 2:
            continue
        for d in bare:
            others = ", ".join(o.name for o in members if o is not d)
            d.values["include"] = [f"{MARKER}-{_safe(d.name)}-*"]
            d.notes["include"] = [
                f"GAP: shares location {location!r} and upload_to {upload_to!r} with {others}: write globs that tell "
                "their keys apart (e.g. '*.pdf'), or give each its own upload_to"
            ]


# -- 3. YAML (pure) ----------------------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}


def scalar(value: Any) -> str:
    """A YAML scalar or flow list: plain when unambiguous, else JSON (a YAML subset)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _comment(lines: Iterable[str], indent: str, width: int = 118) -> list[str]:
    """Comment lines, wrapped at `width` (a long path or pattern stays whole)."""
    out: list[str] = []
    for text in lines:
        for line in text.splitlines() or [""]:
            wrapped = textwrap.wrap(line, width - len(indent) - 2, break_long_words=False, break_on_hyphens=False)
            out += [f"{indent}# {part}".rstrip() for part in wrapped or [""]]
    return out


def render(draft: MapDraft) -> str:
    out = _comment(draft.header, "")
    out.append("version: 1")
    out.append("buckets:")
    out += _comment(draft.primary_notes, "  ")
    out.append(f"  primary: {scalar(draft.primary)}")
    out += _comment(draft.cdn_notes, "  ")
    out.append(f"  cdn: {scalar(draft.cdn)}")
    out.append("  # fallbacks: [legacy-bucket]   read-only buckets files are copied out of, if any")
    out.append("fields:")
    for f in draft.fields:
        out += ["", *_comment(f.header, "  ")]
        entry: list[str] = []
        for i, (key, value) in enumerate(f.values.items()):
            lead = "- " if i == 0 else "  "
            entry += _comment(f.notes.get(key, []), "    ")
            entry.append(f"  {lead}{key}: {scalar(value)}")
        out += entry if f.enabled else [_disable(line) for line in entry]
    return "\n".join(out) + "\n"


def _disable(line: str) -> str:
    if line.lstrip().startswith("#"):
        return line
    return "  # " + line[2:]
