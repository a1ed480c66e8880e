"""`canonical_upload_to`: an ``upload_to`` that names a new upload by its canonical key, from the media map.

Two forms, both serializable by Django's migrations::

    icon = models.ImageField(upload_to=canonical_upload_to("archive.PublicationSource.icon"))  # names its field
    icon = models.ImageField(upload_to=canonical_upload_to)  # finds it: the model's one field using this form

The name is what mediacanon's own naming core gives the row (``naming.canonical_key_for_row``: the field's
``canonical`` template filled from the row's slug and the file's extension, aliases applied), relative to the
storage's location as Django's names are; the live path then only mirrors and links the file (no rename). A row
whose slug is still empty at save time gets ``upload_to + filename`` (a log warning says so), and the live path
renames it as it renames any other upload.

The media map is read from ``settings.MEDIACANON_CONFIG``, else the environment's ``MEDIACANON_CONFIG``, else
``mediamap.yaml`` (relative paths from the working directory, as the CLI reads it), once per path.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.deconstruct import deconstructible

from mediacanon.core import mediamap, naming
from mediacanon.core.errors import ConfigError, PermanentError
from mediacanon.core.mediamap import FieldMapping, MediaMap

__all__ = ["CanonicalUploadTo", "canonical_upload_to", "config_path", "load_media_map", "mapping_for_field", "read_media_map"]

logger = logging.getLogger("mediacanon.django")
DEFAULT_CONFIG = "mediamap.yaml"


def config_path() -> tuple[Path, str]:
    """The media map's path, and where it was named ("settings.MEDIACANON_CONFIG", ...)."""
    from django.conf import settings

    configured = getattr(settings, "MEDIACANON_CONFIG", None)
    if configured:
        return Path(configured), "settings.MEDIACANON_CONFIG"
    if os.environ.get("MEDIACANON_CONFIG"):
        return Path(os.environ["MEDIACANON_CONFIG"]), "the environment's MEDIACANON_CONFIG"
    return Path(DEFAULT_CONFIG), f"the default {DEFAULT_CONFIG!r} (no MEDIACANON_CONFIG in the settings or the environment)"


def load_media_map() -> MediaMap:
    """The project's media map, read once per path; ImproperlyConfigured names the file, the problem and the fix."""
    path, named_by = config_path()
    try:
        return read_media_map(path)
    except ConfigError as exc:
        raise ImproperlyConfigured(
            f"mediacanon: the media map named by {named_by} cannot be used: {exc}. Set MEDIACANON_CONFIG in the Django "
            "settings to the path of a valid media map (`mediacanon check-config --config PATH` lists every problem)"
        ) from exc


def read_media_map(path: Path) -> MediaMap:
    """The media map at `path`, parsed once (ConfigError: what is wrong with it)."""
    return _load(str(path.absolute()))


@functools.cache
def _load(path: str) -> MediaMap:
    return mediamap.load(path)


def mapping_for_field(media_map: MediaMap, name: str) -> FieldMapping:
    try:
        return media_map.field(name)
    except KeyError:
        known = ", ".join(m.name for m in media_map.fields)
        raise ImproperlyConfigured(
            f"mediacanon: the media map {media_map.source} has no field {name!r} (it maps: {known}). Add a fields entry "
            f"named {name!r} to it (`mediacanon init` writes one from the models), or pass the name of a mapped field "
            "to canonical_upload_to"
        ) from None


def _slug_value(media_map: MediaMap, mapping: FieldMapping, instance: Any) -> Any:
    for f in instance._meta.concrete_fields:
        if f.column == mapping.slug_column:
            return getattr(instance, f.attname)
    raise ImproperlyConfigured(
        f"mediacanon: {mapping.name}: the model {instance._meta.label} has no column {mapping.slug_column!r}, the "
        f"slug_column the media map {media_map.source} gives; set it to the column of the model's slug field"
    )


def upload_name(media_map: MediaMap, mapping: FieldMapping, instance: Any, filename: str) -> str:
    """The name Django stores for `filename` saved on `instance`: its canonical key relative to the storage's
    location, or, while the row has no usable slug, ``upload_to + filename`` (logged: the live path leaves it to a
    later backfill)."""
    slug = _slug_value(media_map, mapping, instance)
    basename = filename.replace("\\", "/").rsplit("/", 1)[-1]
    fallback = mapping.upload_to + basename
    if slug is None or not str(slug).strip():
        logger.warning(
            "mediacanon: %s: the row's %s is empty at save time, so %r is named %r (upload_to and the file name), "
            "not its canonical key; the live path refuses that key while the row has no slug: set the slug before "
            "saving the file, or run `mediacanon backfill` once it is set",
            mapping.name,
            mapping.slug_column,
            filename,
            fallback,
        )
        return fallback
    # the storage's location (a tenant's prefix too) is the storage's business: the name Django stores is relative
    # to it, so the key is computed without it, by the same naming core the live path uses
    relative = dataclasses.replace(mapping, location="", tenant_column=None)
    try:
        return naming.canonical_key_for_row(relative, str(slug), basename)
    except PermanentError as exc:  # a slug with no character usable in a key, a name longer than max_length
        logger.warning(
            "mediacanon: %s: no canonical key for %r from %s %r (%s), so it is saved as %r; the live path reports "
            "what it cannot name",
            mapping.name,
            filename,
            mapping.slug_column,
            slug,
            exc,
            fallback,
        )
        return fallback


@deconstructible
class CanonicalUploadTo:
    """``upload_to=canonical_upload_to("app_label.Model.field")``: names uploads of the media map's field `name`."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or name.count(".") < 2:
            raise ImproperlyConfigured(
                f"mediacanon: canonical_upload_to({name!r}): pass the media map's name of the field, "
                "'app_label.Model.field' (e.g. 'archive.PublicationSource.icon')"
            )
        self.name = name

    def __call__(self, instance: Any, filename: str) -> str:
        media_map = load_media_map()
        return upload_name(media_map, mapping_for_field(media_map, self.name), instance, filename)

    def __eq__(self, other: object) -> bool:  # migrations compare the old and new field: equal means no change
        return isinstance(other, CanonicalUploadTo) and other.name == self.name

    def __hash__(self) -> int:
        return hash((CanonicalUploadTo, self.name))

    def __repr__(self) -> str:
        return f"canonical_upload_to({self.name!r})"


def canonical_upload_to(instance: Any, filename: str | None = None) -> Any:
    """``canonical_upload_to("app.Model.field")`` returns the upload_to of that mapped field; used as an upload_to
    itself (``upload_to=canonical_upload_to``), Django calls it with (instance, filename) and it finds its field: the
    one file field of the instance's model whose upload_to is this function."""
    if filename is None:
        if not isinstance(instance, str):
            raise ImproperlyConfigured(
                "mediacanon: canonical_upload_to takes the media map's field name, canonical_upload_to('app.Model.field'), "
                "or is given as upload_to itself (upload_to=canonical_upload_to)"
            )
        return CanonicalUploadTo(instance)
    media_map = load_media_map()
    return upload_name(media_map, _own_mapping(media_map, instance), instance, filename)


def _own_mapping(media_map: MediaMap, instance: Any) -> FieldMapping:
    """The mapping of the one file field of the instance's model whose upload_to is canonical_upload_to itself: by
    its name (app_label.Model.field), else by its table and column."""
    opts = instance._meta
    mine = [f for f in opts.fields if getattr(f, "upload_to", None) is canonical_upload_to]
    if len(mine) != 1:
        names = ", ".join(f.name for f in mine)
        raise ImproperlyConfigured(
            f"mediacanon: {opts.label} has {len(mine)} file fields with upload_to=canonical_upload_to ({names}): Django "
            "does not say which one is saving, so name each one's field: "
            f"upload_to=canonical_upload_to('{opts.label}.<field>')"
        )
    name = f"{opts.label}.{mine[0].name}"
    by_column = [m for m in media_map.fields if (m.table, m.column) == (opts.db_table, mine[0].column)]
    if not any(m.name == name for m in media_map.fields) and len(by_column) == 1:
        return by_column[0]
    return mapping_for_field(media_map, name)
