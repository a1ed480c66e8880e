"""Gaps of a valid media map: what `mediacanon init` could not read off the Django project and wrote as a
placeholder or a fallback choice, found again in the parsed map (YAML drops the comments that explain them).

A gap does not make the map invalid (`check-config` accepts it and lists each gap with its fix):

- a value holding the placeholder marker `FILL-IN` (`fill-in` in bucket names, which are lower-case): an
  `upload_to` init could not read (a callable, an empty one), the CDN bucket Django does not know, include
  patterns two fields sharing a prefix need;
- `slug_column` equal to `id_column`: the model has no unique SlugField, canonical keys are named by row id;
- a `%` in `upload_to` or `canonical`: a strftime pattern, which Django expands to dated folders.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from mediacanon.core.mediamap import FieldMapping, MediaMap

MARKER = "FILL-IN"  # placeholders contain it; matched case-insensitively (bucket names are written 'fill-in')


@dataclass(frozen=True)
class Gap:
    subject: str  # "field archive.Model.file" or "buckets.cdn"
    where: str  # the place in the map: "fields[archive.Model.file].upload_to"
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem} (fix: {self.fix})"


def is_placeholder(value: str) -> bool:
    return MARKER.lower() in value.lower()


def find_gaps(media_map: MediaMap) -> list[Gap]:
    """Every gap of the map, buckets first, then each field in the map's order."""
    gaps: list[Gap] = []
    for role in ("primary", "cdn"):
        name = getattr(media_map.buckets, role)
        if is_placeholder(name):
            gaps.append(
                Gap(
                    f"buckets.{role}",
                    f"buckets.{role}",
                    f"{name!r} is a placeholder: the {role} bucket is not known from the Django project",
                    _BUCKET_FIX[role],
                )
            )
    for mapping in media_map.fields:
        gaps.extend(field_gaps(mapping))
    return gaps


_BUCKET_FIX = {
    "primary": "name the bucket the fields' S3Storage writes to (AWS_STORAGE_BUCKET_NAME, the stack's PrimaryBucketName)",
    "cdn": "name the bucket the CDN serves, the stack's CdnBucketName (Django's custom_domain is served from it)",
}


def field_gaps(mapping: FieldMapping) -> list[Gap]:
    subject = f"field {mapping.name}"
    where = f"fields[{mapping.name}]"
    gaps: list[Gap] = []
    if mapping.slug_column == mapping.id_column:
        gaps.append(
            Gap(
                subject,
                f"{where}.slug_column",
                f"no unique SlugField on the model: canonical keys are named by row id ({mapping.slug_column})",
                "add a unique SlugField and set slug_column",
            )
        )
    if is_placeholder(mapping.upload_to) or is_placeholder(mapping.canonical):
        gaps.append(
            Gap(
                subject,
                f"{where}.upload_to",
                f"upload_to {mapping.upload_to!r} is a placeholder: the prefix could not be read off the model "
                "(a callable upload_to, or an empty one)",
                "set upload_to to the prefix the field's files are stored under (what the callable returns, up to the "
                "file name) and canonical to '<upload_to>{slug}{ext}'",
            )
        )
    elif "%" in mapping.upload_to or "%" in mapping.canonical:
        gaps.append(
            Gap(
                subject,
                f"{where}.upload_to",
                f"upload_to {mapping.upload_to!r} or canonical {mapping.canonical!r} holds a strftime pattern: Django "
                "expands it to dated folders, the media map reads it literally",
                "set upload_to to the fixed prefix before the first '%' (e.g. 'docs/' for 'docs/%Y/')",
            )
        )
    for kind in ("location", "include", "exclude", "staging"):
        value = getattr(mapping, kind)
        values = (value,) if isinstance(value, str) else tuple(value)
        if any(is_placeholder(v) for v in values):
            gaps.append(
                Gap(
                    subject,
                    f"{where}.{kind}",
                    f"{kind} holds a placeholder ({', '.join(repr(v) for v in values if is_placeholder(v))})"
                    + (": this field shares its location and upload_to with another one" if kind == "include" else ""),
                    _KIND_FIX[kind],
                )
            )
    return gaps


_KIND_FIX = {
    "location": "copy the storage's location (AWS_LOCATION), e.g. 'media/', or '' for none",
    "include": "write globs that tell this field's keys from the other field's (e.g. '*.pdf'), or give each its own upload_to",
    "exclude": "write the globs of keys this field must not claim, or remove the placeholder",
    "staging": "write the staging patterns, e.g. 'downloads/{slug}/*', or remove the placeholder",
}
