"""Staging uploads on a real moto server and a real PostgreSQL: a generated nested staging tree with an audit
manifest and bad input, a generated MEDIA_ROOT whose rows name files S3 lacks; second runs upload nothing;
the live path takes the uploads over and a later run finds them under their canonical keys."""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from mediacanon import upload
from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.cli import main
from mediacanon.core import mediamap
from mediacanon.steps import ObjectEvent, Outcome, Steps
from mediacanon.upload import Outcome as Up

pytestmark = pytest.mark.integration

AUDIT = mediamap.StagingManifest(slug_column="slug", audit_column="audit_status", accepted=("passed", "approved"))


def image(seed: int, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, (seed * 7) % 256, 40)).save(out, format=fmt)
    return out.getvalue()


def md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


@dataclass
class Tree:
    root: Path
    manifest: Path
    expected: dict[str, bytes]  # key -> bytes that must land
    content_types: dict[str, str]


def staging_tree(root: Path, slugs: int = 12) -> Tree:
    """downloads/<slug>/google_favicon/google_icon.png for every slug, and the bad input a real scrape has."""
    expected: dict[str, bytes] = {}
    types: dict[str, str] = {}
    lines = ["slug,audit_status,notes"]
    for i in range(slugs):
        slug = f"paper-{i:02d}"
        fmt = ("PNG", "JPEG", "GIF")[i % 3]
        # the scraper named every file .png; the bytes say what it is
        body = image(i, fmt)
        write(root / f"downloads/{slug}/google_favicon/google_icon.png", body)
        key = f"downloads/{slug}/google_favicon/google_icon.png"
        expected[key] = body
        types[key] = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif"}[fmt]
        lines.append(f"{slug},{'Passed' if i % 2 else 'approved'},")
    # a second favicon of the same slug: one image per slug and field
    write(root / "downloads/paper-00/google_favicon/zz_other.png", image(99))
    # failed audit: never uploaded
    write(root / "downloads/rejected/google_favicon/google_icon.png", image(50))
    lines.append("rejected,failed,blurry")
    # zero bytes and not an image (an HTML error page saved as .png): reported; the slug's real image still goes in
    write(root / "downloads/paper-01/google_favicon/a_empty.png", b"")
    write(root / "downloads/paper-02/google_favicon/a_error.png", b"<html><body>429 Too Many Requests</body></html>")
    # a slug whose only file is not an image
    write(root / "downloads/broken/google_favicon/google_icon.png", b"<html>404</html>")
    lines.append("broken,passed,")
    # a symlink loop, a name that is not UTF-8, a file no staging pattern names
    for slug in ("paper-03", "paper-04"):
        (root / f"downloads/{slug}/google_favicon").mkdir(parents=True, exist_ok=True)
    os.symlink(root / "downloads", root / "downloads/paper-03/google_favicon/loop")
    bad = os.path.join(os.fsencode(root / "downloads/paper-04/google_favicon"), b"ic\xf4ne.png")
    with open(bad, "wb") as f:
        f.write(image(4))
    write(root / "downloads/paper-05/readme.txt", b"scraped 2026-11-01")
    # a slug the manifest names that the tree does not hold
    lines.append("no-such-paper,passed,")
    manifest = root.parent / "audit.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Tree(root, manifest, expected, types)


@dataclass
class Stack:
    media_map: mediamap.MediaMap
    s3: S3Adapter
    client: Any
    primary: str
    cdn: str
    conninfo: str
    config: Path

    def keys(self, bucket: str) -> set[str]:
        return {o.key for o in self.s3.iter_objects(bucket)}

    def run_staging(self, tree: Tree, *, dry_run: bool = False) -> tuple[upload.Summary, list[upload.Item]]:
        items: list[upload.Item] = []
        manifest = upload.read_manifest(tree.manifest, self.media_map.staging_manifest)
        early, tasks, _ = upload.staging_tasks(self.media_map, self.s3, tree.root, manifest=manifest)
        uploader = upload.Uploader(self.s3, self.primary, workers=4, dry_run=dry_run, on_item=items.append)
        for item in early:
            uploader.emit(item)
        return uploader.run(tasks), items

    def run_media_root(self, media_root: Path) -> tuple[upload.Summary, list[upload.Item]]:
        items: list[upload.Item] = []
        with Database(self.conninfo) as db:
            early, tasks = upload.media_root_tasks(self.media_map, self.s3, db, media_root)
        uploader = upload.Uploader(self.s3, self.primary, workers=4, on_item=items.append)
        for item in early:
            uploader.emit(item)
        return uploader.run(tasks), items

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def stack(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any, tmp_path: Path) -> Stack:
    primary, cdn = bucket("primary"), bucket("cdn")
    data = archive_map(primary, cdn)
    data["staging_manifest"] = {"slug_column": "slug", "audit_column": "audit_status", "accepted": ["passed", "approved"]}
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data))
    return Stack(mediamap.parse(data), S3Adapter(s3_client), s3_client, primary, cdn, archive_db, config)


def by_outcome(items: list[upload.Item]) -> dict[Up, set[str]]:
    out: dict[Up, set[str]] = {}
    for item in items:
        out.setdefault(item.outcome, set()).add(item.key or item.source)
    return out


# -- staging trees -------------------------------------------------------------------------------------------


def test_staging_tree_lands_each_audited_slugs_image_once_with_its_type_from_the_bytes(stack: Stack, tmp_path: Path) -> None:
    tree = staging_tree(tmp_path / "scrape")

    summary, items = stack.run_staging(tree)

    assert stack.keys(stack.primary) == set(tree.expected)
    assert stack.keys(stack.cdn) == set()  # upload never writes the CDN bucket: the live path does
    for key, body in tree.expected.items():
        head = stack.s3.head(stack.primary, key)
        assert head is not None
        assert (head.etag, head.content_type) == (md5(body), tree.content_types[key])
    got = by_outcome(items)
    assert got[Up.UPLOADED] == set(tree.expected)
    assert got[Up.NOT_PICKED] == {"downloads/paper-00/google_favicon/zz_other.png"}
    assert got[Up.NOT_AUDITED] == {"downloads/rejected/google_favicon/google_icon.png"}
    assert got[Up.UNMAPPED] == {"downloads/paper-05/readme.txt"}
    invalid = {Path(i.source).name: i.reason for i in items if i.outcome == Up.INVALID}
    assert invalid.keys() == {"a_empty.png", "a_error.png", "google_icon.png", "loop", "ic\\xf4ne.png", "audit.csv:16"}
    assert invalid["a_empty.png"].startswith("zero-byte file")
    assert invalid["a_error.png"].startswith("not an image")
    assert invalid["loop"].startswith("symlink loop")
    assert "not valid UTF-8" in invalid["ic\\xf4ne.png"]
    assert "unknown slug 'no-such-paper'" in invalid["audit.csv:16"]
    assert summary.counts[Up.UPLOADED] == 12 and summary.counts[Up.FAILED] == 0


def test_a_second_run_uploads_nothing(stack: Stack, tmp_path: Path) -> None:
    tree = staging_tree(tmp_path / "scrape")
    stack.run_staging(tree)
    puts: list[str] = []
    stack.client.meta.events.register("before-parameter-build.s3.PutObject", lambda params, **kw: puts.append(params["Key"]))

    summary, items = stack.run_staging(tree)

    assert puts == []
    assert summary.counts[Up.UPLOADED] == 0
    assert by_outcome(items)[Up.PRESENT] == set(tree.expected)


def test_dry_run_decides_everything_and_writes_nothing(stack: Stack, tmp_path: Path) -> None:
    tree = staging_tree(tmp_path / "scrape")

    summary, items = stack.run_staging(tree, dry_run=True)

    assert stack.keys(stack.primary) == set()
    assert by_outcome(items)[Up.WOULD_UPLOAD] == set(tree.expected)
    assert summary.counts[Up.UPLOADED] == 0


def test_other_bytes_under_the_key_are_a_conflict_and_are_never_overwritten(stack: Stack, tmp_path: Path) -> None:
    tree = staging_tree(tmp_path / "scrape", slugs=2)
    key = "downloads/paper-01/google_favicon/google_icon.png"
    stack.client.put_object(Bucket=stack.primary, Key=key, Body=b"someone else's bytes")

    summary, items = stack.run_staging(tree)

    assert stack.s3.get_bytes(stack.primary, key) == b"someone else's bytes"
    [conflict] = [i for i in items if i.outcome == Up.CONFLICT]
    assert conflict.key == key and "left alone" in conflict.reason
    assert summary.counts[Up.UPLOADED] == 1


def test_the_live_path_takes_over_and_a_later_run_finds_the_canonical_copy(stack: Stack, tmp_path: Path) -> None:
    stack.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('paper-00', NULL), ('paper-01', '')")
    tree = staging_tree(tmp_path / "scrape", slugs=2)
    stack.run_staging(tree)

    with Database(stack.conninfo) as db:
        steps = Steps(stack.media_map, stack.s3, db, Ledger(db, stack.media_map.schema), owner_wait_seconds=0)
        for n, key in enumerate(sorted(tree.expected)):
            seq = f"{n + 1:016X}"
            assert steps.normalize(ObjectEvent(stack.primary, key, True, sequencer=seq)).outcome == Outcome.NORMALIZED
        for key in sorted(stack.keys(stack.primary) - set(tree.expected)):
            assert steps.replicate(ObjectEvent(stack.primary, key, True)).outcome == Outcome.MIRRORED
        for n, key in enumerate(sorted(stack.keys(stack.cdn))):
            assert steps.link(ObjectEvent(stack.cdn, key, True, sequencer=f"{n + 10:016X}")).outcome == Outcome.LINKED

    assert sorted(stack.sql("SELECT slug, icon FROM archive_publicationsource ORDER BY slug")) == [
        ("paper-00", "icons/paper-00.png"),
        ("paper-01", "icons/paper-01.png"),
    ]
    assert stack.keys(stack.primary) == {"icons/paper-00.png", "icons/paper-01.png"}  # staging keys retired
    summary, items = stack.run_staging(tree)
    assert summary.counts[Up.UPLOADED] == 0
    present = [i for i in items if i.outcome == Up.PRESENT]
    assert {i.key for i in present} == set(tree.expected)
    assert all("already canonical as icons/" in i.reason for i in present)


# -- MEDIA_ROOT ----------------------------------------------------------------------------------------------


def test_media_root_uploads_what_rows_name_and_s3_lacks_and_reports_missing_files(stack: Stack, tmp_path: Path) -> None:
    media_root = tmp_path / "media"
    in_s3, local_png, local_jpg = image(1), image(2), image(3, "JPEG")
    stack.client.put_object(Bucket=stack.primary, Key="icons/bbc.ico", Body=in_s3)
    write(media_root / "icons/bbc.ico", b"an older local copy")  # S3 holds the key: the local file is not read
    write(media_root / "icons/nytimes_icon_v2_final.png", local_png)
    write(media_root / "mastheads/Le Monde (1).JPG", local_jpg)
    write(media_root / "icons/empty.png", b"")
    (media_root / "icons/folder.png").mkdir()
    stack.sql(
        "INSERT INTO archive_publicationsource (slug, icon, masthead) VALUES "
        "('bbc', 'icons/bbc.ico', NULL), ('nytimes', 'icons/nytimes_icon_v2_final.png', ''), "
        "('le-monde', NULL, 'mastheads/Le Monde (1).JPG'), ('gone', 'icons/gone.png', NULL), "
        "('empty', 'icons/empty.png', NULL), ('folder', 'icons/folder.png', NULL), ('evil', '../../etc/passwd', NULL), "
        "('twin', 'icons/nytimes_icon_v2_final.png', NULL)"
    )
    before = stack.sql("SELECT slug, icon, masthead FROM archive_publicationsource ORDER BY slug")

    summary, items = stack.run_media_root(media_root)

    assert stack.keys(stack.primary) == {"icons/bbc.ico", "icons/nytimes_icon_v2_final.png", "mastheads/Le Monde (1).JPG"}
    assert stack.s3.get_bytes(stack.primary, "icons/bbc.ico") == in_s3
    head = stack.s3.head(stack.primary, "mastheads/Le Monde (1).JPG")
    assert head is not None and (head.etag, head.content_type) == (md5(local_jpg), "image/jpeg")
    got = by_outcome(items)
    assert got[Up.UPLOADED] == {"icons/nytimes_icon_v2_final.png", "mastheads/Le Monde (1).JPG"}  # once, for two rows
    assert got[Up.PRESENT] == {"icons/bbc.ico"}
    assert got[Up.MISSING] == {"icons/gone.png"}
    assert got[Up.INVALID] == {"icons/empty.png", "icons/folder.png", "../../etc/passwd"}
    [missing] = [i for i in items if i.outcome == Up.MISSING]
    assert "row" in missing.reason and "left as it is" in missing.reason
    # the rows are the live path's to change: upload changed none, and cleared none
    assert stack.sql("SELECT slug, icon, masthead FROM archive_publicationsource ORDER BY slug") == before
    assert summary.ok

    again, _ = stack.run_media_root(media_root)
    assert (again.counts[Up.UPLOADED], again.counts[Up.PRESENT], again.counts[Up.MISSING]) == (0, 3, 1)


def test_media_root_keeps_a_tenants_folder(stack: Stack, tmp_path: Path) -> None:
    stack.sql(
        "CREATE TABLE tenants_tenantpublication (id serial PRIMARY KEY, tenant varchar(50), slug varchar(50), icon varchar(100))"
    )
    stack.sql(
        "INSERT INTO tenants_tenantpublication (tenant, slug, icon) VALUES ('acme', 'acme-news', 'icons/acme-news_icon.png')"
    )
    data = yaml.safe_load(stack.config.read_text())
    data["fields"].append(
        {"name": "tenants.TenantPublication.icon", "table": "tenants_tenantpublication", "column": "icon",
         "slug_column": "slug", "location": "{tenant}/", "tenant_column": "tenant", "upload_to": "icons/",
         "canonical": "icons/{slug}{ext}"}
    )  # fmt: skip
    stack.media_map = mediamap.parse(data)
    write(tmp_path / "media/acme/icons/acme-news_icon.png", image(7))

    summary, _ = stack.run_media_root(tmp_path / "media")

    assert stack.keys(stack.primary) == {"acme/icons/acme-news_icon.png"}
    assert summary.counts[Up.UPLOADED] == 1


# -- the command ---------------------------------------------------------------------------------------------


def test_upload_command_prints_each_problem_the_summary_and_writes_the_csv(
    stack: Stack, tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = staging_tree(tmp_path / "scrape")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MEDIACANON_STATE_DIR", str(tmp_path / "no-local-stack"))
    report = tmp_path / "outcomes.csv"
    # DIR is downloads/ itself: the key prefix 'downloads/' is found from the staging patterns
    args = [
        "upload",
        str(tree.root / "downloads"),
        "--manifest",
        str(tree.manifest),
        "--config",
        str(stack.config),
        "--report",
        str(report),
    ]

    result = CliRunner().invoke(main, args)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == (
        "UPLOAD | uploaded=12 would-upload=0 present=0 conflict=0 not-picked=1 not-audited=1 missing=0 unmapped=1 invalid=6 failed=0"
    )
    assert any(line.startswith("invalid: ") and "symlink loop" in line for line in lines)
    assert stack.keys(stack.primary) == set(tree.expected)
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    assert Counter(r["outcome"] for r in rows) == {"uploaded": 12, "invalid": 6, "not-picked": 1, "not-audited": 1, "unmapped": 1}
    assert {r["key"] for r in rows if r["outcome"] == "uploaded"} == set(tree.expected)

    again = CliRunner().invoke(main, [*args[:-2], "--dry-run"])
    assert again.exit_code == 0, again.output
    assert "UPLOAD | uploaded=0 would-upload=0 present=12" in again.output


def test_upload_command_with_a_manifest_missing_its_audit_column_uploads_nothing_and_exits_2(
    stack: Stack, tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = staging_tree(tmp_path / "scrape", slugs=3)
    tree.manifest.write_text("slug,status\npaper-00,passed\n", encoding="utf-8")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("MEDIACANON_STATE_DIR", str(tmp_path / "no-local-stack"))

    result = CliRunner().invoke(main, ["upload", str(tree.root), "--manifest", str(tree.manifest), "--config", str(stack.config)])

    # a manifest no slug can pass is wrong input: nothing starts, and the exit code says so
    assert result.exit_code == 2, result.output
    assert "['audit_status'] missing; it has ['slug', 'status']" in result.output
    assert "Traceback" not in result.output
    assert stack.keys(stack.primary) == set()

    by_flag = CliRunner().invoke(
        main,
        ["upload", str(tree.root), "--manifest", str(tree.manifest), "--config", str(stack.config), "--audit-column", "status"],
    )
    assert "uploaded=1 " in by_flag.output, by_flag.output  # paper-00 only: the others are not in the manifest


def test_a_failed_s3_check_fails_that_file_only(stack: Stack, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    tree = staging_tree(tmp_path / "scrape", slugs=4)
    doomed = "downloads/paper-02/google_favicon/google_icon.png"

    def throttle(params: dict[str, Any], **kwargs: Any) -> None:
        if params["Key"] == doomed:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "HeadObject")

    stack.client.meta.events.register("before-parameter-build.s3.HeadObject", throttle)

    summary, items = stack.run_staging(tree)

    [failed] = [i for i in items if i.outcome == Up.FAILED]
    assert failed.key == doomed and "SlowDown" in failed.reason
    assert stack.keys(stack.primary) == set(tree.expected) - {doomed}
    assert (summary.counts[Up.UPLOADED], summary.ok) == (3, False)
