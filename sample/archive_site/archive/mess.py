"""The archive's media mess, planned deterministically from a seed.

Pure planning: publication names, which mess each row and object gets, and the image bytes. No S3, no
database: `generate_archive` applies the plan through Django's storage (and boto3 where a real site's
scripts would have used it) and writes the manifest.
"""

from __future__ import annotations

import io
import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.utils.text import get_valid_filename
from PIL import Image, ImageDraw, ImageFont

from mediacanon.core.naming import slugify

ICON = "archive.PublicationSource.icon"
MASTHEAD = "archive.PublicationSource.masthead"
TENANT_ICON = "tenants.TenantPublication.icon"

PRIMARY = "primary"
LEGACY = "legacy"

# kind -> (what it is, whether the name alone resolves to the canonical key of the owning row's slug)
KINDS: dict[str, tuple[str, bool]] = {
    "canonical": ("the row points at its canonical key: already fine", True),
    "messy-upload": ("uploaded through Django under a messy name; the row points at it", True),
    "collision-suffix": ("a name saved twice: django-storages added '_XXXXXXX'; the row points at it", True),
    "dotted-collision-suffix": ("as collision-suffix, but the name has an inner dot: Django puts '_XXXXXXX' before it", False),
    "superseded-upload": ("the first upload of a name saved twice; no row points at it any more", True),
    "django-copy-number": ("'Name (1).JPG' saved through Django, which stores it as 'Name_1.JPG'", False),
    "non-latin-name": ("a Greek/Cyrillic/CJK file name: no slug can be read from it, the row decides", False),
    "generic-name": ("'logo.png' uploaded for several rows: the name says nothing, the row decides", False),
    "staging": ("nested staging folder uploaded with boto3; the row's column is empty (link by slug)", True),
    "linker": ("a messy key under upload_to already exists; the row's column is empty (link by slug)", True),
    "missing": ("the row points at a key that no bucket holds (report missing)", False),
    "missing-legacy": ("the row points at a key missing from primary; the legacy bucket holds it", True),
    "orphan": ("no row references it and its name matches no slug", False),
    "tenant": ("per-tenant location prefix ('acme/'); the column holds the key without it", True),
    "refused": ("a key mediacanon must refuse: directory marker, control character, too long, '//'", False),
}
RESOLVABLE = frozenset(kind for kind, (_, ok) in KINDS.items() if ok)

# (display name, handle used in file names and for the slug; None: the name itself)
FAMOUS: list[tuple[str, str | None]] = [
    ("The New York Times", "NYTimes"),
    ("BBC News", "BBC"),
    ("Le Monde", "LeMonde"),
    ("El País", None),
    ("Süddeutsche Zeitung", None),
    ("Le Monde diplomatique", None),
    ("Η Καθημερινή", "Kathimerini"),  # noqa: RUF001 - Greek, on purpose
    ("Dagens Nyheter", None),
    ("Gazeta Wyborcza", None),
    ("Aftenposten", None),
    ("Corriere della Sera", None),
    ("O Globo", None),
    ("Коммерсантъ", "Kommersant"),
    ("朝日新聞", "Asahi Shimbun"),
    ("Folha de S.Paulo", None),
]
CURATED: list[tuple[str, str | None]] = [
    ("The Guardian", "Guardian"),
    ("Frankfurter Allgemeine Zeitung", "FAZ"),
    ("Die Zeit", None),
    ("Der Spiegel", None),
    ("Le Figaro", None),
    ("La Repubblica", None),
    ("Neue Zürcher Zeitung", "NZZ"),
    ("Helsingin Sanomat", None),
    ("Politiken", None),
    ("Berlingske", None),
    ("Público", None),
    ("Clarín", None),
    ("La Nación", None),
    ("The Washington Post", "WashingtonPost"),
    ("The Wall Street Journal", "WSJ"),
    ("Financial Times", "FT"),
    ("The Economist", None),
    ("Der Standard", None),
    ("Die Presse", None),
    ("De Volkskrant", None),
    ("NRC Handelsblad", "NRC"),
    ("Le Soir", None),
    ("Göteborgs-Posten", None),
    ("Svenska Dagbladet", None),
    ("Jyllands-Posten", None),
    ("Hürriyet", None),
    ("Τα Νέα", "Ta Nea"),  # noqa: RUF001
    ("Το Βήμα", "To Vima"),  # noqa: RUF001
    ("Ελευθεροτυπία", "Eleftherotypia"),
    ("Известия", "Izvestia"),
    ("毎日新聞", "Mainichi Shimbun"),
    ("The Times of India", None),
    ("The Hindu", None),
    ("Haaretz", None),
    ("Le Devoir", None),
    ("The Globe and Mail", None),
    ("Toronto Star", None),
    ("The Sydney Morning Herald", None),
    ("The Irish Times", None),
    ("The Scotsman", None),
    ("Rzeczpospolita", None),
    ("Lidové noviny", None),
    ("Večernji list", None),
    ("Mladá fronta DNES", None),
    ("Expresso", None),
    ("Diário de Notícias", None),
    ("La Vanguardia", None),
    ("ABC Sevilla", None),
    ("Le Temps", None),
    ("Tages-Anzeiger", None),
    ("Dagbladet", None),
    ("Verdens Gang", "VG"),
    ("National Geographic", None),
    ("The New Yorker", "NewYorker"),
    ("Paris Match", None),
    ("Der Stern", None),
    ("The Atlantic", None),
    ("Wired", None),
    ("Scientific American", None),
]
_TOWNS = [
    "Springfield",
    "Riverside",
    "Ashford",
    "Kingsbridge",
    "Port Ellis",
    "Marlow",
    "Eastbrook",
    "Hollow Creek",
    "Dunmore",
    "Oakham",
    "Northfield",
    "Westport",
    "Lakeview",
    "Fairhaven",
    "Greystone",
    "Millbrook",
    "Redcliff",
    "Stonebridge",
    "Cedar Falls",
    "Bay City",
    "Harbor Point",
    "Pinecrest",
    "Silverton",
    "Maplewood",
    "Brackenridge",
    "Elmstead",
    "Kirkwall",
    "Thornbury",
    "Glenrock",
    "Whitby",
    "Ravensworth",
    "Cold Harbour",
    "Larkspur",
    "Ironbridge",
]
_MASTHEADS = [
    "Herald",
    "Gazette",
    "Courier",
    "Tribune",
    "Chronicle",
    "Observer",
    "Post",
    "Times",
    "Sentinel",
    "Examiner",
    "Ledger",
    "Dispatch",
    "Register",
    "Bulletin",
    "Journal",
    "Record",
    "Standard",
    "Mercury",
    "Star",
    "Advertiser",
    "Argus",
    "Clarion",
    "Inquirer",
    "Monitor",
    "Evening News",
    "Daily News",
    "Weekly",
]
_EUROPEAN = [
    ("{town} Zeitung", ["Kölner", "Hamburger", "Leipziger", "Bremer", "Münchner", "Dresdner", "Kieler", "Grazer"]),
    ("Le Journal de {town}", ["Lyon", "Nantes", "Rennes", "Genève", "Namur", "Besançon", "Orléans", "Nîmes"]),
    ("Il Corriere di {town}", ["Torino", "Bologna", "Verona", "Bari", "Trieste", "Perugia", "Lecce", "Cagliari"]),
    ("Gazeta {town}", ["Krakowska", "Lubuska", "Pomorska", "Olsztyńska", "Śląska", "Wrocławska"]),
    ("{town} Dagblad", ["Bergens", "Stavanger", "Fredriksstad", "Tromsø", "Haugesunds", "Drammens"]),
    ("Diario de {town}", ["Cádiz", "León", "Málaga", "Córdoba", "Navarra", "Burgos", "Ávila"]),
]
_MAGAZINE_ADJ = ["Modern", "Practical", "Weekend", "Urban", "Coastal", "Northern", "Amateur", "Classic", "Popular", "Quiet"]
_MAGAZINE_TOPIC = [
    "Gardening",
    "Photography",
    "Sailing",
    "Science",
    "Cycling",
    "Architecture",
    "Cooking",
    "Travel",
    "Chess",
    "Astronomy",
    "Woodworking",
    "Birdwatching",
    "Railways",
    "Mountaineering",
]
_MAGAZINE_KIND = ["Monthly", "Quarterly", "Review", "Magazine", "Digest"]

TENANTS: list[tuple[str, str, str, str]] = [
    # (tenant, slug, kind, name saved through the tenant's storage: "" means no file, the column points at a missing key)
    ("acme", "acme-news", "tenant", "acme-news_icon.png"),
    ("acme", "acme-weekly", "tenant", "Acme Weekly-logo.PNG"),
    ("acme", "daily-news", "canonical", "daily-news.png"),
    ("globex", "globex-times", "tenant", "globex-times_favicon.ico"),
    ("globex", "daily-news", "tenant", "Daily News_icon_v2.jpeg"),
    ("globex", "globex-radio", "missing", "globex-radio.png"),
]
_ORPHANS = [
    "icons/old_unused_banner.png",
    "icons/placeholder.gif",
    "icons/Untitled-1.png",
    "icons/IMG_0042.JPG",
    "icons/tmp_upload.png",
    "mastheads/draft_masthead_2019.jpg",
    "mastheads/header_backup_old.jpg",
    "icons/screenshot 2021-03-04 at 10.12.55.png",
]


@dataclass(frozen=True)
class Publication:
    name: str
    handle: str  # how people spelled it in file names: "NYTimes", "Süddeutsche Zeitung"
    slug: str

    @property
    def latin(self) -> bool:
        return slugify(self.name) != ""


@dataclass(frozen=True)
class ImageSpec:
    fmt: str  # PNG, JPEG, GIF, ICO
    text: str
    colour: tuple[int, int, int]
    size: tuple[int, int]


@dataclass
class ObjectPlan:
    """One object of the mess (or, for "missing", a key a row points at that nothing holds)."""

    kind: str
    field: str | None
    how: str  # "django": FieldFile.save; "storage": a tenant's storage.save; "boto3": put_object; "none": not written
    bucket: str | None  # PRIMARY, LEGACY or None (nothing holds it)
    name: str  # django: the file name given to FieldFile.save; otherwise the key (relative to the tenant's location)
    slug: str | None = None
    tenant: str | None = None
    referenced: bool = False  # the row's column points at it
    image: ImageSpec | None = None
    raw: bytes | None = None
    key: str = ""  # the final object key, filled in when applied


@dataclass
class RowPlan:
    model: str  # "publication" or "tenant"
    slug: str
    name: str
    tenant: str | None = None
    empty: dict[str, str | None] = field(default_factory=dict)  # column -> None or "" for rows left without a file


@dataclass
class Plan:
    seed: int
    count: int
    rows: list[RowPlan]
    objects: list[ObjectPlan]


# ---------------------------------------------------------------------------------------------- names


def publications(rng: random.Random, count: int) -> list[Publication]:
    """`count` publications with distinct slugs: the famous ones first, then curated and generated names."""
    out: dict[str, Publication] = {}

    def add(name: str, handle: str | None) -> None:
        slug = slugify(handle or name)
        if slug and len(slug) <= 50 and slug not in out:
            out[slug] = Publication(name=name, handle=handle or name, slug=slug)

    for name, handle in FAMOUS[:count]:
        add(name, handle)
    pool: list[tuple[str, str | None]] = list(CURATED)
    for town in _TOWNS:
        for masthead in _MASTHEADS:
            pool.append((f"The {town} {masthead}" if rng.random() < 0.4 else f"{town} {masthead}", None))
    for template, towns in _EUROPEAN:
        pool.extend((template.format(town=town), None) for town in towns)
    for adj in _MAGAZINE_ADJ:
        for topic in _MAGAZINE_TOPIC:
            pool.append((f"{adj} {topic} {rng.choice(_MAGAZINE_KIND)}", None))
    curated = pool[: len(CURATED)]
    generated = pool[len(CURATED) :]
    rng.shuffle(curated)
    rng.shuffle(generated)
    for name, handle in curated[: max(0, count // 4)] + generated + curated[count // 4 :]:
        if len(out) >= count:
            break
        add(name, handle)
    return list(out.values())[:count]


# ---------------------------------------------------------------------------------------------- images

_FONTS: dict[int, ImageFont.ImageFont | ImageFont.FreeTypeFont] = {}


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if size not in _FONTS:
        _FONTS[size] = ImageFont.load_default(size=size)
    return _FONTS[size]


def render(spec: ImageSpec) -> bytes:
    """A small real image: a coloured rectangle with the initials (a few KB)."""
    w, h = spec.size
    img = Image.new("RGB", (w, h), spec.colour)
    draw = ImageDraw.Draw(img)
    ink = (255, 255, 255) if sum(spec.colour) < 382 else (20, 20, 20)
    draw.rectangle((1, 1, w - 2, h - 2), outline=ink)
    draw.text((w / 2, h / 2), spec.text, fill=ink, font=_font(max(10, h // 2)), anchor="mm")
    buf = io.BytesIO()
    if spec.fmt == "ICO":
        img.save(buf, format="ICO", sizes=[(w, h)])
    elif spec.fmt == "JPEG":
        img.save(buf, format="JPEG", quality=85)
    elif spec.fmt == "GIF":
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(buf, format="GIF")
    else:
        img.save(buf, format=spec.fmt, optimize=True)
    return buf.getvalue()


_FORMATS = {".png": "PNG", ".ico": "ICO", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".webp": "WEBP"}


def initials(text: str) -> str:
    words = [w for w in text.replace("-", " ").split() if w[:1].isalnum()]
    letters = "".join(w[0] for w in words if w.lower() not in ("the", "de", "di", "la", "le", "el", "o"))
    return (letters or text[:2]).upper()[:3]


def image_for(name: str, text: str, rng: random.Random, masthead: bool = False) -> ImageSpec:
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ".png"
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    size = (240, 48) if masthead else (64, 64)
    if _FORMATS.get(ext, "PNG") == "ICO":
        size = (32, 32)
    return ImageSpec(fmt=_FORMATS.get(ext, "PNG"), text=initials(text), colour=colour, size=size)


# ---------------------------------------------------------------------------------------------- the plan

ICON_MESSY = [
    "{h}_icon_v2_final.png",
    "{h}-favicon.ico",
    "{h}_logo.PNG",
    "{h}_icon.jpeg",
    "{h} logo final.png",
    "{h}.GIF",
    "{h}_fav.ico",
    "{h}-icon_copy.png",
    "{h}.png.png",
    "{h}-logo.JPG",
]
MASTHEAD_MESSY = ["{h}_masthead.jpg", "{h}-masthead.JPEG", "{h} masthead final.jpg", "{h}_Masthead_v3.png", "{h}.jpeg"]
MASTHEAD_COPY_NUMBER = ["{h}_Masthead_FINAL (1).JPG", "{h} (2).jpg", "{h}-masthead (1).jpeg"]
ICON_COPY_NUMBER = ["{h}_icon (1).png", "{h} (2).ico"]
STAGING_ICON = [
    "downloads/{s}/google_favicon/google_icon.png",
    "downloads/{s}/favicon/favicon.ico",
    "downloads/{s}/site_icon/{h}_icon.png",
    "downloads/{s}/google_favicon/icon (1).png",
]
STAGING_MASTHEAD = [
    "downloads/{s}/masthead/{h}_Masthead_FINAL (1).JPG",
    "downloads/{s}/masthead/scan_0001.jpg",
    "downloads/{s}/masthead/header.jpeg",
]
GENERIC = ["logo.png", "favicon.ico", "icon.png"]

#          kind: weight for icons, weight for mastheads ("none": the row has no file at all)
_ICON_WEIGHTS = {
    "canonical": 14,
    "messy-upload": 22,
    "collision-suffix": 8,
    "django-copy-number": 3,
    "generic-name": 3,
    "staging": 12,
    "linker": 10,
    "missing": 5,
    "missing-legacy": 8,
    "none": 8,
}
_MASTHEAD_WEIGHTS = {
    "canonical": 14,
    "messy-upload": 16,
    "collision-suffix": 3,
    "django-copy-number": 6,
    "staging": 12,
    "linker": 6,
    "missing": 3,
    "missing-legacy": 5,
    "none": 35,
}


def _quota(weights: dict[str, int], n: int, rng: random.Random) -> list[str]:
    """n scenario labels in the proportions of `weights` (each present at least once when n allows), shuffled."""
    total = sum(weights.values())
    exact = {k: w * n / total for k, w in weights.items()}
    counts = {k: int(v) for k, v in exact.items()}
    if n >= len(weights):
        counts = {k: max(1, c) for k, c in counts.items()}
    by_remainder = sorted(weights, key=lambda k: (int(exact[k]) - exact[k], k))
    i = 0
    while sum(counts.values()) < n:
        counts[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    while sum(counts.values()) > n:
        counts[max(counts, key=lambda k: (counts[k], k))] -= 1
    labels = [k for k in weights for _ in range(counts[k])]
    rng.shuffle(labels)
    return labels


def _looks_random(suffix: str) -> bool:
    return any(ch.isdigit() for ch in suffix)


def suffix_source(seed: int) -> Callable[..., str]:
    """Django's collision suffix (get_random_string(7)), drawn from a seeded generator so a run is reproducible.

    Real Django draws from the same alphabet with `secrets`; the sample only keeps draws with a digit, so that
    every collision suffix it makes is one a name-based tool can recognise (a real all-letter draw cannot be).
    """
    rng = random.Random(zlib.crc32(f"suffix:{seed}".encode()))
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

    def get_random_string(length: int, allowed_chars: str = alphabet) -> str:
        while True:
            s = "".join(rng.choice(allowed_chars) for _ in range(length))
            if _looks_random(s):
                return s

    return get_random_string


def build(seed: int, count: int) -> Plan:
    rng = random.Random(seed)
    pubs = publications(rng, count)
    rows = [RowPlan(model="publication", slug=p.slug, name=p.name) for p in pubs]
    by_slug = {r.slug: r for r in rows}
    objects: list[ObjectPlan] = []
    icon_labels = _quota(_ICON_WEIGHTS, len(pubs), rng)
    masthead_labels = _quota(_MASTHEAD_WEIGHTS, len(pubs), rng)
    pinned_icon = {
        "nytimes": "messy-upload",
        "bbc": "canonical",
        "lemonde": "collision-suffix",
        "el-pais": "staging",
        "suddeutsche-zeitung": "messy-upload",
        "folha-de-s-paulo": "collision-suffix",
    }
    pinned_masthead = {"nytimes": "django-copy-number"}
    for i, pub in enumerate(pubs):
        icon_kind = pinned_icon.get(pub.slug, icon_labels[i])
        masthead_kind = pinned_masthead.get(pub.slug, masthead_labels[i])
        if not pub.latin:
            icon_kind = "non-latin-name"
        objects.extend(_field_objects(rng, pub, ICON, icon_kind, by_slug[pub.slug]))
        objects.extend(_field_objects(rng, pub, MASTHEAD, masthead_kind, by_slug[pub.slug]))

    for tenant, slug, kind, name in TENANTS:
        rows.append(RowPlan(model="tenant", slug=slug, name=slug, tenant=tenant))
        key = "icons/" + name
        if kind == "missing":
            objects.append(ObjectPlan(kind, TENANT_ICON, "none", None, key, slug, tenant, referenced=True))
        else:
            objects.append(
                ObjectPlan(
                    kind, TENANT_ICON, "storage", PRIMARY, name, slug, tenant, referenced=True, image=image_for(name, slug, rng)
                )
            )

    slugs = {p.slug for p in pubs}
    orphans = list(_ORPHANS)
    for n in range(count // 40):
        orphans.append(
            rng.choice([f"icons/banner_{2015 + n % 9}_{n:02d}.png", f"mastheads/draft_{n:03d}.jpg", f"icons/unused-{n:03d}.gif"])
        )
    for key in dict.fromkeys(orphans):
        stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if slugify(stem) in slugs:
            continue  # an orphan must match no slug
        objects.append(
            ObjectPlan(
                "orphan",
                MASTHEAD if key.startswith("mastheads/") else ICON,
                "boto3",
                PRIMARY,
                key,
                image=image_for(key, stem, rng, masthead=key.startswith("mastheads/")),
            )
        )

    # its canonical name ("icons/the-international-...-edition.png") is longer than the column's max_length 100
    long_name = "icons/the_international_association_of_very_long_newspaper_names_and_their_regional_weekly_supplements_icon.png"
    for key, raw in [
        ("icons/", b""),
        ("mastheads/", b""),
        ("downloads/", b""),
        ("icons/lemonde\t_icon.png", None),
        (long_name, None),
        ("icons//nytimes_icon.png", None),
    ]:
        objects.append(
            ObjectPlan(
                "refused", None, "boto3", PRIMARY, key, raw=raw, image=None if raw is not None else image_for(key, "??", rng)
            )
        )
    return Plan(seed=seed, count=count, rows=rows, objects=objects)


@dataclass
class _Field:
    """What each kind of object below is made from: the row's publication and field, the handle as typed."""

    rng: random.Random
    pub: Publication
    field_name: str
    row: RowPlan
    h: str

    @property
    def masthead(self) -> bool:
        return self.field_name == MASTHEAD

    @property
    def column(self) -> str:
        return "masthead" if self.masthead else "icon"

    @property
    def upload_to(self) -> str:
        return "mastheads/" if self.masthead else "icons/"

    @property
    def messy(self) -> Sequence[str]:
        return MASTHEAD_MESSY if self.masthead else ICON_MESSY

    def obj(self, kind: str, how: str, bucket: str | None, name: str, referenced: bool) -> ObjectPlan:
        image = image_for(name, self.pub.handle, self.rng, masthead=self.masthead) if bucket else None
        return ObjectPlan(kind, self.field_name, how, bucket, name, self.pub.slug, None, referenced, image=image)


def _none(f: _Field, kind: str) -> list[ObjectPlan]:
    f.row.empty[f.column] = None
    return []


def _canonical(f: _Field, kind: str) -> list[ObjectPlan]:
    ext = f.rng.choice([".jpg", ".png"] if f.masthead else [".png", ".ico", ".png", ".gif"])
    if f.pub.slug == "bbc" and not f.masthead:
        ext = ".ico"
    return [f.obj(kind, "django", PRIMARY, f.pub.slug + ext, True)]


def _messy_upload(f: _Field, kind: str) -> list[ObjectPlan]:
    pattern, h = f.rng.choice(f.messy), f.h
    if f.pub.slug == "nytimes":
        pattern = "{h}_icon_v2_final.png"
        h = "nytimes"
    if f.pub.slug == "suddeutsche-zeitung":
        pattern = "{h}_logo.png"
    return [f.obj(kind, "django", PRIMARY, pattern.format(h=h), True)]


def _collision_suffix(f: _Field, kind: str) -> list[ObjectPlan]:
    name = "lemonde_icon.png" if f.pub.slug == "lemonde" else f.rng.choice(f.messy[:3]).format(h=f.h)
    first = f.obj("superseded-upload", "django", PRIMARY, name, False)
    # Django keeps all of a name's suffixes ("a.b.png": ".b.png") and inserts its random string before them
    second = f.obj(
        "dotted-collision-suffix" if "." in name.rsplit(".", 1)[0] else "collision-suffix", "django", PRIMARY, name, True
    )
    return [first, second]


def _django_copy_number(f: _Field, kind: str) -> list[ObjectPlan]:
    name = f.rng.choice(MASTHEAD_COPY_NUMBER if f.masthead else ICON_COPY_NUMBER).format(h=f.h)
    if f.pub.slug == "nytimes":
        name = "NYTimes_Masthead_FINAL (1).JPG"
    return [f.obj(kind, "django", PRIMARY, name, True)]


def _non_latin_name(f: _Field, kind: str) -> list[ObjectPlan]:
    return [f.obj(kind, "django", PRIMARY, f.rng.choice(["{n}.png", "{n}_logo.png", "{n}.ico"]).format(n=f.pub.name), True)]


def _generic_name(f: _Field, kind: str) -> list[ObjectPlan]:
    return [f.obj(kind, "django", PRIMARY, f.rng.choice(GENERIC), True)]


def _staging(f: _Field, kind: str) -> list[ObjectPlan]:
    folder = f.pub.slug if f.rng.random() < 0.8 else f.pub.handle
    key = f.rng.choice(STAGING_MASTHEAD if f.masthead else STAGING_ICON).format(s=folder, h=f.h)
    if f.pub.slug == "el-pais" and not f.masthead:
        key = "downloads/el-pais/google_favicon/google_icon.png"
    f.row.empty[f.column] = f.rng.choice([None, ""])
    return [f.obj(kind, "boto3", PRIMARY, key, False)]


def _linker(f: _Field, kind: str) -> list[ObjectPlan]:
    f.row.empty[f.column] = f.rng.choice([None, ""])
    slug = f.pub.slug
    key = f.upload_to + (f"{slug}_masthead.jpg" if f.masthead else f.rng.choice([f"{slug}_icon.png", f"{f.h}_icon.png"]))
    return [f.obj(kind, "boto3", PRIMARY, key, False)]


def _missing(f: _Field, kind: str) -> list[ObjectPlan]:
    name = f.rng.choice([f.pub.slug + (".jpg" if f.masthead else ".png"), *f.messy]).format(h=f.h)
    key = f.upload_to + get_valid_filename(name)  # the name Django stored before the file went missing
    return [f.obj(kind, "none" if kind == "missing" else "boto3", None if kind == "missing" else LEGACY, key, True)]


_KINDS: dict[str, Callable[[_Field, str], list[ObjectPlan]]] = {
    "none": _none,
    "canonical": _canonical,
    "messy-upload": _messy_upload,
    "collision-suffix": _collision_suffix,
    "django-copy-number": _django_copy_number,
    "non-latin-name": _non_latin_name,
    "generic-name": _generic_name,
    "staging": _staging,
    "linker": _linker,
    "missing": _missing,
    "missing-legacy": _missing,
}


def _field_objects(rng: random.Random, pub: Publication, field_name: str, kind: str, row: RowPlan) -> list[ObjectPlan]:
    h = pub.handle if rng.random() < 0.7 else pub.handle.lower()
    make = _KINDS.get(kind)
    if make is None:
        raise ValueError(f"unknown kind {kind!r}")
    return make(_Field(rng, pub, field_name, row, h), kind)
