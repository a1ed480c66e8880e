"""The report: each worker's outcomes as a part in S3, the map runs' failed children, merged into report.json and
report.csv a part at a time and streamed to S3 as they are written (multipart uploads): neither memory nor /tmp holds
more than a few upload parts, however many parts and items the backfill has."""

from __future__ import annotations

import csv
import io
import json
import math
import queue
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

from mediacanon.backfill.results import CSV_FIELDS, REPORT_COUNTS, BatchResult
from mediacanon.core.errors import PermanentError
from mediacanon.steps import Steps

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.core.mediamap import MediaMap

MiB = 1024 * 1024
# Amazon S3 multipart upload limits (S3 User Guide): "Maximum number of parts per upload: 10,000"; "Part size: 5 MiB
# to 5 GiB. There is no minimum size limit on the last part of your multipart upload."
S3_MIN_PART_BYTES, S3_MAX_PART_BYTES, S3_MAX_PARTS = 5 * MiB, 5 * 1024 * MiB, 10_000
UPLOAD_PART_BYTES = 8 * MiB  # a report's upload part: at 10 M items (~3 GB of JSON) some 360 of them
PART_GROWTH = 1_000  # upload parts of one size before the size doubles: ~8 GB at 8 MiB; 10,000 parts hold ~8 TB
LARGEST_PART_BYTES = 4 * 1024 * MiB  # the doubling stops here, a part's last item's worth under S3's 5 GiB


def upload_part_bytes(number: int, base: int = UPLOAD_PART_BYTES) -> int:
    """The size at which upload part `number` (from 1) is sent: `base` for the first 1,000, then doubling every
    1,000, so 10,000 parts are never the limit (S3's 5 TiB object is). Memory holds a few parts of this size."""
    if number > S3_MAX_PARTS:
        raise PermanentError(f"the report needs more than S3's {S3_MAX_PARTS:,} upload parts")
    return min(LARGEST_PART_BYTES, base << ((number - 1) // PART_GROWTH))


_ITEM_JSON = json.JSONEncoder(default=str).encode  # one encoder for every item (json.dumps makes one per call)


class _Aborted(Exception):
    """The merge failed: the upload it was feeding is aborted."""


_END = object()  # the document is complete
_ABORT = object()  # the merge failed


class _StreamedUpload:
    """One document (report.json or report.csv) uploaded while it is written: `write` gathers the bytes into an
    upload part, and a full part goes, through a queue one part deep, to S3Adapter.put_stream on a thread of its own,
    so the merge never waits for an upload unless two parts are ready at once. Memory: the part being filled, the one
    queued and the one being sent; no temporary file."""

    def __init__(self, s3: S3Adapter, bucket: str, key: str, content_type: str, pool: ThreadPoolExecutor, base: int) -> None:
        self.key = key
        self._base = base
        self._buffer = io.BytesIO()
        self._parts = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._sent: Future[str] = pool.submit(s3.put_stream, bucket, key, self._chunks(), content_type)

    def _chunks(self) -> Iterator[bytes]:
        while True:
            got = self._queue.get()
            if got is _END:
                return
            if got is _ABORT:
                raise _Aborted(self.key)
            assert isinstance(got, bytes)
            yield got

    def write(self, data: bytes) -> None:
        self._buffer.write(data)
        if self._buffer.tell() >= upload_part_bytes(self._parts + 1, self._base):
            self._hand(self._buffer.getvalue())
            self._buffer = io.BytesIO()
            self._parts += 1

    def _hand(self, item: object) -> None:
        """Queue `item` for the upload thread; if that thread has stopped (S3 refused a part), raise its error."""
        while True:
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                if self._sent.done():
                    self._sent.result()  # raises the upload's error
                    raise PermanentError(f"the upload of {self.key} ended before its last part") from None

    def finish(self) -> None:
        """The last part (it may be small, or the only one) and the end: the upload completes."""
        tail = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        if tail or not self._parts:
            self._hand(tail)
        self._hand(_END)

    def wait(self) -> str:
        return self._sent.result()

    def abort(self) -> None:
        """Stop the upload (put_stream aborts the multipart upload: no part stays stored), its own errors swallowed:
        the merge's error is the one to raise."""
        if not self._sent.done():
            with suppress(queue.Empty):
                self._queue.get_nowait()  # a part not yet taken is not sent: the upload stops after the one it sends
            with suppress(Exception):  # the thread stopped on its own error in the meantime
                self._hand(_ABORT)
        with suppress(Exception):  # _Aborted, or the upload's own error
            self._sent.result()


@dataclass(frozen=True)
class Report:
    counts: dict[str, int]
    dry_run: bool

    @property
    def line(self) -> str:
        shown = ("migrated", "linked", "missing", "skipped", "failed")
        extra = [k for k in REPORT_COUNTS if k not in shown and self.counts.get(k)]
        head = "DRY RUN" if self.dry_run else "DONE"
        return f"{head} | " + " ".join(f"{k}={self.counts.get(k, 0)}" for k in (*shown, *extra))


def write_streamed_report(
    steps: Steps, execution: str, *, dry_run: bool, part_bytes: int = UPLOAD_PART_BYTES, source: str | None = None
) -> tuple[Report, tuple[str, str]]:
    """Merge the parts into report.json and report.csv a part at a time, each streamed to S3 while it is written
    (S3Adapter.put_stream: a multipart upload, or one PutObject for a report under one upload part): memory holds
    the parts read ahead and a few upload parts of `part_bytes`, however large the report, and /tmp nothing. If the
    merge fails, both uploads are aborted (no part left stored). report.json is one JSON document
    {dry_run, items, counts, line}: the counts and the line follow the items, known only once every part is read;
    with `source` (Prepare's sourceLine: the listing, or the S3 Inventory and how stale it was) a "source" field
    after dry_run. Returns the report (counts only) and both keys."""
    primary = steps.map.buckets.primary
    base = f"{steps.map.reports_prefix}{execution}/report"
    with ThreadPoolExecutor(2, thread_name_prefix="report-upload") as pool:
        document = _StreamedUpload(steps.s3, primary, base + ".json", "application/json", pool, part_bytes)
        table = _StreamedUpload(steps.s3, primary, base + ".csv", "text/csv", pool, part_bytes)
        try:
            report = _merge(steps, execution, dry_run, document, table, source)
            for upload in (document, table):
                upload.finish()
            for upload in (document, table):
                upload.wait()
        except BaseException:
            for upload in (document, table):
                upload.abort()
            raise
    return report, (document.key, table.key)


def _merge(
    steps: Steps, execution: str, dry_run: bool, document: _StreamedUpload, table: _StreamedUpload, source: str | None
) -> Report:
    """Every part's items into both documents, in key order, then the failed children's; the counts summed."""
    counts: Counter[str] = Counter()
    table.write(_csv_rows([]))  # the header
    head = {"dry_run": dry_run} | ({} if source is None else {"source": source})
    document.write(json.dumps(head).encode()[:-1] + b', "items": [')
    separator = b""
    for part in chain(read_parts(steps, execution), failed_children(steps, execution)):  # one part at a time
        counts.update(part.get("counts", {}))
        items = part.get("items", [])
        if items:
            document.write(separator + ", ".join(map(_ITEM_JSON, items)).encode())
            separator = b", "
            table.write(_csv_rows(items, header=False))
    report = Report({k: counts.get(k, 0) for k in REPORT_COUNTS}, dry_run)
    document.write(
        b'], "counts": ' + json.dumps(report.counts).encode() + b', "line": ' + json.dumps(report.line).encode() + b"}"
    )
    return report


def _csv_rows(items: list[dict[str, Any]], *, header: bool = True) -> bytes:
    rows = io.StringIO(newline="")
    writer = csv.DictWriter(rows, fieldnames=CSV_FIELDS)
    if header:
        writer.writeheader()
    writer.writerows(items)
    return rows.getvalue().encode("utf-8")


def parts_prefix(media_map: MediaMap, execution: str) -> str:
    return f"{media_map.reports_prefix}{execution}/parts/"


def results_prefix(media_map: MediaMap, execution: str) -> str:
    """Where the map runs' ResultWriter puts each run's manifest.json and result files (one folder per map run)."""
    return f"{media_map.reports_prefix}{execution}/results"


def write_part(steps: Steps, execution: str, name: str, result: BatchResult) -> str:
    """One worker's outcomes as a JSON part of the execution's report. Named by what the worker was given, so
    a retried batch overwrites its own part instead of being counted twice."""
    key = f"{parts_prefix(steps.map, execution)}{name}.json"
    steps.s3.put_bytes(steps.map.buckets.primary, key, json.dumps(result.to_json(), default=str).encode(), "application/json")
    return key


PART_READERS = 16  # parts read side by side: at 10 M objects the report reads 40,000 of them within one Lambda
LIST_PAGE = 1_000  # the part keys one ListObjectsV2 answers
# The merge thread's CPU per item: parsed from its part, encoded as JSON and as a CSV row, written. Measured at ~13 us
# of CPU on the project's x86 test machine (json.loads ~2.6, the item's JSON ~4.5, its DictWriter row ~5.6); a
# 1,024 MB Lambda has some 0.58 of a vCPU (Lambda allocates CPU in proportion to memory, one vCPU at 1,769 MB): ~25 us.
ITEM_SECONDS = 25e-6
# The merge process's CPU per part, beside the GET's wait: botocore's request (signing, the HTTP exchange, the
# answer's parsing), the part's JSON parsed, the read-ahead's bookkeeping; ~1 ms on a full core, ~2 on a Lambda's.
PART_SECONDS = 2e-3
ITEM_BYTES = 550  # an item in both documents: ~300 bytes of JSON, ~250 of CSV
UPLOAD_BYTES_PER_SECOND = 50e6  # each document's one UploadPart at a time, 8 MiB parts


def modeled_merge_seconds(
    parts: int,
    readers: int = PART_READERS,
    get_latency: float = 0.03,
    *,
    items: int = 0,
    list_latency: float | None = None,
    item_seconds: float = ITEM_SECONDS,
    part_seconds: float = PART_SECONDS,
    upload_bytes_per_second: float = UPLOAD_BYTES_PER_SECOND,
) -> float:
    """The report task's modeled duration: the part keys listed a page at a time on the merge thread (one LIST per
    1,000 parts, `list_latency`, by default a GET's), then three things that overlap, the longest of them counting:
    the GETs' waits, `readers` at a time (read ahead while the merge works); the CPU's work (per item, and per part:
    its request and parsing; one Python process shares one GIL); and the two documents' uploads, side by side on
    their own threads. At 10 M objects (40,000 parts of 250 items, 30 ms a GET): 1 s of listing, 75 s of GETs,
    330 s of CPU, 55 s of uploads: ~330 s of the Lambda's 900. Used by docs/scale.md."""
    listing = math.ceil(parts / LIST_PAGE) * (get_latency if list_latency is None else list_latency)
    reading = math.ceil(parts / max(readers, 1)) * get_latency
    merging = items * item_seconds + parts * part_seconds
    uploading = items * ITEM_BYTES / 2 / upload_bytes_per_second
    return listing + max(reading, merging, uploading)


def read_parts(steps: Steps, execution: str) -> Iterator[dict[str, Any]]:
    """The execution's parts in key order, read ahead a few at a time (memory holds those, not all of them)."""
    primary = steps.map.buckets.primary
    with ThreadPoolExecutor(PART_READERS) as pool:
        ahead: deque[Future[bytes]] = deque()
        for obj in steps.s3.iter_objects(primary, parts_prefix(steps.map, execution)):
            ahead.append(pool.submit(steps.s3.get_bytes, primary, obj.key))
            if len(ahead) >= 2 * PART_READERS:
                yield json.loads(ahead.popleft().result())
        while ahead:
            yield json.loads(ahead.popleft().result())


def failed_children(steps: Steps, execution: str) -> Iterator[dict[str, Any]]:
    """The map runs' failed child executions, as parts: a batch that failed for good (within the map's tolerated
    failures, or before a redrive) wrote no part of its own, so without this its objects would be missing from the
    report. Read from each map run's ResultWriter manifest and its FAILED result files, in the shapes AWS documents
    (Step Functions developer guide, "ResultWriter (Map)": manifest.json lists ResultFiles by status; each result
    file is a JSON array of child executions with their Input, Error and Cause)."""
    primary = steps.map.buckets.primary
    for obj in steps.s3.iter_objects(primary, results_prefix(steps.map, execution) + "/"):
        if not obj.key.endswith("/manifest.json"):
            continue
        manifest = json.loads(steps.s3.get_bytes(primary, obj.key))
        for result_file in manifest.get("ResultFiles", {}).get("FAILED", []):
            for child in json.loads(steps.s3.get_bytes(primary, result_file["Key"])):
                yield _failed_child_part(child)


def _failed_child_part(child: dict[str, Any]) -> dict[str, Any]:
    """One failed child execution as a part: each object of its batch (or its row range) counted as failed, with
    the error as Lambda reported it (its type and message, not a JSON-escaped traceback)."""
    error = _child_error(child)
    given = json.loads(child.get("Input") or "{}")
    result = BatchResult()
    if "Items" in given:
        for item in given["Items"]:
            result.add("failed", str(item.get("Key", "")), f"batch failed: {error}")
    elif "range" in given:
        span = given["range"]
        where = f"{span.get('field')} ids from {span.get('start')!r} to {span.get('end')!r}"
        result.add("failed", "", f"rows {where} not checked: {error}", phase="rows")
    else:
        result.add("failed", "", f"{child.get('ExecutionArn', 'a child execution')} failed: {error}")
    return result.to_json()


def _child_error(child: dict[str, Any]) -> str:
    error, cause = str(child.get("Error") or "an error"), child.get("Cause") or ""
    try:
        lambda_error = json.loads(cause)  # a Lambda task's cause is its error as JSON: errorType, errorMessage, ...
    except (TypeError, ValueError):
        lambda_error = None
    if isinstance(lambda_error, dict) and "errorMessage" in lambda_error:
        return f"{lambda_error.get('errorType', error)}: {lambda_error['errorMessage']}"
    return f"{error}: {cause}" if cause else error
