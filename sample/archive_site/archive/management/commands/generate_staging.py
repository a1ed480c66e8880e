"""`manage.py generate_staging --out DIR [--count 40] [--seed 7]`

The two local sources `mediacanon upload` takes, as migrations find them on disk:

- `DIR/scrape/downloads/<slug>/google_favicon/google_icon.png` (and `masthead/` folders): a scraper's nested
  folders, with `DIR/scrape/audit.csv` (slug, name, audit_status, notes) marking which slugs passed review;
  their rows exist with empty icon and masthead columns, so the live path links the uploads by slug;
- `DIR/media`: a MEDIA_ROOT whose files rows reference (messy names included) but that never reached S3.

Bad input on purpose, each of which the upload must report and get past: a zero-byte file, an HTML error page
saved as `.png`, a symlink loop, a file name that is not UTF-8, slugs that failed the audit, a slug the manifest
names and the tree lacks, and rows whose MEDIA_ROOT file is missing, empty or not an image.
Deterministic for a seed; a re-run rewrites the same files and keeps the rows.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from archive_site.archive import mess
from archive_site.archive.models import PublicationSource
from archive_site.tenants.models import TenantPublication
from mediacanon.core.naming import slugify

TOWNS = [
    "Aberdeen", "Bergen", "Cork", "Delft", "Esbjerg", "Faro", "Graz", "Haarlem", "Innsbruck", "Jena", "Kalmar",
    "Leuven", "Malmö", "Nantes", "Oulu", "Porto", "Québec", "Rijeka", "Salzburg", "Tartu", "Uppsala", "Vigo",
    "Würzburg", "Ystad", "Zadar",
]  # fmt: skip
TITLES = ["Evening Post", "Courier", "Morning Star", "Tribune"]


class Command(BaseCommand):
    help = "Generate a nested staging tree with an audit CSV, and a MEDIA_ROOT whose rows S3 never got (local files)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="folder to write scrape/ and media/ into")
        parser.add_argument("--count", type=int, default=40, help="publications in the scrape (default 40)")
        parser.add_argument("--media-count", type=int, default=12, help="rows whose file is only in MEDIA_ROOT (default 12)")
        parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")

    def handle(self, *args: Any, out: str, count: int, media_count: int, seed: int, **options: Any) -> None:
        if count < 8 or media_count < 4:
            raise CommandError("--count must be at least 8 and --media-count at least 4 (room for the bad input)")
        rng = random.Random(seed)
        root = Path(out)
        for part in ("scrape", "media"):
            shutil.rmtree(root / part, ignore_errors=True)  # rewritten from the seed
        names = _names(count + media_count)
        with transaction.atomic():
            scrape = self._scrape(root / "scrape", names[:count], rng)
            media = self._media_root(root / "media", names[count:], rng)
        self.stdout.write(
            f"staging tree: {root / 'scrape' / 'downloads'} ({scrape['slugs']} slugs, {scrape['files']} files; "
            f"audit {scrape['passed']} passed, {scrape['failed']} failed; bad input: {', '.join(scrape['bad'])})"
        )
        self.stdout.write(f"manifest: {root / 'scrape' / 'audit.csv'} (+1 slug the tree lacks)")
        self.stdout.write(
            f"MEDIA_ROOT: {root / 'media'} ({media['rows']} rows name {media['files']} local files; "
            f"bad input: {', '.join(media['bad'])})"
        )

    # ------------------------------------------------------------------------------------------ the scrape

    def _scrape(self, root: Path, names: list[str], rng: random.Random) -> dict[str, Any]:
        downloads = root / "downloads"
        lines = ["slug,name,audit_status,notes"]
        files = passed = failed = 0
        for i, name in enumerate(names):
            slug = slugify(name)
            PublicationSource.objects.get_or_create(slug=slug, defaults={"name": name})
            folder = downloads / slug
            verdict = "failed" if i % 7 == 6 else ("passed" if i % 2 else "Approved")
            lines.append(f"{slug},{name},{verdict},{'blurry scan' if verdict == 'failed' else ''}")
            passed += verdict != "failed"
            failed += verdict == "failed"
            icon = mess.image_for("google_icon.png", name, rng)
            if i == 1:
                _write(folder / "google_favicon/google_icon.png", b"")  # the download died: zero bytes
            elif i == 2:
                _write(folder / "google_favicon/google_icon.png", b"<html><body>429 Too Many Requests</body></html>")
            else:
                _write(folder / "google_favicon/google_icon.png", mess.render(icon))
            files += 1
            if i % 3 == 0:  # a second favicon: the first staging pattern, then the first name, wins; this one is reported
                _write(folder / "google_favicon/shortcut_icon.png", mess.render(icon))
                files += 1
            if i % 4 == 1:
                masthead = mess.image_for(f"{slug}_masthead.jpg", name, rng, masthead=True)
                _write(folder / f"masthead/{slug}_masthead.jpg", mess.render(masthead))
                files += 1
        # a symlink loop (a scraper's "latest" link pointing back up) and a name in Latin-1, not UTF-8
        loop_dir = downloads / slugify(names[4]) / "google_favicon"
        os.symlink("..", loop_dir / "latest")
        with open(os.path.join(os.fsencode(downloads / slugify(names[3]) / "google_favicon"), b"ic\xf4ne.png"), "wb") as f:
            f.write(mess.render(mess.image_for("icone.png", names[3], rng)))
        files += 1
        lines.append("gazette-inconnue,Gazette inconnue,passed,slug typed by hand")
        (root / "audit.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        bad = ["zero-byte", "not an image", "symlink loop", "name not UTF-8", f"{failed} failed audits", "unknown slug"]
        return {"slugs": len(names), "files": files, "passed": passed, "failed": failed, "bad": bad}

    # ------------------------------------------------------------------------------------------ MEDIA_ROOT

    def _media_root(self, media: Path, names: list[str], rng: random.Random) -> dict[str, Any]:
        files = 0
        for i, name in enumerate(names):
            slug = slugify(name)
            handle = name.replace(" ", "")
            icon = f"icons/{handle}_icon_final.png"
            masthead = f"mastheads/{name} (1).JPG" if i % 2 else None
            PublicationSource.objects.update_or_create(slug=slug, defaults={"name": name, "icon": icon, "masthead": masthead})
            if i == 0:
                continue  # the row names a file MEDIA_ROOT lost: reported missing, the row left as it is
            body = mess.render(mess.image_for(icon, name, rng))
            if i == 1:
                body = b""
            elif i == 2:
                body = b"%PDF-1.7\n% a press kit saved as the icon\n"
            _write(media / icon, body)
            files += 1
            if masthead:
                _write(media / masthead, mess.render(mess.image_for(masthead, name, rng, masthead=True)))
                files += 1
        # a tenant's FileSystemStorage keeps its files under its own folder, as its S3 location does
        TenantPublication.objects.update_or_create(
            tenant="acme", slug="acme-local", defaults={"icon": "icons/acme-local_logo.png"}
        )
        _write(media / "acme/icons/acme-local_logo.png", mess.render(mess.image_for("acme-local_logo.png", "Acme Local", rng)))
        files += 1
        return {"rows": len(names) + 1, "files": files, "bad": ["missing file", "zero-byte", "not an image"]}


def _names(n: int) -> list[str]:
    names = [f"{town} {title}" for title in TITLES for town in TOWNS]
    if n > len(names):
        raise CommandError(f"at most {len(names)} publications")
    return names[:n]


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
