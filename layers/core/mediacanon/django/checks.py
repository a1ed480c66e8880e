"""Django system checks of the `mediacanon.django` app: each setting that fights mediacanon, with the fix.

They read the media map (``MEDIACANON_CONFIG``, as canonical_upload_to does) and, for each field it maps, the model's
field and its actual storage (``field.storage``: a STORAGES alias, a ``storage=`` instance, the default), the way
django-storages configured it (STORAGES OPTIONS, then a subclass's attribute, then the AWS_* settings, then its
defaults). Storages other than django-storages' S3Storage are not checked: mediacanon manages S3 only.

- mediacanon.E001: the media map is missing or invalid;
- mediacanon.E002: a field of the map names no model field (app_label.Model.field of a FileField or ImageField);
- mediacanon.E003: the map's table, column, slug_column or tenant_column is not the model's;
- mediacanon.W001: an ACL is set (default_acl, or ACL in object_parameters);
- mediacanon.W002: query-string auth on a CDN domain (querystring_auth while custom_domain is set);
- mediacanon.W003: file_overwrite disagrees with the field's collision policy: ``overwrite`` wants
  file_overwrite True; ``keep-both`` and ``fail`` want it False (Django never writes over bytes a key holds; a taken
  name gets Django's suffix, and mediacanon applies the policy when it renames);
- mediacanon.W004: the storage's location is not the map's location for the field (tenant-scoped fields are not
  compared: their location is the tenant's, which the storage gives at run time);
- mediacanon.W005: the storage's bucket is not the map's primary bucket;
- mediacanon.W006: the field's upload_to puts files outside the map's upload_to (or canonical_upload_to names
  another field).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db.models import FileField
from django.utils.functional import LazyObject, empty

from mediacanon.core.errors import ConfigError
from mediacanon.core.mediamap import FieldMapping, MediaMap
from mediacanon.django.upload_to import CanonicalUploadTo, canonical_upload_to, config_path, read_media_map

TAG = "mediacanon"
AWS_SETTINGS = {
    "default_acl": "AWS_DEFAULT_ACL",
    "object_parameters": "AWS_S3_OBJECT_PARAMETERS",
    "querystring_auth": "AWS_QUERYSTRING_AUTH",
    "custom_domain": "AWS_S3_CUSTOM_DOMAIN",
    "file_overwrite": "AWS_S3_FILE_OVERWRITE",
    "location": "AWS_LOCATION",
    "bucket_name": "AWS_STORAGE_BUCKET_NAME",
}
Messages = list[checks.CheckMessage]


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> Messages:
    """Every mediacanon check (registered by MediacanonConfig.ready under the tag 'mediacanon')."""
    path, named_by = config_path()
    try:
        media_map = read_media_map(path)
    except ConfigError as exc:
        return [
            checks.Error(
                f"mediacanon's media map {str(path)!r} (named by {named_by}) cannot be used: {exc}",
                hint="set MEDIACANON_CONFIG in the settings to the path of a valid media map; "
                "`mediacanon check-config --config PATH` lists every problem",
                id="mediacanon.E001",
            )
        ]
    messages: Messages = []
    fields: list[tuple[FieldMapping, Any]] = []
    for mapping in media_map.fields:
        found = _model_field(media_map, mapping, messages)
        if found is None or (app_configs is not None and found.model._meta.app_config not in app_configs):
            continue
        fields.append((mapping, found))
        messages.extend(_upload_to(media_map, mapping, found))
    by_storage: dict[int, tuple[_Storage, list[tuple[FieldMapping, Any]]]] = {}
    for mapping, f in fields:
        storage = _Storage.of(f)
        if storage.s3:
            by_storage.setdefault(id(storage.obj), (storage, []))[1].append((mapping, f))
    for storage, used_by in by_storage.values():
        messages.extend(_storage_checks(media_map, storage, [m.name for m, _ in used_by]))
        for mapping, f in used_by:
            messages.extend(_overwrite(media_map, storage, mapping, f))
            messages.extend(_location(media_map, storage, mapping, f))
    return messages


def _model_field(media_map: MediaMap, mapping: FieldMapping, messages: Messages) -> Any:
    """The model field the mapping names, or None with an E002/E003 in `messages`."""
    from django.apps import apps

    def flag(problem: str) -> None:
        messages.append(
            checks.Error(
                f"the media map {media_map.source} maps field {mapping.name!r}, but {problem}",
                hint=f"name it app_label.Model.field of a FileField or ImageField of an installed app (`mediacanon init` "
                f"writes the entries from the models), or remove fields[{mapping.name}] from {media_map.source}",
                id="mediacanon.E002",
            )
        )

    parts = mapping.name.split(".")
    if len(parts) != 3:
        flag("that name is not app_label.Model.field")
        return None
    try:
        model = apps.get_model(parts[0], parts[1])
    except LookupError:
        flag(f"no installed app has a model {parts[0]}.{parts[1]}")
        return None
    try:
        f = model._meta.get_field(parts[2])
    except FieldDoesNotExist:
        flag(f"{model._meta.label} has no field {parts[2]!r}")
        return None
    if not isinstance(f, FileField):
        flag(f"{model._meta.label}.{f.name} is a {type(f).__name__}, not a FileField or ImageField")
        return None
    columns = {c.column for c in model._meta.concrete_fields}
    wrong = [
        f"table is {mapping.table!r}, the model's db_table {model._meta.db_table!r}"
        if mapping.table != model._meta.db_table
        else "",
        f"column is {mapping.column!r}, the field's column {f.column!r}" if mapping.column != f.column else "",
        f"slug_column {mapping.slug_column!r} is no column of the model" if mapping.slug_column not in columns else "",
        f"tenant_column {mapping.tenant_column!r} is no column of the model"
        if mapping.tenant_column is not None and mapping.tenant_column not in columns
        else "",
    ]
    if any(wrong):
        messages.append(
            checks.Error(
                f"the media map {media_map.source} maps {mapping.name}, but its " + "; ".join(w for w in wrong if w),
                hint=f"copy them from the model into fields[{mapping.name}] (mediacanon reads and updates that table and column)",
                obj=f,
                id="mediacanon.E003",
            )
        )
    return f


def _upload_to(media_map: MediaMap, mapping: FieldMapping, f: Any) -> Messages:
    upload_to = f.upload_to
    fix = f"use upload_to=canonical_upload_to({mapping.name!r}) (new files then arrive under their canonical key)"
    if isinstance(upload_to, CanonicalUploadTo):
        if upload_to.name == mapping.name:
            return []
        message = f"upload_to is canonical_upload_to({upload_to.name!r}), but the media map maps this field as {mapping.name!r}"
        return [checks.Warning(message, hint=fix, obj=f, id="mediacanon.W006")]
    if upload_to is canonical_upload_to or not isinstance(upload_to, str):  # another callable: nothing to compare
        return []
    prefix = upload_to.lstrip("/")
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    if prefix.startswith(mapping.upload_to):
        return []
    message = (
        f"upload_to is {upload_to!r}, but the media map's upload_to for {mapping.name} is {mapping.upload_to!r}: new "
        "files land outside the prefix mediacanon watches for this field"
    )
    hint = f"{fix}, or set upload_to: {prefix!r} (and canonical under it) for {mapping.name} in {media_map.source}"
    return [checks.Warning(message, hint=hint, obj=f, id="mediacanon.W006")]


class _Storage:
    """A mapped field's storage: the object, its STORAGES alias, and which setting gave each of its values."""

    def __init__(self, obj: Any, alias: str | None, s3: bool) -> None:
        self.obj, self.alias, self.s3 = obj, alias, s3
        self.label = f"STORAGES[{alias!r}]" if alias is not None else f"the {type(obj).__qualname__} given as storage="

    @classmethod
    def of(cls, f: Any) -> _Storage:
        from django.core.files.storage import storages

        obj = f.storage
        if isinstance(obj, LazyObject):  # default_storage
            if obj._wrapped is empty:
                obj._setup()
            obj = obj._wrapped
        alias = None
        for name in getattr(settings, "STORAGES", {}):
            try:
                if storages[name] is obj:
                    alias = name
                    break
            except Exception:  # noqa: S112 - a backend that cannot be built is not this field's storage
                continue
        try:
            from storages.backends.s3 import S3Storage
        except ImportError:  # no django-storages: no S3 storage
            return cls(obj, alias, False)
        return cls(obj, alias, isinstance(obj, S3Storage))

    def setting(self, attr: str) -> tuple[str, str]:
        """(where the value of `attr` comes from, the setting to change): the STORAGES OPTIONS, a subclass's
        attribute, the AWS_* setting, or django-storages' default."""
        from storages.backends.s3 import S3Storage

        if self.alias is not None and attr in settings.STORAGES[self.alias].get("OPTIONS", {}):
            where = f"STORAGES[{self.alias!r}]['OPTIONS'][{attr!r}]"
            return where, where
        for klass in type(self.obj).__mro__:
            if klass is S3Storage:
                break
            if attr in vars(klass):
                where = f"{klass.__module__}.{klass.__qualname__}.{attr}"
                return where, where
        name = AWS_SETTINGS[attr]
        if self.alias is None:
            return f"{name} (or the storage's {attr}=)", f"{name} (or the storage's {attr}=)"
        if hasattr(settings, name):
            return name, name
        return f"{name} (not set: django-storages' default)", name

    def value(self, attr: str) -> Any:
        return getattr(self.obj, attr, None)


def _fields(names: Iterable[str]) -> str:
    return ", ".join(names)


def _storage_checks(media_map: MediaMap, storage: _Storage, names: list[str]) -> Messages:
    """The storage-wide checks (W001, W002, W005), once per storage, naming the mapped fields that use it."""
    out: Messages = []
    used = f"{storage.label}, the storage of {_fields(names)}"
    acl = storage.value("default_acl")
    if acl:
        where, to_set = storage.setting("default_acl")
        out.append(
            checks.Warning(
                f"{where} is {acl!r} ({used}): buckets with ACLs disabled (Object Ownership 'bucket owner enforced', "
                "as the stack's) reject every upload that sets an ACL, and mediacanon's copies (canonical keys, the CDN "
                "mirror) never carry one",
                hint=f"set {to_set} = None: access comes from the buckets' policies (the CDN reads through its origin "
                "access control)",
                id="mediacanon.W001",
            )
        )
    params_acl = (storage.value("object_parameters") or {}).get("ACL")
    if params_acl:
        where, to_set = storage.setting("object_parameters")
        out.append(
            checks.Warning(
                f"{where} sets ACL {params_acl!r} ({used}): buckets with ACLs disabled reject it, and mediacanon's "
                "copies never carry one",
                hint=f"remove 'ACL' from {to_set}: access comes from the buckets' policies",
                id="mediacanon.W001",
            )
        )
    domain = storage.value("custom_domain")
    if storage.value("querystring_auth") and domain:
        where, to_set = storage.setting("querystring_auth")
        domain_where, _ = storage.setting("custom_domain")
        out.append(
            checks.Warning(
                f"{where} is True while {domain_where} is {domain!r} ({used}): URLs on the CDN's domain are never "
                "S3-signed, and CloudFront-signed ones (AWS_CLOUDFRONT_KEY_ID) expire, are valid only where the "
                "distribution trusts that key and defeat the caching of pages that hold them",
                hint=f"set {to_set} = False: media behind the CDN is served by plain, cacheable URLs",
                id="mediacanon.W002",
            )
        )
    bucket = storage.value("bucket_name")
    if bucket != media_map.buckets.primary:
        where, to_set = storage.setting("bucket_name")
        out.append(
            checks.Warning(
                f"{where} is {bucket!r} ({used}), but the media map's primary bucket is {media_map.buckets.primary!r}: "
                "mediacanon watches and names the primary bucket only",
                hint=f"set {to_set} = {media_map.buckets.primary!r}, or buckets.primary: {bucket!r} in {media_map.source}",
                id="mediacanon.W005",
            )
        )
    return out


def _overwrite(media_map: MediaMap, storage: _Storage, mapping: FieldMapping, f: Any) -> Messages:
    """W003: file_overwrite True goes with collision 'overwrite'; False with 'keep-both' and 'fail'."""
    policy = mapping.policies.collision
    overwrite = bool(storage.value("file_overwrite"))
    if overwrite == (policy == "overwrite"):
        return []
    where, to_set = storage.setting("file_overwrite")
    if overwrite:
        kept = "keep beside it and report" if policy == "keep-both" else "refuse to replace"
        message = (
            f"{where} is True ({storage.label}), but the media map's collision policy for {mapping.name} is {policy!r}: "
            f"Django writes a new file over whatever its name holds (with canonical_upload_to, straight onto the "
            f"canonical key), bytes mediacanon would {kept}"
        )
        hint = (
            f"set {to_set} = False (a taken name then gets Django's suffix and mediacanon applies {policy!r} when it "
            f"renames), or policies.collision: overwrite for {mapping.name} in {media_map.source}"
        )
    else:
        message = (
            f"{where} is False ({storage.label}), but the media map's collision policy for {mapping.name} is "
            "'overwrite': a file saved under a taken name gets Django's random suffix, which the live path then copies "
            "over the canonical key anyway (a copy and a delete for every re-upload)"
        )
        hint = f"set {to_set} = True, or policies.collision: keep-both for {mapping.name} in {media_map.source}"
    return [checks.Warning(message, hint=hint, obj=f, id="mediacanon.W003")]


def _location(media_map: MediaMap, storage: _Storage, mapping: FieldMapping, f: Any) -> Messages:
    """W004: the keys Django writes (location + name) must be the keys the map's location describes."""
    if mapping.tenant_scoped:  # the tenant's prefix is the storage's at run time: nothing fixed to compare
        return []
    raw = str(storage.value("location") or "")
    location = raw.strip("/") + "/" if raw.strip("/") else ""
    if location == mapping.location:
        return []
    where, to_set = storage.setting("location")
    message = (
        f"{where} is {raw!r} ({storage.label}), but the media map's location for {mapping.name} is "
        f"{mapping.location!r}: Django writes {location + mapping.upload_to}..., mediacanon watches "
        f"{mapping.location + mapping.upload_to}..."
    )
    hint = f"set {to_set} = {mapping.location.rstrip('/')!r}, or location: {location!r} for {mapping.name} in {media_map.source}"
    return [checks.Warning(message, hint=hint, obj=f, id="mediacanon.W004")]
