"""The report's merge against the session's moto server: report.json and report.csv streamed up as multipart uploads
(S3 checks the parts: every one but the last at least 5 MiB, "Amazon S3 multipart upload limits"), read back
byte-correct, and no upload left behind when the merge fails."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from mediacanon.adapters.s3 import S3Adapter
from mediacanon.backfill.report import S3_MIN_PART_BYTES, parts_prefix, write_part, write_streamed_report
from mediacanon.backfill.results import CSV_FIELDS, REPORT_COUNTS, BatchResult, Count
from mediacanon.core import mediamap
from mediacanon.core.errors import MediacanonError
from mediacanon.steps import Steps

pytestmark = pytest.mark.integration

EXECUTION = "backfill-20261203T000000-abcdef"
OUTCOMES: tuple[Count, ...] = ("migrated", "linked", "missing", "orphan", "failed")
PAD = "x" * 400  # ~500 bytes an item: 24 parts of 1,000 items are ~12 MB of JSON, ~11 of CSV


def batch(index: int, size: int) -> BatchResult:
    result = BatchResult()
    for n in range(size):
        result.add(OUTCOMES[(index + n) % 5], f"icons/p{index:03d}_{n}.png", f'"{PAD}", {index}\n{n}', f"icons/c{n}.png")
    return result


def steps_for(s3_client: Any, primary: str, archive_map: Callable[..., dict[str, Any]]) -> Steps:
    media_map = mediamap.parse(archive_map(primary, primary + "-cdn"))
    return Steps(media_map, S3Adapter(s3_client), cast(Any, None), cast(Any, None))


def read_back(s3_client: Any, primary: str, key: str) -> tuple[bytes, str]:
    head = s3_client.head_object(Bucket=primary, Key=key)
    return s3_client.get_object(Bucket=primary, Key=key)["Body"].read(), head["ETag"].strip('"')


def test_a_report_of_many_upload_parts_is_streamed_up_and_reads_back_exactly(
    s3_client: Any, bucket: Callable[[str], str], archive_map: Callable[..., dict[str, Any]]
) -> None:
    primary = bucket("primary")
    steps = steps_for(s3_client, primary, archive_map)
    results = [batch(i, 1_000) for i in range(24)]
    for i, result in enumerate(results):
        write_part(steps, EXECUTION, f"objects-{i:03d}", result)

    report, keys = write_streamed_report(steps, EXECUTION, dry_run=True, part_bytes=S3_MIN_PART_BYTES)

    (document, json_etag), (table, csv_etag) = (read_back(s3_client, primary, k) for k in keys)
    # an ETag ending in -N is S3's mark of an N-part upload: both went up in parts, and S3 took their sizes
    assert int(json_etag.rsplit("-", 1)[1]) >= 2 and int(csv_etag.rsplit("-", 1)[1]) >= 2
    assert len(document) > 2 * S3_MIN_PART_BYTES
    data = json.loads(document)
    expected = [item for result in results for item in result.items]
    assert data["items"] == expected
    assert list(csv.DictReader(io.StringIO(table.decode("utf-8"), newline=""))) == [
        {k: "" if item.get(k) is None else str(item[k]) for k in CSV_FIELDS} for item in expected
    ]
    summed: Counter[str] = Counter()
    for result in results:
        summed.update(result.counts)
    assert data["counts"] == report.counts == {k: summed.get(k, 0) for k in REPORT_COUNTS}
    assert data["line"] == report.line and data["line"].startswith("DRY RUN") and data["dry_run"] is True
    assert s3_client.list_multipart_uploads(Bucket=primary).get("Uploads", []) == []


def test_a_small_report_is_one_put_each(
    s3_client: Any, bucket: Callable[[str], str], archive_map: Callable[..., dict[str, Any]]
) -> None:
    primary = bucket("primary")
    steps = steps_for(s3_client, primary, archive_map)
    write_part(steps, EXECUTION, "objects-000", batch(0, 3))

    report, keys = write_streamed_report(steps, EXECUTION, dry_run=False)

    (document, json_etag), (table, csv_etag) = (read_back(s3_client, primary, k) for k in keys)
    assert "-" not in json_etag and "-" not in csv_etag  # one PutObject each
    assert json.loads(document)["items"] == batch(0, 3).items
    assert table.decode().splitlines()[0] == ",".join(CSV_FIELDS)
    assert s3_client.head_object(Bucket=primary, Key=keys[0])["ContentType"] == "application/json"
    assert s3_client.head_object(Bucket=primary, Key=keys[1])["ContentType"] == "text/csv"
    assert report.counts["migrated"] == 1


def test_a_merge_that_fails_midway_leaves_no_upload_and_no_report(
    s3_client: Any, bucket: Callable[[str], str], archive_map: Callable[..., dict[str, Any]]
) -> None:
    """A part that cannot be read after both documents have stored upload parts: the merge's error is raised, and both
    multipart uploads are aborted (S3 lists none in progress: no part left stored and billed)."""
    primary = bucket("primary")
    steps = steps_for(s3_client, primary, archive_map)
    for i in range(48):  # ~24 MB of JSON, ~22 of CSV: a fourth upload part handed over means the first is stored
        write_part(steps, EXECUTION, f"objects-{i:03d}", batch(i, 1_000))
    # read last, in key order: a part the bucket policy hides from the task, as S3 would answer it
    hidden = f"{parts_prefix(steps.map, EXECUTION)}objects-999.json"
    s3_client.put_object(Bucket=primary, Key=hidden, Body=b"{}")
    started: list[str] = []
    s3_client.meta.events.register("before-call.s3.UploadPart", lambda params, **_: started.append(params["url_path"]))

    def deny(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == hidden:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied for the test"}}, "GetObject")

    s3_client.meta.events.register("before-parameter-build.s3.GetObject", deny)

    with pytest.raises(MediacanonError, match="AccessDenied"):
        write_streamed_report(steps, EXECUTION, dry_run=False, part_bytes=S3_MIN_PART_BYTES)

    assert len(started) >= 2  # both uploads had parts stored when the merge failed
    assert s3_client.list_multipart_uploads(Bucket=primary).get("Uploads", []) == []
    listed = s3_client.list_objects_v2(Bucket=primary, Prefix=f"{steps.map.reports_prefix}{EXECUTION}/report")
    assert listed.get("KeyCount", 0) == 0
