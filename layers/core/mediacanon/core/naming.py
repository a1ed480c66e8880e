"""The pure naming core: for an object key, its canonical key, the field it belongs to, and why.

No boto3, no psycopg: every function here is a pure function of its arguments, tested one odd name per case.

Two sources of truth, in order:
- a row: the canonical key of a row is the field's template filled from the row (`canonical_key_for_row`),
  the way Django's ``upload_to`` names a file from the model;
- a name: for a key no row references yet, the candidate slug is read from the name (`resolve`):
  collision suffix and noise tokens stripped, unicode slugified, staging folders read.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_plus

from mediacanon.core.errors import UnmappedKeyError, UnsafeKeyError
from mediacanon.core.mediamap import FieldMapping, MediaMap

MAX_KEY_BYTES = 1024  # S3's own limit on a key's UTF-8 length

# django-storages (through Django's Storage.get_available_name) appends "_" + get_random_string(7) when a
# name is taken. A plain 7-letter lower-case word ("_archive") is far likelier to be a real name than a
# random draw, so only suffixes with a digit or an inner capital count as collision suffixes.
_COLLISION_SUFFIX = re.compile(r"_(?P<suffix>[A-Za-z0-9]{7})$")
_DJANGO_COPY_NUMBER = re.compile(r"_\d{1,2}$")
_COPY_NUMBER = re.compile(r"\s*\(\d{1,3}\)$")  # "name (1)", "name (12)": browser / OS copy numbering
# "Copy of name", "Copy (2) of name": Windows Explorer and Google Drive put the copy marker in front
_COPY_OF = re.compile(r"^copy(?: \(\d{1,3}\))? of\s+", re.IGNORECASE)
# "nytimes.png.jpeg": an inner image extension left over from a re-save is noise, not part of the name
_IMAGE_EXTS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".gif", ".webp", ".svg", ".ico", ".tif", ".tiff", ".bmp", ".avif", ".heic"}
)
_SEPARATORS = "-_. "
_TRANSLITERATE = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "þ": "th",
        "Þ": "TH",
        "\u0131": "i",
    }
)  # \u0131: dotless i
_SAFE_SLUG = re.compile(r"[\w-]+")  # Django's validate_unicode_slug; used with fullmatch (no "$" newline trap)


@dataclass(frozen=True)
class Resolution:
    """What the name alone says about a key."""

    key: str
    canonical_key: str
    field: FieldMapping
    slug: str
    ext: str
    tenant: str | None
    rule: str  # "upload_to 'icons/'" or "staging 'downloads/{slug}/*favicon*/*'"
    steps: tuple[str, ...] = ()  # why, in order
    # other slugs the name may stand for, tried after `slug` when looking for the owning row by slug:
    # Django stores "Aftenposten (2).jpg" as "Aftenposten_2.jpg", which could as well be "Channel_4.jpg"
    alt_slugs: tuple[str, ...] = ()
    staging_pattern: str | None = None  # the field's staging pattern that named it (None: its upload_to, or a row)

    @property
    def is_canonical(self) -> bool:
        return self.key == self.canonical_key


def decode_event_key(raw: str) -> str:
    """Decode a key from an S3 event exactly once (S3 URL-encodes keys there; a space arrives as '+')."""
    return unquote_plus(raw)


def check_key(key: str) -> None:
    """Refuse keys mediacanon must never act on; the error names the key and the reason."""
    if not key:
        raise UnsafeKeyError(key, "empty key")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise UnsafeKeyError(key, f"longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise UnsafeKeyError(key, "leading '/' (an absolute path, not an S3 key Django would write)")
    # category Cc: C0 (\x00-\x1f), DEL and the C1 range (\x80-\x9f, e.g. NEL \x85) that also breaks logs and CSV reports
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        raise UnsafeKeyError(key, "contains control characters")
    if key.endswith("/"):
        raise UnsafeKeyError(key, "directory marker (ends with '/'), not a file")
    segments = key.split("/")
    if any(seg in ("..", ".") for seg in segments):
        raise UnsafeKeyError(key, "contains a '.' or '..' path segment")
    if any(seg == "" for seg in segments):
        raise UnsafeKeyError(key, "contains an empty path segment ('//')")


def slugify(text: str) -> str:
    """ASCII slug: 'Süddeutsche Zeitung' -> 'suddeutsche-zeitung'; '_' and spaces become '-'."""
    text = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", text.lower())
    return text.strip("-")


def split_ext(filename: str, aliases: dict[str, str]) -> tuple[str, str, str | None]:
    """('NYTimes.JPEG', aliases) -> ('NYTimes', '.jpg', "extension '.JPEG' -> '.jpg'")."""
    dot = filename.rfind(".")
    if dot <= 0:
        return filename, "", None
    stem, raw_ext = filename[:dot], filename[dot:]
    ext = aliases.get(raw_ext.lower(), raw_ext.lower())
    if not re.fullmatch(r"\.[a-z0-9]{1,10}", ext):
        return filename, "", None  # "name.with spaces" is not an extension
    note = f"extension {raw_ext!r} -> {ext!r}" if raw_ext != ext else None
    # "nytimes.png.png", "nytimes.PNG.png", "nytimes.png.jpeg": an inner image extension is noise
    while (inner := stem.rfind(".")) > 0:
        inner_ext = aliases.get(stem[inner:].lower(), stem[inner:].lower())
        if inner_ext != ext and not (inner_ext in _IMAGE_EXTS and ext in _IMAGE_EXTS):
            break
        note = f"{note}; " if note else ""
        note += f"dropped inner extension {stem[inner:]!r}"
        stem = stem[:inner]
    return stem, ext, note


def clean_stem(stem: str, noise_tokens: tuple[str, ...]) -> tuple[str, list[str]]:
    """Strip collision suffixes, copy numbers and noise tokens from the end of a name, repeatedly."""
    steps: list[str] = []
    tokens = sorted(noise_tokens, key=len, reverse=True)
    m = _COPY_OF.match(stem)
    if m and stem[m.end() :].strip(_SEPARATORS):
        steps.append(f"stripped copy marker {m.group(0)!r}")
        stem = stem[m.end() :]
    # Django puts its suffix before the FIRST dot ("Folha_de_S.Paulo.ico" -> "Folha_de_S_Wmr73J8.Paulo.ico"),
    # since get_available_name keeps every suffix of the name ("archive.tar.gz")
    dot = stem.find(".")
    if dot > 8:
        m = _COLLISION_SUFFIX.search(stem[:dot])
        if m and _looks_random(m.group("suffix")):
            steps.append(f"stripped django-storages collision suffix {m.group(0)!r}")
            stem = stem[: m.start()] + stem[dot:]
    changed = True
    while changed and stem:
        changed = False
        m = _COLLISION_SUFFIX.search(stem)
        if m and _looks_random(m.group("suffix")) and m.start() > 0:
            steps.append(f"stripped django-storages collision suffix {m.group(0)!r}")
            stem, changed = stem[: m.start()], True
            continue
        m = _COPY_NUMBER.search(stem)
        if m and m.start() > 0:
            steps.append(f"stripped copy number {m.group(0)!r}")
            stem, changed = stem[: m.start()], True
            continue
        # Django's get_valid_name stores "Name_FINAL (1).JPG" as "Name_FINAL_1.JPG"; a bare "_1" is a copy
        # number only right after a noise token, so "channel_4" keeps its number
        m = _DJANGO_COPY_NUMBER.search(stem)
        if m and m.start() > 0 and _ends_with_token(stem[: m.start()], tokens):
            steps.append(f"stripped copy number {m.group(0)!r}")
            stem, changed = stem[: m.start()], True
            continue
        lower = stem.lower()
        for token in tokens:
            t = token.lower()
            if not lower.endswith(t) or len(lower) == len(t):
                continue
            before = lower[: -len(t)]
            # a token with no separator of its own ("favicon", "copy") must stand as a word of its own:
            # "bbc-favicon" loses it, "copyblogger" and "newscopy" do not
            if t[0] not in _SEPARATORS and before[-1] not in _SEPARATORS:
                continue
            steps.append(f"stripped noise token {stem[len(before) :]!r}")
            stem, changed = stem[: len(before)].rstrip(_SEPARATORS), True
            break
    return stem, steps


def _ends_with_token(stem: str, tokens: list[str]) -> bool:
    lower = stem.lower()
    return any(lower.endswith(t.lower()) and len(lower) > len(t) for t in tokens if t.strip())


def _looks_random(suffix: str) -> bool:
    return any(ch.isdigit() for ch in suffix) or (any(ch.isupper() for ch in suffix[1:]) and any(ch.islower() for ch in suffix))


def row_slug(slug: str) -> str:
    """A row's slug is used as it is (the row is the authority) when it is a safe path segment."""
    if _SAFE_SLUG.fullmatch(slug) and slug.strip("-_"):
        return slug
    return slugify(slug)


def location_for(mapping: FieldMapping, tenant: str | None) -> str:
    location: str = mapping.location
    if mapping.tenant_scoped:
        if not tenant:
            raise UnmappedKeyError("", f"field {mapping.name} is per tenant: a tenant is needed")
        location = location.format(tenant=tenant)
    return location


def canonical_key_for_row(mapping: FieldMapping, slug: str, source_key: str, tenant: str | None = None) -> str:
    """The canonical key of a row: the field's template filled from the row's slug and the file's extension."""
    filename = source_key.rsplit("/", 1)[-1]
    _, ext, _ = split_ext(filename, mapping.extension_aliases)
    safe_slug = row_slug(slug)
    if not safe_slug:
        raise UnsafeKeyError(source_key, f"row slug {slug!r} has no character usable in a key; fix the row's slug")
    location = location_for(mapping, tenant)
    key: str = location + mapping.canonical.format(slug=safe_slug, ext=ext)
    check_canonical(key, mapping, source_key, location)
    return key


def check_canonical(canonical_key: str, mapping: FieldMapping, source_key: str, location: str = "") -> None:
    """Refuse a canonical key that is unsafe or whose column value would not fit the FileField's max_length."""
    check_key(canonical_key)
    # Django's max_length limits the column value, which is the key without the storage's location prefix
    value = canonical_key.removeprefix(location)
    if len(value) > mapping.max_length:
        raise UnsafeKeyError(
            source_key,
            f"canonical name {value!r} is {len(value)} characters, longer than "
            f"{mapping.table}.{mapping.column} max_length {mapping.max_length}: raise max_length or shorten the slug",
        )


def resolve_for_row(
    media_map: MediaMap, key: str, slug: str, tenant: str | None = None, mapping: FieldMapping | None = None
) -> Resolution:
    """The resolution a row gives a key whose name alone cannot (a Greek or Japanese file name has no ASCII slug):
    the row that references the key names it, as Django's upload_to would."""
    check_key(key)
    hit = mapping_for(media_map, key, tenant) if mapping is None else (mapping, tenant)
    if hit is None:
        raise UnmappedKeyError(key)
    mapping, key_tenant = hit
    _, ext, ext_note = split_ext(key.rsplit("/", 1)[-1], mapping.extension_aliases)
    canonical = canonical_key_for_row(mapping, slug, key, key_tenant)
    steps = [
        f"field {mapping.name} by upload_to {mapping.location + mapping.upload_to!r}",
        f"the name gives no slug: the referencing row's slug {slug!r} names it",
    ]
    if ext_note:
        steps.append(ext_note)
    steps.append(f"canonical key {canonical!r}")
    return Resolution(
        key=key,
        canonical_key=canonical,
        field=mapping,
        slug=row_slug(slug),
        ext=ext,
        tenant=key_tenant,
        rule="row reference",
        steps=tuple(steps),
    )


def mapping_for(media_map: MediaMap, key: str, tenant: str | None = None) -> tuple[FieldMapping, str | None] | None:
    """The field whose location and upload_to hold the key (include/exclude applied), and its tenant."""
    for mapping, key_tenant, rest in _prefix_matches(media_map, key, tenant):
        if _included(mapping, rest):
            return mapping, key_tenant
    return None


def resolve(media_map: MediaMap, key: str, tenant: str | None = None) -> Resolution:
    """Which field a key belongs to, and its canonical key, from the name alone.

    Raises UnsafeKeyError for keys that must not be touched and UnmappedKeyError for keys no field covers.
    """
    check_key(key)
    if key.rsplit("/", 1)[-1].startswith("."):
        # .DS_Store, ._name.png (macOS AppleDouble), .gitkeep: system files that only look like media
        raise UnmappedKeyError(key, "hidden or system file (its name starts with '.'), not media Django wrote")
    for mapping, key_tenant, rest in _prefix_matches(media_map, key, tenant):
        filename = rest.rsplit("/", 1)[-1]
        if not _included(mapping, rest):
            continue
        rule = f"upload_to {mapping.location + mapping.upload_to!r}"
        stem, ext, ext_note = split_ext(filename, mapping.extension_aliases)
        return _finish(mapping, key, key_tenant, rule, stem, ext, ext_note)
    for mapping, key_tenant, rest in _location_matches(media_map, key, tenant):
        for pattern in mapping.staging:
            m = _staging_regex(pattern).match(rest)
            if not m:
                continue
            filename = rest.rsplit("/", 1)[-1]
            if not _included(mapping, rest):
                continue
            _, ext, ext_note = split_ext(filename, mapping.extension_aliases)
            return _finish(
                mapping, key, key_tenant, f"staging {pattern!r}", m.group("slug"), ext, ext_note, staging_pattern=pattern
            )
    raise UnmappedKeyError(key, "no field's upload_to or staging pattern covers this key")


def _finish(
    mapping: FieldMapping,
    key: str,
    tenant: str | None,
    rule: str,
    stem: str,
    ext: str,
    ext_note: str | None,
    *,
    staging_pattern: str | None = None,
) -> Resolution:
    from_staging = staging_pattern is not None
    steps = [f"field {mapping.name} by {rule}"]
    if tenant:
        steps.append(f"tenant {tenant!r} kept from location {mapping.location!r}")
    if from_staging:
        steps.append(f"slug {stem!r} read from the staging folder")
        cleaned = stem
    else:
        cleaned, cleaning = clean_stem(stem, mapping.noise_tokens)
        steps.extend(cleaning)
    slug = slugify(cleaned)
    if not slug:
        raise UnsafeKeyError(
            key,
            f"no usable name: {cleaned!r} has no ASCII letter or digit once noise is removed and it is slugified; "
            "link it to a row (the row's slug names it) or rename it by hand",
        )
    if slug != cleaned:
        steps.append(f"slugified {cleaned!r} -> {slug!r}")
    if ext_note:
        steps.append(ext_note)
    location = location_for(mapping, tenant)
    canonical = location + mapping.canonical.format(slug=slug, ext=ext)
    check_canonical(canonical, mapping, key, location)
    steps.append("already canonical" if canonical == key else f"canonical key {canonical!r}")
    m = _DJANGO_COPY_NUMBER.search(cleaned)
    alt = slugify(cleaned[: m.start()]) if m and not from_staging else ""
    return Resolution(
        key=key,
        canonical_key=canonical,
        field=mapping,
        slug=slug,
        ext=ext,
        tenant=tenant,
        rule=rule,
        steps=tuple(steps),
        alt_slugs=(alt,) if alt and alt != slug else (),
        staging_pattern=staging_pattern,
    )


def _location_matches(media_map: MediaMap, key: str, tenant: str | None) -> list[tuple[FieldMapping, str | None, str]]:
    """(field, tenant, key relative to the field's location) for every field whose location holds the key."""
    out: list[tuple[FieldMapping, str | None, str]] = []
    for mapping in media_map.fields:
        if mapping.tenant_scoped:
            head, _, rest = key.partition("/")
            if not rest or (tenant is not None and head != tenant):
                continue
            prefix = mapping.location.format(tenant=head)
            if key.startswith(prefix):
                out.append((mapping, head, key[len(prefix) :]))
        elif key.startswith(mapping.location):
            out.append((mapping, None, key[len(mapping.location) :]))
    return out


def _prefix_matches(media_map: MediaMap, key: str, tenant: str | None) -> list[tuple[FieldMapping, str | None, str]]:
    hits = [(m, t, rest) for m, t, rest in _location_matches(media_map, key, tenant) if rest.startswith(m.upload_to)]
    # the longest location + upload_to wins ("media/icons/large/" before "media/icons/")
    hits.sort(key=lambda hit: len(hit[0].location) + len(hit[0].upload_to), reverse=True)
    return hits


def _included(mapping: FieldMapping, name: str) -> bool:
    """Include / exclude globs over the key as Django names it (relative to the field's location, 'icons/drafts/a.png')
    and over its file name alone ('a.png'), matched case-insensitively, each as it is and with its extension aliased:
    '*.png' and 'icons/drafts/*' both work, and an alias says two extensions are the same format, so 'nytimes.jpe' is
    included by '*.jpg' once '.jpe' -> '.jpg'.
    """
    names: set[str] = set()
    for candidate in {name, name.rsplit("/", 1)[-1]}:
        names.add(candidate.lower())
        dot = candidate.rfind(".")
        if dot > 0 and "/" not in candidate[dot:]:
            raw_ext = candidate[dot:].lower()
            names.add(candidate[:dot].lower() + mapping.extension_aliases.get(raw_ext, raw_ext))

    def matches(patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(n, p.lower()) for n in names for p in patterns)

    if mapping.include and not matches(mapping.include):
        return False
    return not matches(mapping.exclude)


_STAGING_CACHE: dict[str, re.Pattern[str]] = {}


def _staging_regex(pattern: str) -> re.Pattern[str]:
    """'downloads/{slug}/*favicon*/*' -> a regex; '*' stays within a segment, '**' crosses segments."""
    if pattern not in _STAGING_CACHE:
        out = []
        for part in re.split(r"(\{slug\}|\*\*|\*|\?)", pattern):
            if part == "{slug}":
                out.append(r"(?P<slug>[^/]+)")
            elif part == "**":
                out.append(r".*")
            elif part == "*":
                out.append(r"[^/]*")
            elif part == "?":
                out.append(r"[^/]")
            else:
                out.append(re.escape(part))
        _STAGING_CACHE[pattern] = re.compile("".join(out) + r"$", re.IGNORECASE)
    return _STAGING_CACHE[pattern]


def column_value(mapping: FieldMapping, key: str, tenant: str | None = None) -> str:
    """The value Django stores for an object key: the key without the storage's location prefix."""
    location = location_for(mapping, tenant)
    if not key.startswith(location):
        raise UnmappedKeyError(key, f"outside the storage location {location!r} of {mapping.name}")
    return key[len(location) :]


def key_for_value(mapping: FieldMapping, value: str, tenant: str | None = None) -> str:
    """The object key behind a column value (django-storages prepends its location)."""
    return location_for(mapping, tenant) + value
