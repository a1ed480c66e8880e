"""The exact S3 requests the adapter sends (botocore Stubber), and how it translates S3's errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import ANY, Stubber
from support.helpers import put_if_absent

from mediacanon.adapters.s3 import DeleteError, ObjectHead, S3Adapter
from mediacanon.core.errors import NotFoundError, PermanentError, PreconditionFailed, RetryableError

MiB = 1024 * 1024
HEADERS = {
    "ContentType": "image/png",
    "CacheControl": "max-age=60",
    "ContentDisposition": 'inline; filename="nyt.png"',
    "ContentEncoding": "identity",
    "ContentLanguage": "en",
}


@pytest.fixture
def client() -> Any:
    return boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def sent(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every request's (operation, params) as the adapter built them."""
    calls: list[tuple[str, dict[str, Any]]] = []
    client.meta.events.register("provide-client-params.s3.*", lambda params, model, **_: calls.append((model.name, dict(params))))
    return calls


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def head_response(size: int, etag: str = '"abc"', **headers: Any) -> dict[str, Any]:
    return {"ContentLength": size, "ETag": etag, "Metadata": {"uploaded-by": "django"}, **headers}


def test_copy_below_threshold_sends_one_copy_object_with_every_header_and_no_acl(
    client: Any, stub: Stubber, sent: list[Any]
) -> None:
    adapter = S3Adapter(client, transfer_config=TransferConfig(multipart_threshold=8 * MiB, use_threads=False))
    stub.add_response("head_object", head_response(100, **HEADERS), {"Bucket": "src", "Key": "icons/a_icon.png"})
    # below the multipart threshold: one CopyObject, whose answer carries the new ETag
    stub.add_response(
        "copy_object",
        {"CopyObjectResult": {"ETag": '"abc"'}},
        {
            "CopySource": {"Bucket": "src", "Key": "icons/a_icon.png"},
            "Bucket": "dst",
            "Key": "icons/a.png",
            "MetadataDirective": "REPLACE",
            "Metadata": {"uploaded-by": "django", "mediacanon-source-key": "icons/a_icon.png"},
            "CopySourceIfMatch": '"abc"',
            **HEADERS,
        },
    )

    etag = adapter.copy("src", "icons/a_icon.png", "dst", "icons/a.png", metadata={"mediacanon-source-key": "icons/a_icon.png"})

    assert etag == "abc"
    assert [op for op, _ in sent] == ["HeadObject", "CopyObject"]
    assert not [params for _, params in sent if any(k == "ACL" or k.startswith("Grant") for k in params)]


def test_copy_above_threshold_puts_the_headers_on_the_multipart_upload(client: Any, stub: Stubber, sent: list[Any]) -> None:
    adapter = S3Adapter(
        client, transfer_config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, use_threads=False)
    )
    size = 6 * MiB
    source = ObjectHead(
        "big.png",
        size,
        "abc",
        content_type="image/png",
        cache_control="max-age=60",
        content_disposition="inline",
        content_encoding="identity",
        content_language="en",
        metadata={"uploaded-by": "django"},
    )
    # CreateMultipartUpload copies no tags: the source's are read first, then put on the finished copy
    tags = [{"Key": "owner", "Value": "archive"}]
    stub.add_response("get_object_tagging", {"TagSet": tags}, {"Bucket": "src", "Key": "big.png"})
    stub.add_response("head_object", head_response(size, **HEADERS), {"Bucket": "src", "Key": "big.png", "IfMatch": '"abc"'})
    # a multipart upload has no MetadataDirective: the headers themselves must be on CreateMultipartUpload
    stub.add_response(
        "create_multipart_upload",
        {"UploadId": "u1"},
        {
            "Bucket": "dst",
            "Key": "big.png",
            "Metadata": {"uploaded-by": "django"},
            "ContentType": "image/png",
            "CacheControl": "max-age=60",
            "ContentDisposition": "inline",
            "ContentEncoding": "identity",
            "ContentLanguage": "en",
        },
    )
    for part, byte_range in ((1, f"bytes=0-{5 * MiB - 1}"), (2, f"bytes={5 * MiB}-{size - 1}")):
        stub.add_response(
            "upload_part_copy",
            {"CopyPartResult": {"ETag": f'"p{part}"'}},
            {
                "CopySource": {"Bucket": "src", "Key": "big.png"},
                "Bucket": "dst",
                "Key": "big.png",
                "UploadId": "u1",
                "PartNumber": part,
                "CopySourceRange": byte_range,
                "CopySourceIfMatch": ANY,
            },
        )
    stub.add_response(
        "complete_multipart_upload",
        {"ETag": '"m-2"'},
        {
            "Bucket": "dst",
            "Key": "big.png",
            "UploadId": "u1",
            "MultipartUpload": {"Parts": [{"ETag": '"p1"', "PartNumber": 1}, {"ETag": '"p2"', "PartNumber": 2}]},
        },
    )
    stub.add_response("head_object", head_response(size, '"m-2"'), {"Bucket": "dst", "Key": "big.png"})
    stub.add_response("put_object_tagging", {}, {"Bucket": "dst", "Key": "big.png", "Tagging": {"TagSet": tags}})

    assert adapter.copy("src", "big.png", "dst", "big.png", source_head=source) == "m-2"
    assert not [params for _, params in sent if "ACL" in params]


def test_copy_of_a_missing_source_is_not_found(client: Any, stub: Stubber) -> None:
    stub.add_client_error("head_object", "404", http_status_code=404)
    with pytest.raises(NotFoundError):
        S3Adapter(client).copy("src", "gone.png", "dst", "gone.png")


def test_delete_many_sends_batches_of_1000_quietly_and_collects_per_key_errors(client: Any, stub: Stubber) -> None:
    keys = [f"k/{i:04d}" for i in range(2500)]
    for start, end in ((0, 1000), (1000, 2000), (2000, 2500)):
        errors = [{"Key": "k/2001", "Code": "AccessDenied", "Message": "no"}] if start == 2000 else []
        stub.add_response(
            "delete_objects",
            {"Errors": errors},
            {"Bucket": "b", "Delete": {"Objects": [{"Key": k} for k in keys[start:end]], "Quiet": True}},
        )

    result = S3Adapter(client).delete_many("b", iter(keys))

    assert result.deleted == 2499
    assert result.errors == (DeleteError("k/2001", "AccessDenied", "no"),)
    with pytest.raises(PermanentError, match="k/2001"):
        result.raise_for_errors("b")


def test_delete_many_of_nothing_sends_nothing(client: Any, stub: Stubber) -> None:
    assert S3Adapter(client).delete_many("b", []).deleted == 0


def test_a_slow_down_on_one_key_is_retryable(client: Any, stub: Stubber) -> None:
    stub.add_response("delete_objects", {"Errors": [{"Key": "a", "Code": "SlowDown", "Message": "slow"}]})
    with pytest.raises(RetryableError):
        S3Adapter(client).delete_many("b", ["a"]).raise_for_errors("b")


@pytest.mark.parametrize(
    ("code", "status", "expected", "not_expected"),
    [
        ("SlowDown", 503, RetryableError, None),
        ("ServiceUnavailable", 503, RetryableError, None),
        ("InternalError", 500, RetryableError, None),
        ("RequestTimeout", 400, RetryableError, None),
        ("RequestTimeTooSkewed", 403, RetryableError, None),
        ("Throttling", 400, RetryableError, None),
        ("SomethingNew", 502, RetryableError, None),  # unknown code, 5xx status
        ("AccessDenied", 403, PermanentError, NotFoundError),
        ("NoSuchBucket", 404, PermanentError, NotFoundError),
        ("InvalidObjectState", 403, PermanentError, None),
        ("NoSuchKey", 404, NotFoundError, None),
        ("PreconditionFailed", 412, PreconditionFailed, None),
    ],
)
def test_client_errors_are_translated_by_code(
    client: Any, stub: Stubber, code: str, status: int, expected: type[Exception], not_expected: type[Exception] | None
) -> None:
    stub.add_client_error(
        "get_object", service_error_code=code, service_message="the message is never parsed", http_status_code=status
    )
    with pytest.raises(expected) as info:
        S3Adapter(client).get_bytes("b", "k")
    assert isinstance(info.value.__cause__, ClientError)
    assert code in str(info.value)
    if not_expected is not None:
        assert not isinstance(info.value, not_expected)
    if expected is PermanentError:
        assert not isinstance(info.value, RetryableError)


def test_head_of_a_missing_key_is_none_but_forbidden_is_an_error(client: Any, stub: Stubber) -> None:
    stub.add_client_error("head_object", "404", http_status_code=404)
    stub.add_client_error("head_object", "403", http_status_code=403)
    adapter = S3Adapter(client)
    assert adapter.head("b", "missing") is None
    with pytest.raises(PermanentError):
        adapter.head("b", "forbidden")


@pytest.mark.parametrize("error", [EndpointConnectionError(endpoint_url="http://s3"), ReadTimeoutError(endpoint_url="http://s3")])
def test_connection_failures_are_retryable(client: Any, error: Exception) -> None:
    def fail(**_: Any) -> None:
        raise error

    client.meta.events.register("before-send.s3.GetObject", fail)
    adapter = S3Adapter(client)
    with pytest.raises(RetryableError) as info:
        adapter.get_bytes("b", "k")
    assert info.value.__cause__ is error


def test_put_if_absent_sends_if_none_match_and_reports_a_taken_key(client: Any, stub: Stubber) -> None:
    expected = {"Bucket": "b", "Key": "k", "Body": b"x", "IfNoneMatch": "*", "Metadata": {"a": "1"}}
    stub.add_response("put_object", {"ETag": '"e"'}, expected)
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412, expected_params=expected)
    adapter = S3Adapter(client)
    assert put_if_absent(adapter, "b", "k", b"x", {"a": "1"}) is True
    assert put_if_absent(adapter, "b", "k", b"x", {"a": "1"}) is False


def test_listing_is_lazy_one_page_per_request(client: Any, stub: Stubber, sent: list[Any]) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    stub.add_response(
        "list_objects_v2",
        {
            "Contents": [{"Key": "a", "Size": 1, "ETag": '"1"', "LastModified": now}],
            "IsTruncated": True,
            "NextContinuationToken": "t",
        },
        {"Bucket": "b", "Prefix": "p/", "MaxKeys": 1},
    )
    stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": "b", "Size": 2, "ETag": '"2-3"', "LastModified": now}], "IsTruncated": False},
        {"Bucket": "b", "Prefix": "p/", "MaxKeys": 1, "ContinuationToken": "t"},
    )
    objects = S3Adapter(client).iter_objects("b", "p/", page_size=1)

    first = next(objects)
    assert (first.key, first.etag, len(sent)) == ("a", "1", 1)
    assert [o.etag for o in objects] == ["2-3"]
    assert len(sent) == 2


def test_delete_if_match_sends_the_etag_condition_and_reports_a_changed_or_missing_key(client: Any, stub: Stubber) -> None:
    adapter = S3Adapter(client)
    expected = {"Bucket": "b", "Key": "icons/a_icon.png", "IfMatch": '"abc"'}
    stub.add_response("delete_object", {}, expected)
    stub.add_client_error("delete_object", "PreconditionFailed", http_status_code=412, expected_params=expected)
    stub.add_client_error("delete_object", "NoSuchKey", http_status_code=404, expected_params=expected)
    stub.add_client_error("delete_object", "SlowDown", http_status_code=503, expected_params=expected)

    assert adapter.delete_if_match("b", "icons/a_icon.png", "abc") is True
    assert adapter.delete_if_match("b", "icons/a_icon.png", "abc") is False  # overwritten since: kept
    assert adapter.delete_if_match("b", "icons/a_icon.png", "abc") is False  # already gone
    with pytest.raises(RetryableError):
        adapter.delete_if_match("b", "icons/a_icon.png", "abc")


def test_a_client_built_by_the_adapter_uses_the_standard_retry_mode() -> None:
    from mediacanon.adapters.s3 import MAX_ATTEMPTS

    adapter = S3Adapter()
    # botocore-stubs leave out Config's options, which botocore sets as attributes at run time
    assert adapter.client.meta.config.retries == {"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}  # type: ignore[attr-defined]


def test_a_store_without_conditional_deletes_is_learnt_once_and_is_permanent(client: Any, stub: Stubber) -> None:
    """LocalStack and other S3-compatible stores answer DeleteObject with If-Match by 501 NotImplemented ("A header
    you provided implies functionality that is not implemented", S3's error responses). Retrying cannot help: the
    adapter says so once per bucket, as a permanent error naming the bucket and both ways out, and never asks again."""
    from mediacanon.core.errors import ConditionalDeleteUnsupported

    adapter = S3Adapter(client)
    expected = {"Bucket": "b", "Key": "icons/a_icon.png", "IfMatch": '"abc"'}
    stub.add_client_error("delete_object", "NotImplemented", http_status_code=501, expected_params=expected)

    with pytest.raises(ConditionalDeleteUnsupported, match=r"s3://b does not take If-Match.*retire: delete-if-match") as raised:
        adapter.delete_if_match("b", "icons/a_icon.png", "abc")
    assert isinstance(raised.value, PermanentError) and not isinstance(raised.value, RetryableError)
    with pytest.raises(ConditionalDeleteUnsupported):  # known now: no second request (the stub has no more answers)
        adapter.delete_if_match("b", "icons/b_icon.png", "def")
    stub.assert_no_pending_responses()


def test_any_501_is_permanent_though_a_5xx(client: Any, stub: Stubber) -> None:
    from mediacanon.core.errors import UnsupportedByStore

    adapter = S3Adapter(client)
    stub.add_client_error("get_object", "NotImplemented", http_status_code=501)
    with pytest.raises(UnsupportedByStore, match="retrying cannot help"):
        adapter.get_bytes("b", "k")


def test_compare_then_delete_deletes_only_the_bytes_it_was_given(client: Any, stub: Stubber) -> None:
    adapter = S3Adapter(client)
    head = {"ContentLength": 3, "ETag": '"abc"'}
    stub.add_response("head_object", head, {"Bucket": "b", "Key": "k"})
    stub.add_response("delete_object", {}, {"Bucket": "b", "Key": "k"})  # no condition: the store takes none
    stub.add_response("head_object", {**head, "ETag": '"new"'}, {"Bucket": "b", "Key": "k"})
    stub.add_client_error("head_object", "404", http_status_code=404, expected_params={"Bucket": "b", "Key": "k"})

    assert adapter.delete_compared("b", "k", "abc") is True
    assert adapter.delete_compared("b", "k", "abc") is False  # overwritten since: kept, no delete sent
    assert adapter.delete_compared("b", "k", "abc") is False  # gone
    stub.assert_no_pending_responses()
