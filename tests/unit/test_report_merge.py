"""The report's merge at the size of a 10 M-object backfill (40,000 parts), against an in-memory S3 client that
keeps S3's multipart rules: memory flat whatever the number of parts, the documents byte-correct, the uploads
aborted on failure. The real S3Adapter runs; only the wire is faked (the moto test is tests/integration).

Amazon S3 multipart upload limits (Amazon S3 User Guide): "Maximum number of parts per upload: 10,000"; "Part
numbers: 1 to 10,000 (inclusive)"; "Part size: 5 MiB to 5 GiB. There is no minimum size limit on the last part of
your multipart upload.\""""

from __future__ import annotations

import csv
import hashlib
import json
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from mediacanon.adapters.s3 import S3Adapter
from mediacanon.backfill.report import (
    ITEM_SECONDS,
    PART_READERS,
    PART_SECONDS,
    S3_MAX_PART_BYTES,
    S3_MAX_PARTS,
    S3_MIN_PART_BYTES,
    UPLOAD_PART_BYTES,
    modeled_merge_seconds,
    parts_prefix,
    upload_part_bytes,
    write_streamed_report,
)
from mediacanon.backfill.results import CSV_FIELDS, REPORT_COUNTS
from mediacanon.core import mediamap
from mediacanon.core.errors import MediacanonError, PermanentError
from mediacanon.steps import Steps

MiB = 1024 * 1024
EXECUTION = "backfill-20261203T000000-abcdef"
PRIMARY = "archive-media"
MAP = mediamap.parse(
    {
        "buckets": {"primary": PRIMARY, "cdn": "archive-cdn", "fallbacks": []},
        "fields": [
            {
                "name": "archive.PublicationSource.icon",
                "table": "archive_publicationsource",
                "column": "icon",
                "slug_column": "slug",
                "upload_to": "icons/",
                "canonical": "icons/{slug}{ext}",
            }
        ],
    }
)
OUTCOMES = ("migrated", "linked", "missing", "orphan", "failed")


def part_items(index: int, per_part: int) -> list[dict[str, Any]]:
    """Part `index`'s items, made up from its number (~250 bytes each as JSON, a real item's size)."""
    return [
        {
            "phase": "objects",
            "key": f"icons/NYT_icon_{index:06d}_{n}.png",
            "outcome": OUTCOMES[(index + n) % len(OUTCOMES)],
            "canonical_key": f"icons/nytimes-{index:06d}-{n}.png",
            "detail": f'copied from "downloads/{index}/favicon, {n}.png"\nas is',  # quotes, commas, a newline
            "etag": hashlib.md5(f"{index}/{n}".encode()).hexdigest(),  # noqa: S324
        }
        for n in range(per_part)
    ]


def part_body(index: int, per_part: int) -> bytes:
    items = part_items(index, per_part)
    return json.dumps({"counts": dict(Counter(i["outcome"] for i in items)), "items": items}).encode()


@dataclass
class Upload:
    key: str
    sizes: list[int] = field(default_factory=list)
    sink: Any = None


class FakeClient:
    """The S3 calls the report makes: a listing of `parts` part keys whose bodies are made up on each GET (none is
    stored), and uploads written to files under `out` (outside what tracemalloc sees), with S3's multipart rules
    enforced (part numbers in order from 1, at most 10,000, each but the last at least `min_part` and at most 5 GiB)."""

    def __init__(self, parts: int, per_part: int, out: Path, min_part: int = S3_MIN_PART_BYTES) -> None:
        self.parts, self.per_part, self.out, self.min_part = parts, per_part, out, min_part
        self.uploads: dict[str, Upload] = {}  # in progress, by UploadId
        self.objects: dict[str, int] = {}  # key -> how many parts it was written in (0: one PutObject)
        self.aborted: list[str] = []
        self.gets = 0
        self.fail_get: int | None = None  # the part index whose GET fails
        self.fail_upload_part: int | None = None  # the upload part number S3 refuses
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ids = 0

    def _file(self, key: str) -> Path:
        return self.out / key.replace("/", "_")

    # -- reading
    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str, PaginationConfig: dict[str, int], **_: Any) -> Iterator[dict[str, Any]]:
        if Prefix != parts_prefix(MAP, EXECUTION):
            return  # no map run failed: no ResultWriter manifest
        now = datetime(2026, 12, 3, tzinfo=UTC)
        size = PaginationConfig["PageSize"]
        for start in range(0, self.parts, size):
            keys = (f"{Prefix}objects-{i:06d}.json" for i in range(start, min(start + size, self.parts)))
            yield {"Contents": [{"Key": k, "Size": 1, "ETag": '"e"', "LastModified": now} for k in keys]}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        index = int(Key.rsplit("-", 1)[1].split(".")[0])
        with self._lock:
            self.gets += 1
        if index == self.fail_get:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "GetObject")
        return {"Body": _Body(part_body(index, self.per_part))}

    # -- writing
    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        self.calls["put_object"] += 1
        self._file(Key).write_bytes(Body)
        self.objects[Key] = 0
        return {"ETag": '"single"'}

    def create_multipart_upload(self, Bucket: str, Key: str, ContentType: str) -> dict[str, Any]:
        self.calls["create_multipart_upload"] += 1
        with self._lock:
            self._ids += 1
            upload_id = f"u{self._ids}"
        self.uploads[upload_id] = Upload(Key, sink=self._file(f"{upload_id}.partial").open("wb"))
        return {"UploadId": upload_id}

    def upload_part(self, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes) -> dict[str, Any]:
        self.calls["upload_part"] += 1
        upload = self.uploads[UploadId]
        assert upload.key == Key and PartNumber == len(upload.sizes) + 1 and 1 <= PartNumber <= S3_MAX_PARTS
        if PartNumber == self.fail_upload_part:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "UploadPart")
        assert len(Body) <= S3_MAX_PART_BYTES
        upload.sizes.append(len(Body))
        upload.sink.write(Body)
        return {"ETag": f'"p{PartNumber}"'}

    def complete_multipart_upload(
        self,
        Bucket: str,
        Key: str,
        UploadId: str,
        MultipartUpload: dict[str, Any],
    ) -> dict[str, Any]:
        upload = self.uploads.pop(UploadId)
        assert MultipartUpload["Parts"] == [{"ETag": f'"p{n}"', "PartNumber": n} for n in range(1, len(upload.sizes) + 1)]
        # EntityTooSmall: "Your proposed upload is smaller than the minimum allowed object size" (every part but the last)
        assert all(size >= self.min_part for size in upload.sizes[:-1]), upload.sizes
        upload.sink.close()
        self._file(f"{UploadId}.partial").replace(self._file(Key))
        self.objects[Key] = len(upload.sizes)
        return {"ETag": f'"m-{len(upload.sizes)}"'}

    def abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str) -> dict[str, Any]:
        upload = self.uploads.pop(UploadId)
        upload.sink.close()
        self._file(f"{UploadId}.partial").unlink()
        self.aborted.append(Key)
        return {}

    def read(self, key: str) -> bytes:
        return self._file(key).read_bytes()


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


def steps_on(client: FakeClient) -> Steps:
    return Steps(MAP, S3Adapter(cast(Any, client)), cast(Any, None), cast(Any, None))


def merge(client: FakeClient, *, part_bytes: int = UPLOAD_PART_BYTES, traced: bool = False) -> tuple[Any, int, float]:
    """write_streamed_report over the fake: the report, the peak of traced memory (0 untraced), the seconds."""
    steps = steps_on(client)
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        report, keys = write_streamed_report(steps, EXECUTION, dry_run=False, part_bytes=part_bytes)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
    finally:
        if traced:
            tracemalloc.stop()
    base = f"{MAP.reports_prefix}{EXECUTION}/report"
    assert keys == (base + ".json", base + ".csv")
    return report, peak, seconds


def check_documents(client: FakeClient, report: Any) -> None:
    """report.json and report.csv read back: every part's items in key order, the counts the parts' sum."""
    base = f"{MAP.reports_prefix}{EXECUTION}/report"
    expected_counts: Counter[str] = Counter()
    document = json.loads(client.read(base + ".json"))
    rows = csv.DictReader(client.read(base + ".csv").decode("utf-8").splitlines(keepends=True))
    assert rows.fieldnames == CSV_FIELDS
    items, read = iter(document["items"]), 0
    for index in range(client.parts):
        part = json.loads(part_body(index, client.per_part))
        expected_counts.update(part["counts"])
        for item in part["items"]:
            assert next(items) == item
            assert next(rows) == {k: "" if item[k] is None else str(item[k]) for k in CSV_FIELDS}
            read += 1
    assert next(items, None) is None and next(rows, None) is None
    assert read == client.parts * client.per_part
    assert document["counts"] == report.counts == {k: expected_counts.get(k, 0) for k in REPORT_COUNTS}
    assert sum(document["counts"].values()) == read
    assert document["line"] == report.line and document["dry_run"] is False
    assert client.uploads == {} and client.aborted == []  # nothing left in progress


def test_the_upload_part_sizes_keep_s3s_multipart_limits() -> None:
    """Every part but the last at least 5 MiB and at most 5 GiB, never more than 10,000 of them, and 10,000 parts
    hold far more than a 10 M-object report (~3 GB of JSON): the part count is never what stops a report."""
    sizes = [upload_part_bytes(n) for n in range(1, S3_MAX_PARTS + 1)]
    assert sizes[0] == UPLOAD_PART_BYTES >= S3_MIN_PART_BYTES
    assert all(S3_MIN_PART_BYTES <= s < S3_MAX_PART_BYTES - UPLOAD_PART_BYTES for s in sizes)
    assert sizes == sorted(sizes)
    assert sum(sizes[:1000]) == 1000 * 8 * MiB  # the first 1,000 parts alone: ~8 GB, ~27 M items of JSON
    assert sum(sizes) >= 5 * 1024 * 1024 * MiB  # S3's largest object (5 TiB in the older guide) fits in 10,000
    with pytest.raises(PermanentError, match="10,000"):
        upload_part_bytes(S3_MAX_PARTS + 1)


def test_forty_thousand_parts_merge_in_flat_memory_into_byte_correct_documents(tmp_path: Path) -> None:
    """The count test: 40,000 parts (a 10 M-object backfill's) against 4,000. Both documents span many upload parts
    (a scaled-down 256 KiB part, the fake holding that as S3's minimum), so what memory holds is the same in both:
    the peak stays within 1.5x while the parts, items and bytes grow 10x. And the documents read back exactly."""
    peaks = {}
    for parts in (4_000, 40_000):
        client = FakeClient(parts, per_part=2, out=tmp_path / str(parts), min_part=256 * 1024)
        client.out.mkdir()
        report, peaks[parts], _ = merge(client, part_bytes=256 * 1024, traced=True)
        assert client.gets == parts
        base = f"{MAP.reports_prefix}{EXECUTION}/report"
        assert client.objects[base + ".json"] >= (5 if parts == 4_000 else 50)  # many upload parts, not one PUT
        check_documents(client, report)
    print(f"peak traced memory: {peaks}")
    assert peaks[40_000] < 1.5 * peaks[4_000]
    assert peaks[40_000] < 4 * MiB  # the 40,000 parts' JSON alone is ~18 MiB, their CSV ~12


def test_at_the_real_part_size_memory_holds_a_few_upload_parts(tmp_path: Path) -> None:
    """At the 8 MiB upload part and S3's own 5 MiB minimum: a report of 80,000 items (~18 MiB of JSON, ~12 of CSV)
    goes up in several parts each, and memory peaks at a few upload parts at most."""
    client = FakeClient(4_000, per_part=20, out=tmp_path)
    report, peak, seconds = merge(client, traced=True)
    base = f"{MAP.reports_prefix}{EXECUTION}/report"
    json_bytes, csv_bytes = (client._file(base + ext).stat().st_size for ext in (".json", ".csv"))
    print(
        f"80,000 items: peak {peak / MiB:.1f} MiB, JSON {json_bytes / MiB:.1f} MiB, CSV {csv_bytes / MiB:.1f} MiB, {seconds:.1f} s"
    )
    assert client.objects[base + ".json"] >= 3 and client.objects[base + ".csv"] >= 2
    check_documents(client, report)
    # at most, per document: the part being filled, one queued, one being sent and the next already taken
    assert peak < 2 * 4 * UPLOAD_PART_BYTES


def test_a_small_report_is_one_put_per_document(tmp_path: Path) -> None:
    client = FakeClient(3, per_part=2, out=tmp_path)
    report, _, _ = merge(client)
    check_documents(client, report)
    assert client.calls == {"put_object": 2}  # no multipart upload for a report under one upload part


def test_a_report_of_no_parts_is_still_two_documents(tmp_path: Path) -> None:
    client = FakeClient(0, per_part=2, out=tmp_path)
    report, _, _ = merge(client)
    check_documents(client, report)
    assert report.counts == dict.fromkeys(REPORT_COUNTS, 0)


@pytest.mark.parametrize("fault", ["a part's GET", "an upload part"])
def test_a_merge_that_fails_aborts_its_uploads_and_leaves_no_part_stored(tmp_path: Path, fault: str) -> None:
    """A part that cannot be read after both uploads have sent parts, or S3 refusing an upload part: the error
    reaches the task (Step Functions retries it) and both multipart uploads are aborted, no report written."""
    client = FakeClient(4_000, per_part=3, out=tmp_path, min_part=64 * 1024)
    if fault == "a part's GET":
        client.fail_get = 3_000
    else:
        client.fail_upload_part = 5
    with pytest.raises(MediacanonError, match="injected"):
        merge(client, part_bytes=64 * 1024)
    assert client.calls["create_multipart_upload"] == 2 and client.calls["upload_part"] >= 8
    assert client.uploads == {}
    assert sorted(client.aborted) == sorted(f"{MAP.reports_prefix}{EXECUTION}/report.{e}" for e in ("json", "csv"))
    assert client.objects == {}
    assert list(tmp_path.iterdir()) == []  # no partial upload's bytes left either


def test_parts_are_read_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PART_READERS GETs in flight at once (each GET here takes 20 ms: 320 parts one by one would take 6.4 s)."""
    client = FakeClient(320, per_part=1, out=tmp_path)
    inflight, most = 0, 0
    lock = threading.Lock()
    get = client.get_object

    def slow_get(Bucket: str, Key: str) -> dict[str, Any]:
        nonlocal inflight, most
        with lock:
            inflight += 1
            most = max(most, inflight)
        time.sleep(0.02)
        with lock:
            inflight -= 1
        return get(Bucket, Key)

    monkeypatch.setattr(client, "get_object", slow_get)
    report, _, _ = merge(client)
    check_documents(client, report)
    assert most == PART_READERS  # the GETs' overlap, counted: wall times on these shared cores are not asserted
    modeled = modeled_merge_seconds(320, PART_READERS, 0.02, list_latency=0, part_seconds=0, item_seconds=0)
    assert modeled == pytest.approx(0.4)


def test_the_time_model_of_a_ten_million_object_merge() -> None:
    """modeled_merge_seconds (docs/scale.md): the listing, then the GETs PART_READERS at a time, the CPU's work and
    the uploads, which overlap. 40,000 parts at 30 ms a GET wait 75 s; the CPU on the 10 M items dominates, and the
    whole fits Lambda's 900 s with room to spare."""
    reading = modeled_merge_seconds(40_000, PART_READERS, 0.03, list_latency=0, part_seconds=0)
    assert reading == pytest.approx(40_000 / PART_READERS * 0.03) == pytest.approx(75)
    assert modeled_merge_seconds(40_000, 1, 0.03, list_latency=0, part_seconds=0) == pytest.approx(16 * reading)
    assert modeled_merge_seconds(40_000, PART_READERS, 0.03, part_seconds=0) == pytest.approx(reading + 40 * 0.03)
    full = modeled_merge_seconds(40_000, PART_READERS, 0.03, items=10_000_000)
    assert full == pytest.approx(40 * 0.03 + 10_000_000 * ITEM_SECONDS + 40_000 * PART_SECONDS)
    assert reading < full < 900 / 2
    assert modeled_merge_seconds(40_000, PART_READERS, 0.03, items=20_000_000) > full
    # slow GETs make the reading the longest part: more readers then help
    assert modeled_merge_seconds(40_000, PART_READERS, 0.5, items=10_000_000) > full
