"""Staging uploads, the local side: walking nested trees, sniffing bytes, predicting S3's checksum, reading the
audit manifest and picking each slug's image. No S3 here (tests/integration/test_upload*.py has it)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from PIL import Image

from mediacanon import upload
from mediacanon.adapters.s3 import ObjectHead
from mediacanon.copies import SOURCE_ETAG
from mediacanon.core import mediamap
from mediacanon.core.mediamap import StagingManifest
from mediacanon.upload import BadInput, LocalFile, Outcome

SAMPLE = mediamap.load(Path(__file__).resolve().parents[2] / "sample" / "mediamap.yaml")


def image(fmt: str = "PNG", size: tuple[int, int] = (4, 4)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, format=fmt)
    return out.getvalue()


def put(path: Path, body: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def walked(root: Path) -> tuple[list[str], dict[str, str]]:
    files, problems = [], {}
    for entry in upload.walk(root):
        if isinstance(entry, LocalFile):
            files.append(entry.rel)
        else:
            problems[Path(entry.source).name] = entry.reason
    return files, problems


# -- walk ----------------------------------------------------------------------------------------------------


def test_walk_descends_into_a_folder_where_a_file_was_expected(tmp_path: Path) -> None:
    put(tmp_path / "downloads/nytimes/google_favicon/google_icon.png", image())
    put(tmp_path / "downloads/nytimes/google_favicon/deeper/still/icon.png", image())
    put(tmp_path / "downloads/bbc/favicon.ico", image("ICO"))

    files, problems = walked(tmp_path)

    assert files == [
        "downloads/bbc/favicon.ico",
        "downloads/nytimes/google_favicon/deeper/still/icon.png",
        "downloads/nytimes/google_favicon/google_icon.png",
    ]
    assert problems == {}


def test_walk_reports_a_symlink_to_its_own_ancestor_as_a_loop(tmp_path: Path) -> None:
    put(tmp_path / "downloads/bbc/google_favicon/icon.png", image())
    os.symlink(tmp_path / "downloads", tmp_path / "downloads/bbc/google_favicon/back-up")

    files, problems = walked(tmp_path)

    assert files == ["downloads/bbc/google_favicon/icon.png"]
    assert "symlink loop" in problems["back-up"]


def test_walk_reports_a_self_referencing_symlink_and_a_dangling_one(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "d/self", tmp_path / "d/self")
    os.symlink(tmp_path / "d/nowhere.png", tmp_path / "d/dangling.png")

    files, problems = walked(tmp_path)

    assert files == []
    assert problems["self"].startswith("symlink loop")
    assert problems["dangling.png"].startswith("dangling symlink")


def test_walk_follows_a_symlink_to_a_file(tmp_path: Path) -> None:
    target = put(tmp_path / "elsewhere.png", image())
    (tmp_path / "d").mkdir()
    os.symlink(target, tmp_path / "d/linked.png")

    files, _ = walked(tmp_path)

    assert "d/linked.png" in files


def test_walk_reports_a_name_that_is_not_utf8_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    bad = os.path.join(os.fsencode(tmp_path / "d"), b"caf\xe9.png")
    with open(bad, "wb") as f:
        f.write(image())
    put(tmp_path / "d/good.png", image())

    entries = list(upload.walk(tmp_path))

    assert [e.rel for e in entries if isinstance(e, LocalFile)] == ["d/good.png"]
    [problem] = [e for e in entries if isinstance(e, upload.Item)]
    assert problem.source.endswith("caf\\xe9.png")  # printable, and names the byte
    assert "not valid UTF-8" in problem.reason


def test_walk_reports_a_fifo_without_opening_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block the walk forever

    files, problems = walked(tmp_path)

    assert files == []
    assert "not a regular file" in problems["pipe.png"]


def test_walk_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    [item] = list(upload.walk(tmp_path / "absent"))
    assert isinstance(item, upload.Item) and item.outcome == Outcome.INVALID


# -- bytes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (image("PNG"), "image/png"),
        (image("JPEG"), "image/jpeg"),
        (image("GIF"), "image/gif"),
        (image("ICO"), "image/x-icon"),
        (image("WEBP"), "image/webp"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
        (b"  <svg xmlns='http://www.w3.org/2000/svg'></svg>", "image/svg+xml"),
    ],
)
def test_content_type_comes_from_the_bytes(body: bytes, content_type: str) -> None:
    assert upload.sniff_content_type(body) == content_type


@pytest.mark.parametrize(
    "body", [b"<html><body>not found</body></html>", b"%PDF-1.7\n", b"plain text", b"<?xml version='1.0'?><rss/>"]
)
def test_what_is_not_an_image_has_no_content_type(body: bytes) -> None:
    assert upload.sniff_content_type(body) is None


def test_fingerprint_of_a_png_named_ico_says_png(tmp_path: Path) -> None:
    body = image("PNG")
    fp = upload.fingerprint(str(put(tmp_path / "favicon.ico", body)), TransferConfig())
    assert fp.content_type == "image/png"
    assert fp.md5 == fp.etag == hashlib.md5(body, usedforsecurity=False).hexdigest()
    assert fp.size == len(body)


def test_fingerprint_refuses_zero_bytes_and_non_images(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="zero-byte"):
        upload.fingerprint(str(put(tmp_path / "empty.png", b"")), TransferConfig())
    with pytest.raises(BadInput, match=r"not an image \(application/pdf\)"):
        upload.fingerprint(str(put(tmp_path / "doc.png", b"%PDF-1.7\n" + b"x" * 100)), TransferConfig())


def test_fingerprint_of_an_unreadable_file_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = put(tmp_path / "locked.png", image())

    def denied(p: str) -> Any:
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(upload.fingerprints, "_open_binary", denied)
    with pytest.raises(BadInput, match="cannot be read: Permission denied"):
        upload.fingerprint(str(path), TransferConfig())


def test_multipart_etag_is_the_md5_of_the_part_md5s(tmp_path: Path) -> None:
    mib = 1024 * 1024
    body = image() + os.urandom(11 * mib)
    config = TransferConfig(multipart_threshold=8 * mib, multipart_chunksize=5 * mib)
    parts = [body[i : i + 5 * mib] for i in range(0, len(body), 5 * mib)]
    expected = (
        hashlib.md5(b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts), usedforsecurity=False).hexdigest()
        + "-3"
    )

    fp = upload.fingerprint(str(put(tmp_path / "big.png", body)), config)

    assert len(parts) == 3
    assert fp.etag == expected
    assert fp.md5 == hashlib.md5(body, usedforsecurity=False).hexdigest()


def test_same_checksum_by_etag_or_by_the_live_paths_recorded_source_etag() -> None:
    fp = upload.Fingerprint(size=10, md5="a" * 32, etag="b" * 32 + "-2", content_type="image/png")
    assert upload.same_checksum(fp, ObjectHead("k", 10, "b" * 32 + "-2"))
    assert upload.same_checksum(fp, ObjectHead("k", 10, "c" * 32 + "-3", metadata={SOURCE_ETAG: "b" * 32 + "-2"}))
    assert upload.same_checksum(fp, ObjectHead("k", 10, "a" * 32))  # a single-part copy of the bytes
    assert not upload.same_checksum(fp, ObjectHead("k", 10, "d" * 32))
    assert not upload.same_checksum(fp, ObjectHead("k", 11, "a" * 32))


# -- manifest ------------------------------------------------------------------------------------------------

CONFIG = StagingManifest(slug_column="slug", audit_column="audit_status", accepted=("passed", "approved"))


def test_manifest_admits_accepted_verdicts_case_insensitively() -> None:
    text = "\ufeffslug,audit_status,notes\nnytimes,Passed,\nbbc, approved ,\nle-monde,failed,blurry\n"
    m = upload.parse_manifest(text.removeprefix("\ufeff"), CONFIG, "audit.csv")

    assert m.admits("nytimes")[0] and m.admits("bbc")[0]
    admitted, why = m.admits("le-monde")
    assert not admitted and "'failed' on line 4" in why
    assert m.admits("el-pais") == (False, "slug not in the manifest audit.csv")
    assert m.problems == ()


def test_manifest_reads_a_spreadsheet_bom(tmp_path: Path) -> None:
    path = tmp_path / "audit.csv"
    path.write_bytes("slug,audit_status\nnytimes,passed\n".encode("utf-8-sig"))
    assert upload.read_manifest(path, CONFIG).admits("nytimes")[0]


def test_manifest_slugs_are_read_like_folder_slugs() -> None:
    m = upload.parse_manifest("slug,audit_status\nSüddeutsche Zeitung,passed\n", CONFIG, "audit.csv")
    assert m.admits("suddeutsche-zeitung")[0]


def test_manifest_without_the_audit_column_admits_nothing_and_says_why() -> None:
    m = upload.parse_manifest("slug,status\nnytimes,passed\n", CONFIG, "audit.csv")

    assert not m.usable
    [problem] = m.problems
    assert problem.outcome == Outcome.INVALID
    assert "['audit_status'] missing" in problem.reason and "audit_column" in problem.reason
    assert not m.admits("nytimes")[0]


def test_manifest_with_other_column_names_from_the_config() -> None:
    config = StagingManifest(slug_column="publication", audit_column="qa", accepted=("ok",))
    m = upload.parse_manifest("publication,qa\nnytimes,OK\n", config, "audit.csv")
    assert m.admits("nytimes")[0]


def test_manifest_lines_without_a_slug_or_with_conflicting_verdicts_are_reported() -> None:
    text = "slug,audit_status\n,passed\nnytimes,failed\nnytimes,passed\n"
    m = upload.parse_manifest(text, CONFIG, "audit.csv")

    assert [p.source for p in m.problems] == ["audit.csv:2", "audit.csv:4"]
    assert not m.admits("nytimes")[0]  # the stricter verdict counts


def test_an_unreadable_or_non_utf8_manifest_is_one_line(tmp_path: Path) -> None:
    missing = upload.read_manifest(tmp_path / "absent.csv", CONFIG)
    (tmp_path / "latin1.csv").write_bytes("slug,audit_status\ncafé,passed\n".encode("latin-1"))
    latin1 = upload.read_manifest(tmp_path / "latin1.csv", CONFIG)

    assert not missing.usable and "cannot be read" in missing.problems[0].reason
    assert not latin1.usable and "not UTF-8" in latin1.problems[0].reason


# -- naming and picking --------------------------------------------------------------------------------------


def files(*rels: str) -> list[LocalFile]:
    return [LocalFile(f"/staging/{rel}", rel) for rel in rels]


def test_staging_prefix_is_found_whether_dir_holds_downloads_or_is_downloads() -> None:
    rels = ["nytimes/google_favicon/icon.png", "bbc/bbc_masthead.jpg"]
    assert upload.staging_prefix(SAMPLE, "downloads", rels) == "downloads/"
    assert upload.staging_prefix(SAMPLE, "scrape", ["downloads/" + r for r in rels]) == ""


def test_classify_groups_by_field_and_slug_best_pattern_first() -> None:
    groups, unnamed = upload.classify(
        SAMPLE,
        files(
            "downloads/nytimes/nytimes_icon.png",  # staging[2] 'downloads/{slug}/*icon*'
            "downloads/nytimes/google_favicon/b.png",  # staging[0]
            "downloads/nytimes/google_favicon/a.png",  # staging[0]
            "downloads/nytimes/masthead/nyt.jpg",
            "downloads/nytimes/readme.txt",
            "notes/todo.png",
        ),
        "",
    )

    icon = groups[("archive.PublicationSource.icon", "/nytimes")]
    assert [c.key for c in icon] == [
        "downloads/nytimes/google_favicon/a.png",
        "downloads/nytimes/google_favicon/b.png",
        "downloads/nytimes/nytimes_icon.png",
    ]
    assert icon[0].resolution.canonical_key == "icons/nytimes.png"
    assert [c.key for c in groups[("archive.PublicationSource.masthead", "/nytimes")]] == ["downloads/nytimes/masthead/nyt.jpg"]
    assert {i.key: i.outcome for i in unnamed} == {
        "downloads/nytimes/readme.txt": Outcome.UNMAPPED,
        "notes/todo.png": Outcome.UNMAPPED,
    }


def test_classify_reports_a_name_that_cannot_be_a_key() -> None:
    _, unnamed = upload.classify(SAMPLE, files("downloads/bbc/google_favicon/tab\there.png"), "")
    assert unnamed[0].outcome == Outcome.INVALID and "control characters" in unnamed[0].reason


class NoS3:
    """The pick decides on local bytes first; these tests stop it before it would ask S3."""

    def head(self, bucket: str, key: str) -> None:
        return None


def test_pick_skips_a_zero_byte_and_a_non_image_candidate_for_the_next_one(tmp_path: Path) -> None:
    put(tmp_path / "downloads/bbc/google_favicon/a.png", b"")
    put(tmp_path / "downloads/bbc/google_favicon/b.png", b"<html>403 Forbidden</html>")
    put(tmp_path / "downloads/bbc/google_favicon/c.png", image())
    put(tmp_path / "downloads/bbc/google_favicon/d.png", image())

    early, tasks, prefix = upload.staging_tasks(SAMPLE, NoS3(), tmp_path, manifest=None)  # type: ignore[arg-type]
    [task] = tasks
    decisions = task()

    assert early == [] and prefix == ""
    outcomes = [(d.key, d.outcome if isinstance(d, upload.Item) else "upload") for d in decisions]
    assert outcomes == [
        ("downloads/bbc/google_favicon/a.png", Outcome.INVALID),
        ("downloads/bbc/google_favicon/b.png", Outcome.INVALID),
        ("downloads/bbc/google_favicon/c.png", "upload"),
        ("downloads/bbc/google_favicon/d.png", Outcome.NOT_PICKED),
    ]


def test_manifest_gates_slugs_and_names_unknown_ones(tmp_path: Path) -> None:
    put(tmp_path / "downloads/bbc/google_favicon/icon.png", image())
    put(tmp_path / "downloads/cnn/google_favicon/icon.png", image())
    put(tmp_path / "downloads/rte/google_favicon/icon.png", image())
    manifest = upload.parse_manifest("slug,audit_status\nbbc,passed\ncnn,failed\nno-such-paper,passed\n", CONFIG, "audit.csv")

    early, tasks, _ = upload.staging_tasks(SAMPLE, NoS3(), tmp_path, manifest=manifest)  # type: ignore[arg-type]

    assert len(tasks) == 1  # bbc only
    assert sorted((i.slug, i.outcome) for i in early) == [
        ("cnn", Outcome.NOT_AUDITED),
        ("no-such-paper", Outcome.INVALID),
        ("rte", Outcome.NOT_AUDITED),
    ]
    unknown = next(i for i in early if i.slug == "no-such-paper")
    assert unknown.source == "audit.csv:4" and "unknown slug" in unknown.reason


def test_summary_line_counts_every_outcome() -> None:
    summary = upload.Summary()
    for outcome in (Outcome.UPLOADED, Outcome.UPLOADED, Outcome.MISSING, Outcome.INVALID):
        summary.add(upload.Item("x", outcome, size=5))
    assert summary.line.startswith("UPLOAD | uploaded=2 would-upload=0 present=0 conflict=0")
    assert "missing=1" in summary.line and "invalid=1" in summary.line and summary.ok
    assert summary.bytes_uploaded == 10


def test_media_root_path_keeps_the_tenant_folder() -> None:
    tenant_field = SAMPLE.field("tenants.TenantPublication.icon")
    icon = SAMPLE.field("archive.PublicationSource.icon")
    assert upload.media_root_path(tenant_field, "icons/acme-news.png", "acme") == "acme/icons/acme-news.png"
    assert upload.media_root_path(icon, "icons/bbc.ico", None) == "icons/bbc.ico"
