"""The S3 adapter against a real moto server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from support.helpers import ensure_bucket, put_if_absent

from mediacanon.adapters.s3 import S3Adapter
from mediacanon.core.errors import NotFoundError, PermanentError, PreconditionFailed

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
HEADERS = {
    "ContentType": "image/png",
    "CacheControl": "public, max-age=31536000",
    "ContentDisposition": 'inline; filename="nytimes.png"',
    "ContentLanguage": "en",
}
SMALL_PARTS = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)


def kept_headers(client: Any, bucket: str, key: str) -> dict[str, Any]:
    head = client.head_object(Bucket=bucket, Key=key)
    return {name: head.get(name) for name in (*HEADERS, "Metadata")}


@pytest.mark.parametrize(("size", "parts"), [(1024, None), (6 * MiB, 2)], ids=["single-request", "multipart"])
def test_copy_keeps_headers_and_metadata_at_every_size(
    s3_client: Any, bucket: Callable[[str], str], size: int, parts: int | None
) -> None:
    src, dst = bucket("src"), bucket("dst")
    body = os.urandom(size)
    s3_client.put_object(Bucket=src, Key="icons/NYT_icon.png", Body=body, Metadata={"uploaded-by": "django"}, **HEADERS)
    adapter = S3Adapter(s3_client, transfer_config=SMALL_PARTS)

    etag = adapter.copy(
        src, "icons/NYT_icon.png", dst, "icons/nytimes.png", metadata={"mediacanon-source-key": "icons/NYT_icon.png"}
    )

    # an ETag ending in -N is S3's mark of an N-part upload: the multipart path really ran
    assert etag.endswith(f"-{parts}") if parts else etag == hashlib.md5(body).hexdigest()  # noqa: S324
    assert kept_headers(s3_client, dst, "icons/nytimes.png") == {
        **HEADERS,
        "Metadata": {"uploaded-by": "django", "mediacanon-source-key": "icons/NYT_icon.png"},
    }
    assert adapter.get_bytes(dst, "icons/nytimes.png") == body
    head = adapter.head(dst, "icons/nytimes.png")
    assert head is not None and head.etag == etag and head.size == size


@pytest.mark.parametrize(("size", "parts"), [(1024, None), (6 * MiB, 2)], ids=["single-request", "multipart"])
def test_copy_keeps_the_source_tags_at_every_size(
    s3_client: Any, bucket: Callable[[str], str], size: int, parts: int | None
) -> None:
    """A single CopyObject copies the source's tags (x-amz-tagging-directive defaults to COPY:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html); a multipart copy's CreateMultipartUpload
    takes none from the source (https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html), so the
    adapter puts them on the copy itself."""
    src, dst = bucket("src"), bucket("dst")
    s3_client.put_object(Bucket=src, Key="icons/NYT_icon.png", Body=os.urandom(size), Tagging="owner=archive&note=a%20b%2Bc")
    tags = s3_client.get_object_tagging(Bucket=src, Key="icons/NYT_icon.png")["TagSet"]
    assert len(tags) == 2
    adapter = S3Adapter(s3_client, transfer_config=SMALL_PARTS)

    etag = adapter.copy(src, "icons/NYT_icon.png", dst, "icons/nytimes.png")

    assert etag.endswith(f"-{parts}") if parts else "-" not in etag  # the path under test really ran
    copied = s3_client.get_object_tagging(Bucket=dst, Key="icons/nytimes.png")["TagSet"]
    assert sorted(copied, key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])
    assert {t["Key"]: t["Value"] for t in copied} == {"owner": "archive", "note": "a b+c"}


def test_a_multipart_copy_of_an_untagged_source_has_no_tags(s3_client: Any, bucket: Callable[[str], str]) -> None:
    src, dst = bucket("src"), bucket("dst")
    s3_client.put_object(Bucket=src, Key="big.png", Body=os.urandom(6 * MiB))
    adapter = S3Adapter(s3_client, transfer_config=SMALL_PARTS)

    assert adapter.copy(src, "big.png", dst, "big.png").endswith("-2")
    assert s3_client.get_object_tagging(Bucket=dst, Key="big.png")["TagSet"] == []


def test_copy_with_a_stale_source_head_refuses_other_bytes(s3_client: Any, bucket: Callable[[str], str]) -> None:
    src = bucket("src")
    adapter = S3Adapter(s3_client)
    adapter.put_bytes(src, "a.png", b"old", "image/png")
    stale = adapter.head(src, "a.png")
    adapter.put_bytes(src, "a.png", b"new, other bytes", "image/png")
    assert stale is not None
    # S3 refuses the CopyObject through x-amz-copy-source-if-match; moto ignores that header and copies, so
    # here the adapter's own check of the returned ETag is what raises (the caller's retry redoes the copy)
    with pytest.raises(PreconditionFailed):
        adapter.copy(src, "a.png", src, "b.png", source_head=stale)


def test_copy_above_the_threshold_with_a_stale_source_head_writes_nothing(s3_client: Any, bucket: Callable[[str], str]) -> None:
    src = bucket("src")
    adapter = S3Adapter(s3_client, transfer_config=TransferConfig(multipart_threshold=1, multipart_chunksize=5 * MiB))
    adapter.put_bytes(src, "a.png", b"old", "image/png")
    stale = adapter.head(src, "a.png")
    adapter.put_bytes(src, "a.png", b"new, other bytes", "image/png")
    assert stale is not None
    # the managed copy's own HEAD carries If-Match: our ETag, which moto checks too: nothing is written
    with pytest.raises(PreconditionFailed):
        adapter.copy(src, "a.png", src, "b.png", source_head=stale)
    assert adapter.head(src, "b.png") is None


def test_listing_streams_across_pages(s3_client: Any, bucket: Callable[[str], str]) -> None:
    name = bucket("list")
    keys = [f"icons/{i:03d}.png" for i in range(25)]
    for key in keys:
        s3_client.put_object(Bucket=name, Key=key, Body=b"x")
    s3_client.put_object(Bucket=name, Key="other/x.png", Body=b"x")
    pages: list[Any] = []
    s3_client.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: pages.append(kw))
    objects = S3Adapter(s3_client).iter_objects(name, prefix="icons/", page_size=10)

    first = next(objects)
    assert (first.key, first.size, len(pages)) == ("icons/000.png", 1, 1)  # one page fetched, not the whole listing
    assert [first.key, *(o.key for o in objects)] == keys
    assert len(pages) == 3
    assert first.etag == hashlib.md5(b"x").hexdigest()  # noqa: S324 - quotes stripped


def test_delete_many_of_2500_keys_takes_3_requests(s3_client: Any, bucket: Callable[[str], str]) -> None:
    name = bucket("del")
    adapter = S3Adapter(s3_client)
    keys = [f"k/{i:04d}" for i in range(2500)]
    for key in keys[:30]:  # a missing key is not an error for DeleteObjects: most of the batch needs no upload
        adapter.put_bytes(name, key, b"x")
    requests: list[Any] = []
    s3_client.meta.events.register("after-call.s3.DeleteObjects", lambda **kw: requests.append(kw))

    result = adapter.delete_many(name, keys)

    assert (result.deleted, result.errors, len(requests)) == (2500, (), 3)
    assert list(adapter.iter_objects(name)) == []


def test_head_and_get_of_a_missing_key(s3_client: Any, bucket: Callable[[str], str]) -> None:
    name = bucket("head")
    adapter = S3Adapter(s3_client)
    assert adapter.head(name, "nope.png") is None
    with pytest.raises(NotFoundError):
        adapter.get_bytes(name, "nope.png")


def test_a_missing_bucket_is_permanent(s3_client: Any) -> None:
    with pytest.raises(PermanentError) as info:
        S3Adapter(s3_client).get_bytes("no-such-bucket-mediacanon", "k")
    assert not isinstance(info.value, NotFoundError)


def test_put_if_absent_writes_once(s3_client: Any, bucket: Callable[[str], str]) -> None:
    name = bucket("cond")
    adapter = S3Adapter(s3_client)
    assert put_if_absent(adapter, name, "claim.json", b"first", {"owner": "a"}) is True
    assert put_if_absent(adapter, name, "claim.json", b"second", {"owner": "b"}) is False
    assert adapter.get_bytes(name, "claim.json") == b"first"


def test_ensure_bucket_is_idempotent(s3_client: Any) -> None:
    adapter = S3Adapter(s3_client)
    name = f"ensure-{os.urandom(4).hex()}"
    ensure_bucket(adapter, name)
    ensure_bucket(adapter, name)
    assert adapter.put_bytes(name, "k", b"x", "text/plain") == hashlib.md5(b"x").hexdigest()  # noqa: S324


def test_delete_if_match_deletes_only_the_bytes_it_was_told_about(s3_client: Any, bucket: Callable[[str], str]) -> None:
    name = bucket("primary")
    s3 = S3Adapter(s3_client)
    old = s3.put_bytes(name, "icons/a_icon.png", b"old")
    new = s3.put_bytes(name, "icons/a_icon.png", b"new")  # saved over it after the ETag was read

    assert s3.delete_if_match(name, "icons/a_icon.png", old) is False
    assert s3.get_bytes(name, "icons/a_icon.png") == b"new"
    assert s3.delete_if_match(name, "icons/a_icon.png", new) is True
    assert s3.head(name, "icons/a_icon.png") is None
    assert s3.delete_if_match(name, "icons/a_icon.png", new) is False  # gone already
