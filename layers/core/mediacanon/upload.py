"""Staging uploads: local files into the primary bucket, where the live path takes over.

Two sources, one rule: a file is PUT into the primary bucket under a key the live path already knows, and
nothing else is written. normalize, replicate and link then canonicalize, mirror and relink it exactly as
they do a Django upload, so the invariants hold: upload never writes the CDN bucket or a row (I1, I3),
never overwrites, never deletes (I2, I5).

- a staging tree (`downloads/<slug>/google_favicon/icon.png`, nested at any depth): every file is named by
  the media map's staging patterns; each slug's image is picked per field (pattern order, then the first
  readable image), and an audit manifest (CSV) decides which slugs may go in at all;
- MEDIA_ROOT: rows whose file column names a key the primary bucket does not hold, and whose file is on
  the local disk, get that file under that very key. A row whose local file is missing is reported, never
  cleared.

"Already there" is S3's own checksum, compared without downloading: the ETag (a single-part upload's is the
MD5 of the bytes, a multipart one's the MD5 of the part MD5s, computed here with the transfer config's part
size) under the key itself, or under its canonical key once the live path has moved it there. That is also
what makes a run resumable: an object becomes visible only when its PUT (or CompleteMultipartUpload)
succeeds, so a second run skips exactly what landed and redoes what did not.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import queue
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import filetype
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.subscribers import BaseSubscriber
from s3transfer.utils import ChunksizeAdjuster

from mediacanon.adapters.s3 import translate_error
from mediacanon.copies import SOURCE_ETAG
from mediacanon.core import naming
from mediacanon.core.errors import MediacanonError, PermanentError, RetryableError, UnmappedKeyError, UnsafeKeyError
from mediacanon.core.mediamap import FieldMapping, MediaMap, StagingManifest

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.s3 import ObjectHead, S3Adapter

SNIFF_BYTES = 8192  # filetype reads at most 8 KiB; an SVG's root element comes early too
REPORT_COLUMNS = ("source", "outcome", "reason", "key", "field", "slug", "size", "content_type", "md5")


class Outcome(StrEnum):
    UPLOADED = "uploaded"
    WOULD_UPLOAD = "would-upload"  # --dry-run
    PRESENT = "present"  # the primary bucket already holds these bytes (under the key or its canonical key)
    CONFLICT = "conflict"  # the key holds other bytes: left alone, never overwritten
    NOT_PICKED = "not-picked"  # another file of the same slug and field was picked
    NOT_AUDITED = "not-audited"  # the manifest does not let this slug in
    MISSING = "missing"  # a row names a file that neither S3 nor MEDIA_ROOT holds: reported, row untouched
    UNMAPPED = "unmapped"  # no staging pattern of the media map names this file
    INVALID = "invalid"  # bad input: unreadable, symlink loop, zero bytes, not an image, name not UTF-8, manifest
    FAILED = "failed"  # the upload itself failed; a second run retries it


SUMMARY_ORDER = tuple(Outcome)


class BadInput(PermanentError):
    """A local file or manifest line that cannot be uploaded; the message says what is wrong and the fix."""


@dataclass(frozen=True)
class Item:
    """One line of the report: a local file (or a manifest line) and what became of it."""

    source: str
    outcome: Outcome
    reason: str = ""
    key: str | None = None
    field: str | None = None
    slug: str | None = None
    size: int | None = None
    content_type: str | None = None
    md5: str | None = None

    def row(self) -> list[str]:
        values = (
            self.source,
            self.outcome.value,
            self.reason,
            self.key,
            self.field,
            self.slug,
            self.size,
            self.content_type,
            self.md5,
        )
        return ["" if v is None else str(v) for v in values]


@dataclass
class Summary:
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    bytes_uploaded: int = 0

    def add(self, item: Item) -> None:
        self.counts[item.outcome] += 1
        if item.outcome == Outcome.UPLOADED and item.size:
            self.bytes_uploaded += item.size

    @property
    def line(self) -> str:
        return "UPLOAD | " + " ".join(f"{o.value}={self.counts[o]}" for o in SUMMARY_ORDER)

    @property
    def ok(self) -> bool:
        return self.counts[Outcome.FAILED] == 0


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text that can always be printed and written to CSV: undecodable bytes shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# -- the local side: walk, fingerprint -----------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    path: str  # as the OS names it
    rel: str  # relative to the walked root, '/'-separated, valid UTF-8


def walk(root: Path) -> Iterator[LocalFile | Item]:
    """Every regular file under `root`, at any depth, in name order; an Item for what cannot be one.

    A folder where a file was expected (`google_favicon/`) is descended into, never opened. Symlinks are
    followed, and one that leads back to a folder being walked is reported as a loop instead of walked forever.
    """
    try:
        top = os.stat(root)
    except OSError as exc:
        yield Item(display_path(root), Outcome.INVALID, f"cannot be read: {exc.strerror} (fix: pass an existing folder)")
        return
    if not stat.S_ISDIR(top.st_mode):
        yield Item(display_path(root), Outcome.INVALID, "is not a folder (fix: pass the folder holding the staging tree)")
        return
    yield from _walk(str(root), "", ((top.st_dev, top.st_ino),))


def _walk(path: str, rel: str, ancestors: tuple[tuple[int, int], ...]) -> Iterator[LocalFile | Item]:
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        yield Item(display_path(path), Outcome.INVALID, f"folder cannot be read: {exc.strerror} (fix: check its permissions)")
        return
    for entry in entries:
        shown = display_path(entry.path)
        try:
            entry.name.encode("utf-8")
        except UnicodeEncodeError:
            yield Item(
                shown,
                Outcome.INVALID,
                "name is not valid UTF-8, so it cannot be an S3 key (fix: rename it, e.g. `convmv -f latin1 -t utf8`)",
            )
            continue
        try:
            st = os.stat(entry.path)  # follows symlinks
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                yield Item(shown, Outcome.INVALID, "symlink loop (fix: remove or repoint the link)")
            elif exc.errno == errno.ENOENT:
                yield Item(shown, Outcome.INVALID, "dangling symlink: its target does not exist (fix: remove the link)")
            else:
                yield Item(shown, Outcome.INVALID, f"cannot be read: {exc.strerror}")
            continue
        child_rel = f"{rel}{entry.name}"
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                yield Item(shown, Outcome.INVALID, "symlink loop: leads back to a folder it is inside (fix: remove the link)")
                continue
            yield from _walk(entry.path, child_rel + "/", (*ancestors, ident))
        elif stat.S_ISREG(st.st_mode):
            yield LocalFile(entry.path, child_rel)
        else:
            yield Item(shown, Outcome.INVALID, "not a regular file (a FIFO, socket or device)")


@dataclass(frozen=True)
class Fingerprint:
    size: int
    md5: str
    etag: str  # the ETag S3 gives these bytes when uploaded with the transfer config
    content_type: str


def _open_binary(path: str) -> IO[bytes]:
    # one place that opens local files: the tests make it fail, as root reads any file whatever its mode
    return open(path, "rb")


def sniff_content_type(head: bytes) -> str | None:
    """The image type the bytes say (not the name): 'image/png', ...; None when they are not an image."""
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime) if str(kind.mime).startswith("image/") else None
    # SVG is XML text, which filetype does not sniff: look for its root element near the start
    text = head[:1024].lstrip().lower()
    if (text.startswith(b"<?xml") or text.startswith(b"<svg") or text.startswith(b"<!doctype svg")) and b"<svg" in head.lower():
        return "image/svg+xml"
    return None


def fingerprint(path: str, config: TransferConfig) -> Fingerprint:
    """Size, MD5, the ETag S3 will give the bytes, and the content type read from the bytes."""
    try:
        with _open_binary(path) as f:
            head = f.read(SNIFF_BYTES)
            if not head:
                raise BadInput("zero-byte file (fix: re-download it or remove it)")
            content_type = sniff_content_type(head)
            if content_type is None:
                kind = filetype.guess(head)
                raise BadInput(f"not an image ({kind.mime if kind else 'unknown type'}) (fix: replace it with the image)")
            size = os.fstat(f.fileno()).st_size
            whole = hashlib.md5(usedforsecurity=False)
            multipart = size >= config.multipart_threshold
            part_size = ChunksizeAdjuster().adjust_chunksize(config.multipart_chunksize, size) if multipart else size
            part_md5s: list[bytes] = []
            part = hashlib.md5(usedforsecurity=False)
            in_part = 0
            block = head
            while block:
                # cut parts exactly where the transfer manager cuts them, so the multipart ETag can be predicted
                while block:
                    take, block = block[: part_size - in_part], block[part_size - in_part :]
                    whole.update(take)
                    part.update(take)
                    in_part += len(take)
                    if in_part == part_size:
                        part_md5s.append(part.digest())
                        part, in_part = hashlib.md5(usedforsecurity=False), 0
                block = f.read(1024 * 1024)
    except OSError as exc:
        raise BadInput(f"cannot be read: {exc.strerror or exc} (fix: check its permissions)") from exc
    if in_part:
        part_md5s.append(part.digest())
    md5 = whole.hexdigest()
    etag = md5
    if multipart:
        etag = f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"
    return Fingerprint(size, md5, etag, content_type)


def same_checksum(local: Fingerprint, head: ObjectHead) -> bool:
    """True when the object holds the local bytes, by S3's checksum, never by downloading.

    A copy the live path made (normalize) keeps a single-part ETag, or records the source's in its metadata."""
    return head.size == local.size and (
        head.etag in (local.etag, local.md5) or head.metadata.get(SOURCE_ETAG) in (local.etag, local.md5)
    )


# -- the manifest --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """The audit verdict of every slug the manifest names (slugified, as the staging folders are read)."""

    source: str
    verdicts: dict[str, tuple[str, int]]  # slug -> (audit value, line)
    config: StagingManifest
    problems: tuple[Item, ...] = ()
    usable: bool = True  # False when the audit cannot be read at all: then no slug passes

    def admits(self, slug: str) -> tuple[bool, str]:
        if not self.usable:
            return False, f"the manifest {self.source} cannot be used (see its line in the report)"
        if slug not in self.verdicts:
            return False, f"slug not in the manifest {self.source}"
        value, line = self.verdicts[slug]
        if value.strip().lower() in {a.lower() for a in self.config.accepted}:
            return True, f"{self.config.audit_column}={value!r} (line {line})"
        return False, f"{self.config.audit_column}={value!r} on line {line} is not one of {list(self.config.accepted)}"


def parse_manifest(text: str, config: StagingManifest, source: str) -> Manifest:
    """Read an audit CSV. A missing column makes the whole manifest unusable (reported, nothing admitted);
    a bad line is reported and skipped."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in (config.slug_column, config.audit_column) if c not in columns]
    if missing:
        reason = (
            f"column(s) {missing} missing; it has {columns or 'no header'} "
            "(fix: rename the column, or set staging_manifest.slug_column / audit_column in the media map, "
            "or pass --slug-column / --audit-column)"
        )
        return Manifest(source, {}, config, (Item(source, Outcome.INVALID, reason),), usable=False)
    verdicts: dict[str, tuple[str, int]] = {}
    problems: list[Item] = []
    for raw in reader:
        row = {(k or "").strip(): (v or "") for k, v in raw.items() if isinstance(v, str)}
        line = reader.line_num
        slug_text = row.get(config.slug_column, "").strip()
        slug = naming.slugify(slug_text)
        if not slug:
            problems.append(Item(f"{source}:{line}", Outcome.INVALID, f"no usable slug in column {config.slug_column!r}"))
            continue
        value = row.get(config.audit_column, "").strip()
        if slug in verdicts and verdicts[slug][0].lower() != value.lower():
            earlier = verdicts[slug]
            problems.append(
                Item(
                    f"{source}:{line}",
                    Outcome.INVALID,
                    f"slug {slug!r} is audited twice ({earlier[0]!r} on line {earlier[1]}, {value!r} here): "
                    "the stricter verdict counts (fix: keep one line per slug)",
                    slug=slug,
                )
            )
            if value.lower() in {a.lower() for a in config.accepted}:
                continue  # keep the earlier, not-accepted verdict
        verdicts[slug] = (value, line)
    return Manifest(source, verdicts, config, tuple(problems))


def read_manifest(path: Path, config: StagingManifest) -> Manifest:
    source = display_path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # utf-8-sig: spreadsheets save CSV with a BOM
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc} (fix: pass the audit CSV's path)"
        return Manifest(source, {}, config, (Item(source, Outcome.INVALID, reason),), usable=False)
    except UnicodeDecodeError as exc:
        reason = f"is not UTF-8 text ({exc.reason} at byte {exc.start}) (fix: save it as UTF-8 CSV)"
        return Manifest(source, {}, config, (Item(source, Outcome.INVALID, reason),), usable=False)
    return parse_manifest(text, config, source)


# -- naming local files --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    file: LocalFile
    key: str
    resolution: naming.Resolution
    rank: int  # index of the staging pattern that named it: the earlier pattern is preferred


def staging_prefix(media_map: MediaMap, root_name: str, rels: Sequence[str]) -> str:
    """The key prefix under which the tree's files match the staging patterns: '' when DIR holds `downloads/`,
    'downloads/' when DIR is `downloads/` itself (and the field's location in front of either)."""
    options = [""]
    for mapping in media_map.fields:
        if not mapping.tenant_scoped:
            options += [mapping.location, f"{mapping.location}{root_name}/"]
    options.insert(1, f"{root_name}/")
    best, best_hits = "", -1
    for prefix in dict.fromkeys(options):
        hits = sum(1 for rel in rels if _staging_resolution(media_map, prefix + rel) is not None)
        if hits > best_hits:
            best, best_hits = prefix, hits
    return best


def _staging_resolution(media_map: MediaMap, key: str) -> tuple[naming.Resolution, int] | None:
    try:
        res = naming.resolve(media_map, key)
    except (UnsafeKeyError, UnmappedKeyError):
        return None
    if not res.rule.startswith("staging "):
        return None
    pattern = res.rule.removeprefix("staging ")
    rank = next((i for i, p in enumerate(res.field.staging) if repr(p) == pattern), len(res.field.staging))
    return res, rank


def classify(
    media_map: MediaMap, files: Iterable[LocalFile], prefix: str
) -> tuple[dict[tuple[str, str], list[Candidate]], list[Item]]:
    """Group the files by (field, slug), best candidate first; an Item for each file no staging pattern names."""
    groups: dict[tuple[str, str], list[Candidate]] = {}
    unnamed: list[Item] = []
    for f in files:
        key = prefix + f.rel
        try:
            naming.check_key(key)
        except UnsafeKeyError as exc:
            unnamed.append(Item(display_path(f.path), Outcome.INVALID, f"{exc.reason} (fix: rename it)", key=key))
            continue
        hit = _staging_resolution(media_map, key)
        if hit is None:
            why = "no staging pattern of the media map names it"
            try:
                naming.resolve(media_map, key)
            except (UnsafeKeyError, UnmappedKeyError) as exc:
                why = exc.reason
            else:
                why = "it is not under a staging folder (upload_to keys are Django's to write)"
            unnamed.append(Item(display_path(f.path), Outcome.UNMAPPED, why, key=key))
            continue
        res, rank = hit
        groups.setdefault((res.field.name, (res.tenant or "") + "/" + res.slug), []).append(Candidate(f, key, res, rank))
    for candidates in groups.values():
        candidates.sort(key=lambda c: (c.rank, c.key))
    return groups, unnamed


# -- the S3 side ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadJob:
    """A file that should be in the primary bucket and is not; `item` is its report line once uploaded."""

    path: str
    key: str
    content_type: str
    item: Item


Decision = Item | UploadJob


class _Done(BaseSubscriber):  # type: ignore[misc]
    def __init__(self, events: queue.Queue[tuple[str, Any]], job: UploadJob) -> None:
        self.events = events
        self.job = job

    def on_done(self, future: Any, **kwargs: Any) -> None:
        try:
            future.result()
        except BaseException as exc:  # reported per file by the main thread, which decides what is fatal
            self.events.put(("uploaded", (self.job, exc)))
        else:
            self.events.put(("uploaded", (self.job, None)))

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.events.put(("bytes", bytes_transferred))


@dataclass
class Uploader:
    """Runs decisions in parallel (reading, hashing, HEADs) and uploads through one boto3 transfer manager.

    `on_item` gets every report line in the calling thread, as it is decided; `on_bytes` the bytes sent."""

    s3: S3Adapter
    bucket: str
    transfer_config: TransferConfig = field(default_factory=TransferConfig)
    workers: int = 8
    dry_run: bool = False
    on_item: Callable[[Item], None] = lambda item: None
    on_bytes: Callable[[int], None] = lambda n: None
    on_task_done: Callable[[], None] = lambda: None  # a task ends with its last report line (after its upload)
    summary: Summary = field(default_factory=Summary)

    def emit(self, item: Item) -> None:
        self.summary.add(item)
        self.on_item(item)

    def run(self, tasks: Sequence[Callable[[], list[Decision]]]) -> Summary:
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        config = TransferConfig(
            multipart_threshold=self.transfer_config.multipart_threshold,
            multipart_chunksize=self.transfer_config.multipart_chunksize,
            max_concurrency=self.workers,
            preferred_transfer_client="classic",  # the CRT client is another code path; keep the one moto tests
        )

        def prepared(task: Callable[[], list[Decision]]) -> None:
            try:
                events.put(("prepared", task()))
            except BaseException as exc:  # not swallowed: handed to the main thread, which raises it
                events.put(("crashed", exc))

        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mediacanon-upload")
        manager = create_transfer_manager(self.s3.client, config)
        try:
            with manager:
                for task in tasks:
                    pool.submit(prepared, task)
                pending = len(tasks)
                while pending:
                    kind, payload = events.get()
                    if kind == "bytes":
                        self.on_bytes(payload)
                        continue
                    pending -= 1
                    if kind == "crashed":
                        raise payload
                    if kind == "prepared":
                        if not any(isinstance(d, UploadJob) for d in payload) or self.dry_run:
                            self.on_task_done()
                        for decision in payload:
                            if isinstance(decision, Item):
                                self.emit(decision)
                            elif self.dry_run:
                                self.emit(replace(decision.item, outcome=Outcome.WOULD_UPLOAD))
                            else:
                                # never an ACL: the bucket's policy decides access
                                manager.upload(
                                    decision.path,
                                    self.bucket,
                                    decision.key,
                                    extra_args={"ContentType": decision.content_type},
                                    subscribers=[_Done(events, decision)],
                                )
                                pending += 1
                    elif kind == "uploaded":
                        job, exc = payload
                        self.emit(self._uploaded(job, exc))
                        self.on_task_done()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return self.summary

    def _uploaded(self, job: UploadJob, exc: BaseException | None) -> Item:
        if exc is None:
            return job.item
        if isinstance(exc, ClientError):
            error: BaseException = translate_error(exc, f"upload s3://{self.bucket}/{job.key}")
        elif isinstance(exc, BotoCoreError | OSError):
            error = RetryableError(f"upload s3://{self.bucket}/{job.key}: {type(exc).__name__}: {exc}")
        elif isinstance(exc, MediacanonError):
            error = exc
        else:
            raise exc  # a cancelled transfer (Ctrl-C) or a bug: not a per-file outcome
        return replace(job.item, outcome=Outcome.FAILED, reason=f"{error} (fix: run the same command again; it resumes)")


def _checked(decide: Callable[[], Decision], base: Item) -> Decision:
    """A file whose S3 check fails (throttled, unreachable, no such bucket) is a failed line; the run goes on."""
    try:
        return decide()
    except MediacanonError as exc:
        return replace(base, outcome=Outcome.FAILED, reason=f"{exc} (fix: run the same command again; it resumes)")


def _decide(s3: S3Adapter, bucket: str, path: str, key: str, fp: Fingerprint, canonical_key: str | None, base: Item) -> Decision:
    """Present (same checksum under the key or, once the live path moved it, its canonical key), a conflict
    (other bytes under the key: never overwritten), or an upload."""
    item = replace(base, key=key, size=fp.size, md5=fp.md5, content_type=fp.content_type)
    head = s3.head(bucket, key)
    if head is not None:
        if same_checksum(fp, head):
            return replace(item, outcome=Outcome.PRESENT, reason="already in the primary bucket (same checksum)")
        return replace(
            item,
            outcome=Outcome.CONFLICT,
            reason=f"s3://{bucket}/{key} holds other bytes (ETag {head.etag}); left alone "
            "(fix: compare the two and delete the one you do not want, then run again)",
        )
    if canonical_key and canonical_key != key:
        target = s3.head(bucket, canonical_key)
        if target is not None and same_checksum(fp, target):
            return replace(item, outcome=Outcome.PRESENT, reason=f"already canonical as {canonical_key} (same checksum)")
    return UploadJob(path, key, fp.content_type, replace(item, outcome=Outcome.UPLOADED, reason=base.reason or "uploaded"))


# -- staging trees -------------------------------------------------------------------------------------------


def staging_tasks(
    media_map: MediaMap,
    s3: S3Adapter,
    root: Path,
    *,
    manifest: Manifest | None,
    key_prefix: str | None = None,
    transfer_config: TransferConfig | None = None,
) -> tuple[list[Item], list[Callable[[], list[Decision]]], str]:
    """Walk the tree and plan it: the report lines known at once (bad input, unnamed files, manifest lines),
    one task per (field, slug) that picks and checks its image, and the key prefix used."""
    config = transfer_config or TransferConfig()
    bucket = media_map.buckets.primary
    files: list[LocalFile] = []
    early: list[Item] = []
    for entry in walk(root):
        (files if isinstance(entry, LocalFile) else early).append(entry)  # type: ignore[arg-type]
    prefix = key_prefix if key_prefix is not None else staging_prefix(media_map, root.resolve().name, [f.rel for f in files])
    groups, unnamed = classify(media_map, files, prefix)
    early += unnamed
    if manifest is not None:
        early += manifest.problems
        in_tree = {slug.rsplit("/", 1)[-1] for _, slug in groups}
        for slug, (_, line) in sorted(manifest.verdicts.items(), key=lambda kv: kv[1][1]):
            if slug not in in_tree:
                early.append(
                    Item(
                        f"{manifest.source}:{line}",
                        Outcome.INVALID,
                        f"unknown slug {slug!r}: no staging folder of {display_path(root)} holds it "
                        "(fix: correct the slug, or scrape its folder)",
                        slug=slug,
                    )
                )
    tasks: list[Callable[[], list[Decision]]] = []
    for candidates in groups.values():
        slug = candidates[0].resolution.slug
        if manifest is not None:
            admitted, why = manifest.admits(slug)
            if not admitted:
                early += [_item(c, Outcome.NOT_AUDITED, why) for c in candidates]
                continue
        tasks.append(_pick_task(s3, bucket, candidates, config))
    return early, tasks, prefix


def _item(c: Candidate, outcome: Outcome, reason: str) -> Item:
    return Item(display_path(c.file.path), outcome, reason, key=c.key, field=c.resolution.field.name, slug=c.resolution.slug)


def _pick_task(s3: S3Adapter, bucket: str, candidates: list[Candidate], config: TransferConfig) -> Callable[[], list[Decision]]:
    def pick() -> list[Decision]:
        out: list[Decision] = []
        for i, c in enumerate(candidates):
            try:
                fp = fingerprint(c.file.path, config)
            except BadInput as exc:
                out.append(_item(c, Outcome.INVALID, str(exc)))
                continue
            base = _item(c, Outcome.UPLOADED, f"picked by staging {c.resolution.field.staging[c.rank]!r}")
            out.append(_checked(partial(_decide, s3, bucket, c.file.path, c.key, fp, c.resolution.canonical_key, base), base))
            out += [_item(o, Outcome.NOT_PICKED, f"{c.key} is this slug's image") for o in candidates[i + 1 :]]
            break
        return out

    return pick


# -- MEDIA_ROOT ----------------------------------------------------------------------------------------------


def media_root_path(mapping: FieldMapping, value: str, tenant: str | None) -> str:
    """Where Django's FileSystemStorage keeps a column value under MEDIA_ROOT: the value itself, behind the
    tenant's folder for a per-tenant location (the storage's S3 `location` prefix is MEDIA_ROOT's stand-in)."""
    return (naming.location_for(mapping, tenant) if mapping.tenant_scoped else "") + value


def media_root_tasks(
    media_map: MediaMap,
    s3: S3Adapter,
    db: Database,
    media_root: Path,
    *,
    fields: Sequence[str] = (),
    transfer_config: TransferConfig | None = None,
) -> tuple[list[Item], list[Callable[[], list[Decision]]]]:
    """One task per key some row names (several rows may name one key): upload it from MEDIA_ROOT if S3 lacks it."""
    config = transfer_config or TransferConfig()
    bucket = media_map.buckets.primary
    early: list[Item] = []
    tasks: list[Callable[[], list[Decision]]] = []
    seen: set[str] = set()
    for mapping in media_map.fields:
        if fields and mapping.name not in fields:
            continue
        db.check_field(mapping)
        for row in db.iter_rows(mapping):
            if not row.value:
                continue
            where = f"{mapping.table}.{mapping.column} row {row.id}"
            key = naming.key_for_value(mapping, row.value, row.tenant)
            rel = media_root_path(mapping, row.value, row.tenant)
            local = str(media_root / rel)
            try:
                naming.check_key(key)
                naming.check_key(rel)  # no '..' out of MEDIA_ROOT
            except UnsafeKeyError as exc:
                reason = f"{exc.reason} (fix: correct the row in Django)"
                early.append(Item(f"{where}: {row.value!r}", Outcome.INVALID, reason, key=key, field=mapping.name, slug=row.slug))
                continue
            if key in seen:
                continue
            seen.add(key)
            base = Item(local, Outcome.UPLOADED, f"named by {where}", key=key, field=mapping.name, slug=row.slug)
            tasks.append(_media_root_task(s3, bucket, local, key, base, config, media_map.buckets.fallbacks))
    return early, tasks


def _media_root_task(
    s3: S3Adapter, bucket: str, local: str, key: str, base: Item, config: TransferConfig, fallbacks: Sequence[str] = ()
) -> Callable[[], list[Decision]]:
    def check() -> list[Decision]:
        return [_checked(decide, base)]

    def decide() -> Decision:
        head = s3.head(bucket, key)
        if head is not None:
            return replace(base, outcome=Outcome.PRESENT, reason=f"already in the primary bucket ({base.reason})", size=head.size)
        try:
            st = os.stat(local)
        except FileNotFoundError:
            # a read-only fallback bucket holding the key is where the backfill's rows phase copies it in from
            fallback = next((b for b in fallbacks if s3.head(b, key) is not None), None)
            if fallback is not None:
                reason = (
                    f"{base.reason}: not in MEDIA_ROOT, but the read-only fallback s3://{fallback} holds it; the row is "
                    "left as it is (fix: run `mediacanon backfill`: it copies the file in from there)"
                )
            else:
                reason = f"{base.reason}: neither S3 nor MEDIA_ROOT holds it; the row is left as it is (fix: restore the file, or clear the row in Django)"
            return replace(base, outcome=Outcome.MISSING, reason=reason)
        except OSError as exc:
            reason = "symlink loop" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}"
            return replace(base, outcome=Outcome.INVALID, reason=f"{reason} ({base.reason})")
        if stat.S_ISDIR(st.st_mode):
            return replace(base, outcome=Outcome.INVALID, reason=f"is a folder, not a file ({base.reason}; fix: correct the row)")
        try:
            fp = fingerprint(local, config)
        except BadInput as exc:
            return replace(base, outcome=Outcome.INVALID, reason=f"{exc} ({base.reason})")
        # the row already names this key, so nothing canonical is looked for: the live path renames it next
        return _decide(s3, bucket, local, key, fp, None, base)

    return check


# -- the report ----------------------------------------------------------------------------------------------


class CsvReport:
    """Per-file outcomes, one CSV line written (and flushed) as each is decided: an interrupted run keeps its lines."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(REPORT_COLUMNS)

    def write(self, item: Item) -> None:
        self._writer.writerow(item.row())
        self._file.flush()

    def close(self) -> None:
        self._file.close()
