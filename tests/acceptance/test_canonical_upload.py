"""canonical_upload_to from the side of its users: a Django site (tests/acceptance/canonical_site, django-storages' S3
backend on the session's emulator) saves files through ImageFields whose upload_to is canonical_upload_to, and they
arrive under their canonical keys; the live path of template.yaml (its handlers in this process, as
tests/acceptance/test_django_site.py runs them) then only mirrors them, renaming and relinking nothing.

Django runs in its own processes (`manage.py upload`, `manage.py migrate`): its settings never reach this one.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import yaml
from PIL import Image

from mediacanon.core import mediamap
from mediacanon.local import localrun
from mediacanon.local.localrun import LocalStack

pytestmark = pytest.mark.acceptance

REPO = Path(__file__).resolve().parents[2]
MANAGE = REPO / "tests" / "acceptance" / "canonical_site" / "manage.py"
TEMPLATE = REPO / "template.yaml"


def image(fmt: str, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, format=fmt)
    return buffer.getvalue()


def media_map_data(tag: str) -> dict[str, Any]:
    """The canonical site's media map: Publication's two fields, named from the row's slug."""
    field = {"table": "canonsite_publication", "slug_column": "slug", "include": ["*.png", "*.jpg", "*.jpeg", "*.ico"]}
    return {
        "buckets": {"primary": f"canon-media-{tag}", "cdn": f"canon-cdn-{tag}"},
        "defaults": {"policies": {"collision": "keep-both", "mirror_deletes": "delete", "retire": "delete"}},
        "fields": [
            {**field, "name": "canonsite.Publication.icon", "column": "icon", "upload_to": "icons/", "canonical": "icons/{slug}{ext}"},
            {**field, "name": "canonsite.Publication.masthead", "column": "masthead", "upload_to": "mastheads/",
             "canonical": "mastheads/{slug}{ext}"},
        ],
    }  # fmt: skip


@dataclass
class Site:
    env: dict[str, str]
    config: Path
    conninfo: str

    def manage(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(MANAGE), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def upload(self, *files: tuple[str, str, str, bytes]) -> tuple[list[str], str]:
        """(slug, field, filename, bytes) saved through Publication's ImageFields: the names Django stored, its stderr."""
        request = [{"slug": s, "field": f, "filename": n, "content": base64.b64encode(b).decode()} for s, f, n, b in files]
        proc = self.manage("upload", stdin=json.dumps(request))
        assert proc.returncode == 0, proc.stderr
        return list(json.loads(proc.stdout)), proc.stderr

    def rows(self) -> list[tuple[str, str | None, str | None]]:
        with psycopg.connect(self.conninfo) as conn:
            return [
                (r[0], r[1], r[2]) for r in conn.execute("SELECT slug, icon, masthead FROM canonsite_publication ORDER BY id")
            ]


@dataclass
class Live:
    site: Site
    media_map: mediamap.MediaMap
    stack: LocalStack
    s3: Any

    def keys(self, bucket: str) -> dict[str, bytes]:
        listed = self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _site(tmp_path: Path, conninfo: str, endpoint: str, data: dict[str, Any]) -> Site:
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MEDIACANON_", "MEDIASITE_", "CANONSITE_"))}
    env.update(
        DATABASE_URL=conninfo,
        AWS_ENDPOINT_URL=endpoint,
        CANONSITE_PRIMARY_BUCKET=data["buckets"]["primary"],
        CANONSITE_CDN_URL=f"{endpoint}/{data['buckets']['cdn']}",
        CANONSITE_MEDIAMAP=str(config),
        PYTHONIOENCODING="utf-8",
    )
    site = Site(env, config, conninfo)
    migrated = site.manage("migrate", "--verbosity", "0")
    assert migrated.returncode == 0, migrated.stderr  # the mediacanon checks run first, and pass
    return site


@pytest.fixture
def live(aws_endpoint: str, db_conninfo: str, tmp_path: Path) -> Iterator[Live]:
    """A fresh stack (the buckets, queues and rules of template.yaml) and the canonical site, migrated, on it."""
    tag = uuid.uuid4().hex[:8]
    data = media_map_data(tag)
    media_map = mediamap.parse(data)
    stack = localrun.provision_media_map(media_map, TEMPLATE, endpoint_url=aws_endpoint, stack_name=f"canon-{tag}")
    site = _site(tmp_path, db_conninfo, aws_endpoint, data)
    try:
        yield Live(site, media_map, stack, boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1"))
    finally:
        localrun.shutdown()  # closes the handlers' database connection before the test database is dropped


def settle(live: Live) -> str:
    report = localrun.run(live.stack, config=live.site.config, database_url=live.site.conninfo, progress=False, timeout=60)
    assert (report.failed_records, report.errors) == (0, []), report
    return report.line


UPLOADS = [
    ("nytimes", "icon", "NYTimes Icon v2 FINAL.png", image("PNG", (10, 20, 30))),  # the explicit form
    ("nytimes", "masthead", "NYTimes_Masthead_FINAL (1).JPEG", image("JPEG", (200, 10, 10))),  # the plain form, .jpeg
    ("sueddeutsche-zeitung", "icon", "Süddeutsche Zeitung_logo.png", image("PNG", (0, 90, 0))),  # unicode
]
CANONICAL = ["icons/nytimes.png", "mastheads/nytimes.jpg", "icons/sueddeutsche-zeitung.png"]


def test_uploads_arrive_under_their_canonical_keys_and_the_live_path_only_mirrors_them(live: Live) -> None:
    stored, _ = live.site.upload(*UPLOADS)

    assert stored == CANONICAL
    primary = live.keys(live.media_map.buckets.primary)
    assert primary == {key: body for key, (*_, body) in zip(CANONICAL, UPLOADS, strict=True)}
    line = settle(live)

    # no rename, no relink, nothing retired: only the CDN copies
    assert line == "DONE | normalized=0 mirrored=3 linked=0 retired=0 refused=0 failed=0"
    assert live.keys(live.media_map.buckets.cdn) == primary == live.keys(live.media_map.buckets.primary)
    assert live.site.rows() == [
        ("nytimes", "icons/nytimes.png", "mastheads/nytimes.jpg"),
        ("sueddeutsche-zeitung", "icons/sueddeutsche-zeitung.png", ""),  # how Django stores no file
    ]


def test_a_row_without_a_slug_yet_gets_upload_to_and_its_filename_a_warning_and_no_rename(live: Live) -> None:
    body = image("PNG", (1, 2, 3))
    stored, stderr = live.site.upload(("", "icon", "Mystery Logo.png", body))

    assert stored == ["icons/Mystery_Logo.png"]  # upload_to + the filename, as Django cleans it
    assert (
        "mediacanon: canonsite.Publication.icon: the row's slug is empty at save time, so 'Mystery Logo.png' is "
        "named 'icons/Mystery Logo.png' (upload_to and the file name), not its canonical key; the live path refuses that key "
        "while the row has no slug: set the slug before saving the file, or run `mediacanon backfill` once it is set" in stderr
    ), stderr
    assert live.keys(live.media_map.buckets.primary) == {"icons/Mystery_Logo.png": body}
    # the row gives no name, so the live path refuses the key and leaves it where it is (nothing lost, nothing mirrored)
    assert settle(live) == "DONE | normalized=0 mirrored=0 linked=0 retired=0 refused=1 failed=0"
    assert live.keys(live.media_map.buckets.primary) == {"icons/Mystery_Logo.png": body}
    assert live.keys(live.media_map.buckets.cdn) == {}
    assert live.site.rows() == [("", "icons/Mystery_Logo.png", "")]


def test_migrations_serialize_both_forms_and_an_unmapped_field_or_a_missing_map_is_a_clear_error(
    db_conninfo: str, tmp_path: Path
) -> None:
    data = media_map_data("errors")
    data["fields"] = data["fields"][:1]  # the masthead is not mapped
    site = _site(tmp_path, db_conninfo, "http://127.0.0.1:1", data)  # no S3 is reached: the name fails first
    # the committed migration is what the models deconstruct to: canonical_upload_to's two forms are serializable
    unchanged = site.manage("makemigrations", "--check", "--dry-run", "canonsite")
    assert unchanged.returncode == 0 and "No changes detected" in unchanged.stdout, unchanged.stdout + unchanged.stderr

    failed = site.manage("upload", stdin=json.dumps([{"slug": "bbc", "field": "masthead", "filename": "a.png", "content": ""}]))
    assert failed.returncode != 0
    assert (
        f"ImproperlyConfigured: mediacanon: the media map {site.config} has no field 'canonsite.Publication.masthead' "
        "(it maps: canonsite.Publication.icon). Add a fields entry named 'canonsite.Publication.masthead'"
    ) in failed.stderr, failed.stderr

    site.env["CANONSITE_MEDIAMAP"] = str(tmp_path / "nowhere.yaml")
    missing = site.manage(
        "upload", "--skip-checks", stdin=json.dumps([{"slug": "bbc", "field": "icon", "filename": "a.png", "content": ""}])
    )
    assert missing.returncode != 0
    assert (
        f"mediacanon: the media map named by settings.MEDIACANON_CONFIG cannot be used: {tmp_path / 'nowhere.yaml'}: file: "
        "does not exist"
    ) in missing.stderr, missing.stderr
    assert "Set MEDIACANON_CONFIG in the Django settings to the path of a valid media map" in missing.stderr
