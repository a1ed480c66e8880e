"""The S3 adapter: the only place mediacanon talks to S3.

The client is injected (moto's, a Stubber's, a real one); when none is given one is built with boto3, which
reads AWS_ENDPOINT_URL itself. Every botocore error is translated here, by error code, into the project's
RetryableError / PermanentError family. No call here ever sets an ACL: the buckets' own policies decide access.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from mediacanon.core.errors import (
    BucketNotFound,
    ConditionalDeleteUnsupported,
    MediacanonError,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    RetryableError,
    UnsupportedByStore,
    translating,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DELETE_BATCH = 1000  # DeleteObjects' limit per request
# botocore's standard retry mode (throttling and 5xx answers, with exponential backoff and jitter and a retry
# quota that stops a 503 storm from multiplying), bounded: after MAX_ATTEMPTS the error reaches the step, which
# raises RetryableError, and SQS redelivers the record later instead of Lambda spinning until its timeout.
# `total_max_attempts` counts the first request too (botocore's `max_attempts` counts only the retries).
MAX_ATTEMPTS = 5
# The connections one client keeps open: as many as the requests a worker has in flight at once (a backfill batch's
# copies, mediacanon.backfill.listing.COPY_THREADS; a prune's walkers). botocore's default is 10: past it each further
# request opens a connection of its own and drops it afterwards (urllib3 "Connection pool is full, discarding").
MAX_POOL_CONNECTIONS = 32
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}, max_pool_connections=MAX_POOL_CONNECTIONS
)

RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestTimeTooSkewed",
        "OperationAborted",
        # real S3 answers 409 ConditionalRequestConflict when two conditional writes to one key overlap
        "ConditionalRequestConflict",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# 501 Not Implemented: "A header you provided implies functionality that is not implemented" (S3 error responses).
# Permanent, though a 5xx: the same request to the same store always gets it.
NOT_IMPLEMENTED_CODES = frozenset({"NotImplemented", "501"})
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
_CONNECTION_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # without quotes; a multipart object's ends in "-<parts>"
    last_modified: datetime


# What an object's ETag says about its bytes depends on how it is encrypted (Amazon S3 API Reference, Object: "Objects
# created by the PUT Object, POST Object, or Copy operation, or through the Amazon Web Services Management Console, and
# are encrypted by SSE-S3 or plaintext, have ETags that are an MD5 digest of their object data. [...] encrypted by SSE-C
# or SSE-KMS, have ETags that are not an MD5 digest of their object data. If an object is created by either the
# Multipart Upload or Part Copy operation, the ETag is not an MD5 digest, regardless of the method of encryption."):
# two copies of the same bytes have equal ETags only when both are single-part SSE-S3 or unencrypted objects.
DIGEST_ENCRYPTIONS = frozenset({None, "AES256"})  # S3's ServerSideEncryption answer (None: none said, unencrypted)
UNKNOWN_ENCRYPTION = "unknown"  # a listing's object, or a copy's we did not read: its ETag proves nothing
SSE_C = "SSE-C"  # an object under a customer-provided key (S3 answers SSECustomerAlgorithm, not ServerSideEncryption)
# the full-object checksums S3 may hold (Checking object integrity: "When you copy [...] your data, however, Amazon S3
# calculates the checksum on the source object and moves it to the destination object"), read with ChecksumMode
CHECKSUM_ALGORITHMS = ("CRC64NVME", "CRC32", "CRC32C", "SHA256", "SHA1")
OPAQUE_MEMORY = 10_000  # the adapter's memory of the opaque ETags of objects it just wrote (copy_as_is's guard)


@dataclass(frozen=True)
class ObjectHead:
    key: str
    size: int
    etag: str
    content_type: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    version_id: str | None = None
    encryption: str | None = None  # ServerSideEncryption (AES256, aws:kms, aws:kms:dsse), SSE_C, or UNKNOWN_ENCRYPTION
    checksum: str | None = None  # "<algorithm>:<value>" when read with ChecksumMode and S3 holds one, else None
    last_modified: datetime | None = None  # as S3 answered a HEAD; None for a head made from a listing or a copy


def etag_is_digest(head: ObjectHead) -> bool:
    """Whether the ETag is the MD5 of the object's bytes: a single-part SSE-S3 or unencrypted object. Only then do two
    objects with different ETags hold different bytes."""
    return "-" not in head.etag and head.encryption in DIGEST_ENCRYPTIONS


def _encryption(resp: Mapping[str, Any]) -> str | None:
    if resp.get("SSECustomerAlgorithm"):
        return SSE_C
    encryption = resp.get("ServerSideEncryption")
    return str(encryption) if encryption else None


def _checksum(resp: Mapping[str, Any]) -> str | None:
    """The object's checksum as S3 answered it (HEAD with ChecksumMode, CopyObjectResult), "<algorithm>:<value>"."""
    for algorithm in CHECKSUM_ALGORITHMS:
        value = resp.get(f"Checksum{algorithm}")
        if value:
            return f"{algorithm}:{value}"
    return None


@dataclass(frozen=True)
class DeleteError:
    key: str
    code: str
    message: str


@dataclass(frozen=True)
class DeleteResult:
    deleted: int
    errors: tuple[DeleteError, ...] = ()

    def raise_for_errors(self, bucket: str) -> None:
        """Raise for the first failed key: retryable when S3 only asked us to slow down."""
        for error in self.errors:
            what = f"delete s3://{bucket}/{error.key}"
            raise _classify(error.code, None, f"{what}: {error.code} ({error.message})")


def translate_error(exc: ClientError, what: str) -> MediacanonError:
    """The project's error for a botocore ClientError, by code and status, never by message text."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _classify(code, status, f"{what}: {code or status} ({error.get('Message', '')})")


def _classify(code: str, status: int | None, message: str) -> MediacanonError:
    if code in PRECONDITION_CODES or status == 412:
        return PreconditionFailed(message)
    # HEAD has no body, so a missing bucket is also a bare 404 there: NoSuchBucket only shows on other calls
    if code in NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
        return NotFoundError(message)
    if code == "NoSuchBucket":
        return BucketNotFound(message)
    if code in NOT_IMPLEMENTED_CODES or status == 501:
        return UnsupportedByStore(
            f"{message}: the store does not implement this request (an S3-compatible store, not S3); retrying cannot "
            "help: use S3, or a store that implements it"
        )
    if code in RETRYABLE_CODES or (status is not None and (status >= 500 or status == 429)):
        return RetryableError(message)
    return PermanentError(message)


def _translated(what: str) -> AbstractContextManager[None]:
    return translating(what, (ClientError, *_CONNECTION_ERRORS), _translate_any)


def _translate_any(exc: Exception, what: str) -> MediacanonError:
    """A ClientError by its code and status; a connection that failed or timed out is retryable."""
    if isinstance(exc, ClientError):
        return translate_error(exc, what)
    return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


def _is_not_found(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in NOT_FOUND_CODES or (
        code != "NoSuchBucket" and exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
    )


def _etag(raw: str) -> str:
    return raw.strip('"')


def _checksums_differ(a: str | None, b: str | None) -> bool:
    """Both known, of the same algorithm, and different: other bytes."""
    return a is not None and b is not None and a.split(":", 1)[0] == b.split(":", 1)[0] and a != b


def copied_metadata(head: ObjectHead, metadata: dict[str, str] | None, drop: Iterable[str] = ()) -> dict[str, str]:
    """The user metadata a copy carries: the source's, plus `metadata`, less `drop`."""
    dropped = set(drop)
    return {k: v for k, v in {**head.metadata, **(metadata or {})}.items() if k not in dropped}


class S3Adapter:
    def __init__(self, client: S3Client | None = None, *, transfer_config: TransferConfig | None = None) -> None:
        self.client: S3Client = client if client is not None else boto3.client("s3", config=CLIENT_CONFIG)
        self.transfer_config = transfer_config if transfer_config is not None else TransferConfig()
        # buckets whose store answered 501 to a conditional delete: learnt once, never asked again (delete_if_match)
        self.unconditional_buckets: set[str] = set()
        # (bucket, key) -> ETag of the objects this adapter just wrote whose ETag is not an MD5 digest (SSE-KMS, SSE-C):
        # a listed batch copies such an object again at once (canonical, then CDN), and this says so without a HEAD
        self._opaque_written: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._opaque_lock = threading.Lock()

    def _remember_written(self, bucket: str, key: str, etag: str, encryption: str | None) -> None:
        with self._opaque_lock:
            if encryption in DIGEST_ENCRYPTIONS:
                self._opaque_written.pop((bucket, key), None)
                return
            self._opaque_written[(bucket, key)] = etag
            self._opaque_written.move_to_end((bucket, key))
            while len(self._opaque_written) > OPAQUE_MEMORY:
                self._opaque_written.popitem(last=False)

    def _written_opaque(self, bucket: str, key: str, etag: str) -> bool:
        with self._opaque_lock:
            return self._opaque_written.get((bucket, key)) == etag

    def iter_objects(self, bucket: str, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, a page at a time: a bucket of millions is never held in memory."""
        for page in self.iter_pages(bucket, prefix, page_size=page_size):
            yield from page

    def iter_pages(
        self, bucket: str, prefix: str = "", start_after: str = "", page_size: int = 1000
    ) -> Iterator[list[ObjectInfo]]:
        """The listing under `prefix` after `start_after`, one page per request, fetched only as the caller asks."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
        if start_after:
            params["StartAfter"] = start_after
        pages = self.client.get_paginator("list_objects_v2").paginate(**params)
        with _translated(f"list s3://{bucket}/{prefix}" + (f" after {start_after!r}" if start_after else "")):
            for page in pages:
                yield [ObjectInfo(o["Key"], o["Size"], _etag(o["ETag"]), o["LastModified"]) for o in page.get("Contents", [])]

    def head(self, bucket: str, key: str, *, checksum: bool = False) -> ObjectHead | None:
        """The object's size, ETag, encryption and the headers a copy must keep; None when there is no such key.

        With `checksum`, also its full-object checksum (ChecksumMode=ENABLED: the same one request; S3 returns it only
        when asked, and for an SSE-KMS object only to a caller allowed kms:Decrypt on its key)."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if checksum:
            params["ChecksumMode"] = "ENABLED"
        with _translated(f"head s3://{bucket}/{key}"):
            try:
                resp = self.client.head_object(**params)
            except ClientError as exc:
                if _is_not_found(exc):
                    return None
                raise
        return ObjectHead(
            key=key,
            size=resp["ContentLength"],
            etag=_etag(resp["ETag"]),
            content_type=resp.get("ContentType"),
            cache_control=resp.get("CacheControl"),
            content_disposition=resp.get("ContentDisposition"),
            content_encoding=resp.get("ContentEncoding"),
            content_language=resp.get("ContentLanguage"),
            metadata=dict(resp.get("Metadata", {})),
            version_id=resp.get("VersionId"),
            encryption=_encryption(resp),
            checksum=_checksum(resp),
            last_modified=resp.get("LastModified"),
        )

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        metadata: dict[str, str] | None = None,
        source_head: ObjectHead | None = None,
        drop_metadata: Iterable[str] = (),
    ) -> str:
        """Server-side copy keeping the source's headers and user metadata (plus `metadata`); returns the new ETag.

        Above the transfer config's threshold boto3 copies in parts, and a multipart upload has no
        MetadataDirective: without explicit headers the copy would come out as binary/octet-stream with no
        metadata. So the headers are always read from the source and sent, with REPLACE, on both paths.
        """
        what = f"copy s3://{src_bucket}/{src_key} -> s3://{dst_bucket}/{dst_key}"
        head = source_head if source_head is not None else self.head(src_bucket, src_key)
        if head is None:
            raise NotFoundError(f"s3://{src_bucket}/{src_key}")
        extra: dict[str, Any] = {
            "MetadataDirective": "REPLACE",
            "Metadata": copied_metadata(head, metadata, drop_metadata),
            # the headers and the recorded ETag describe these bytes: if the source changed since, fail (412)
            # rather than copy other bytes under them
            "CopySourceIfMatch": f'"{head.etag}"',
        }
        for arg, value in (
            ("ContentType", head.content_type),
            ("CacheControl", head.cache_control),
            ("ContentDisposition", head.content_disposition),
            ("ContentEncoding", head.content_encoding),
            ("ContentLanguage", head.content_language),
        ):
            if value is not None:
                extra[arg] = value
        if head.size < self.transfer_config.multipart_threshold:
            # one CopyObject: it answers with the new ETag, so neither boto3's HEAD of the source nor ours of the
            # destination is needed (half the requests of the managed copy for the common small image)
            with _translated(what):
                resp = self.client.copy_object(
                    CopySource={"Bucket": src_bucket, "Key": src_key}, Bucket=dst_bucket, Key=dst_key, **extra
                )
            etag = _etag(resp["CopyObjectResult"]["ETag"])
            encryption = _encryption(resp)
            # S3 refuses a changed source through CopySourceIfMatch already; these checks also hold where the condition
            # is ignored (moto). A single-part SSE-S3 copy of a single-part SSE-S3 source keeps its MD5 ETag, so another
            # ETag means other bytes; an SSE-KMS or SSE-C ETag is fresh on every copy and says nothing, but the copy's
            # checksum (moved from the source) still differs from the one read with the source's head if it changed.
            if etag_is_digest(head) and encryption in DIGEST_ENCRYPTIONS and etag != head.etag:
                raise PreconditionFailed(f"{what}: the source changed since it was read (ETag {head.etag} -> {etag})")
            moved = _checksum(resp["CopyObjectResult"])
            if _checksums_differ(head.checksum, moved):
                raise PreconditionFailed(f"{what}: the source changed since it was read ({head.checksum} -> {moved})")
            self._remember_written(dst_bucket, dst_key, etag, encryption)
            return etag
        # a multipart copy starts with CreateMultipartUpload, which copies no tags (only CopyObject's
        # x-amz-tagging-directive does): the source's are read first and put on the copy once it is complete
        tags = self.tags(src_bucket, src_key, version_id=head.version_id)
        with _translated(what):
            self.client.copy(
                {"Bucket": src_bucket, "Key": src_key}, dst_bucket, dst_key, ExtraArgs=extra, Config=self.transfer_config
            )
        # the managed copy returns nothing, so the new ETag (a multipart copy's differs from its source's) is read back
        copied = self.head(dst_bucket, dst_key)
        if copied is None:
            raise RetryableError(f"{what}: the copy vanished right after it was made (deleted concurrently)")
        if tags:
            params: dict[str, Any] = {"Bucket": dst_bucket, "Key": dst_key, "Tagging": {"TagSet": tags}}
            if copied.version_id:
                params["VersionId"] = copied.version_id  # this copy's version, not one written since
            with _translated(f"{what}: put the source's tags"):
                self.client.put_object_tagging(**params)
        return copied.etag

    def tags(self, bucket: str, key: str, *, version_id: str | None = None) -> list[dict[str, str]]:
        """The object's tag set ([] when it has none). A store that implements no tagging (501) holds no tags: []."""
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        with _translated(f"get tags of s3://{bucket}/{key}"):
            try:
                tag_set = self.client.get_object_tagging(**params)["TagSet"]
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if str(exc.response.get("Error", {}).get("Code", "")) in NOT_IMPLEMENTED_CODES or status == 501:
                    return []
                raise
        return [{"Key": tag["Key"], "Value": tag["Value"]} for tag in tag_set]

    def delete_many(self, bucket: str, keys: Iterable[str]) -> DeleteResult:
        """Delete keys, 1,000 per request; failures per key are returned, not raised (see raise_for_errors)."""
        deleted, errors = 0, []
        it = iter(keys)
        while batch := list(islice(it, DELETE_BATCH)):
            with _translated(f"delete {len(batch)} keys from s3://{bucket}"):
                resp = self.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            failed = [DeleteError(e.get("Key", ""), e.get("Code", ""), e.get("Message", "")) for e in resp.get("Errors", [])]
            deleted += len(batch) - len(failed)
            errors.extend(failed)
        return DeleteResult(deleted, tuple(errors))

    def digest(self, bucket: str, key: str, *, chunk: int = 8 * 1024 * 1024) -> str:
        """The SHA-256 of the object's bytes, streamed (never held whole): how verify tells two copies apart when
        neither an MD5 ETag, a recorded ETag nor a checksum S3 holds can (SSE-KMS objects older than S3's checksums)."""
        sha = hashlib.sha256()
        with _translated(f"get s3://{bucket}/{key}"):
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            for part in iter(lambda: body.read(chunk), b""):
                sha.update(part)
        return sha.hexdigest()

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with _translated(f"get s3://{bucket}/{key}"):
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def iter_lines(self, bucket: str, key: str) -> Iterator[str]:
        """The object's text, a line at a time, streamed: a report of millions of lines is never held in memory."""
        with _translated(f"get s3://{bucket}/{key}"):
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            for line in body.iter_lines():
                yield line.decode("utf-8")

    def put_bytes(
        self, bucket: str, key: str, body: bytes, content_type: str | None = None, metadata: dict[str, str] | None = None
    ) -> str:
        """Write an object (reports, tests); returns its ETag."""
        extra: dict[str, Any] = {"Metadata": metadata or {}}
        if content_type is not None:
            extra["ContentType"] = content_type
        with _translated(f"put s3://{bucket}/{key}"):
            return _etag(self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)["ETag"])

    # -- listing-driven bulk work (the backfill's batch worker): what a listing already says is not asked again --

    def copy_as_is(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, *, source_etag: str) -> str:
        """One server-side CopyObject that keeps the source's headers, user metadata and tags as S3 holds them
        (MetadataDirective COPY: no HEAD needed to re-send them); returns the new ETag.

        Up to 5 GiB (CopyObject's limit): the caller sends larger objects through `copy`. Copies exactly the bytes
        of `source_etag` or raises PreconditionFailed."""
        what = f"copy s3://{src_bucket}/{src_key} -> s3://{dst_bucket}/{dst_key}"
        with _translated(what):
            resp = self.client.copy_object(
                CopySource={"Bucket": src_bucket, "Key": src_key},
                Bucket=dst_bucket,
                Key=dst_key,
                MetadataDirective="COPY",
                CopySourceIfMatch=f'"{source_etag}"',
            )
        etag = _etag(resp["CopyObjectResult"]["ETag"])
        encryption = _encryption(resp)
        if (
            "-" not in source_etag
            and etag != source_etag
            and encryption in DIGEST_ENCRYPTIONS
            and not self._written_opaque(src_bucket, src_key, source_etag)
        ):
            # as in `copy`, where the condition is ignored: an MD5 ETag copied as another means other bytes, but only if
            # the source's ETag was an MD5 too, which a listing does not say: an SSE-KMS source copied into an SSE-S3
            # bucket (a KMS primary, the template's SSE-S3 CDN bucket) gets its first MD5 ETag. One HEAD tells them
            # apart, made only then (never for an SSE-S3 source on S3, which refuses a changed one with 412 first)
            now = self.head(src_bucket, src_key, checksum=True)
            copied = _checksum(resp["CopyObjectResult"])
            if now is None or etag_is_digest(now) or now.etag != source_etag or _checksums_differ(now.checksum, copied):
                raise PreconditionFailed(f"{what}: the source changed since it was listed (ETag {source_etag} -> {etag})")
        self._remember_written(dst_bucket, dst_key, etag, encryption)
        return etag

    def delete_if_unchanged(self, bucket: str, etags: dict[str, str]) -> DeleteResult:
        """Delete keys, 1,000 per request, each only while it still has the given ETag (DeleteObjects' per-object
        condition); a key that changed comes back as an error with code PreconditionFailed, one already gone as one
        with code NoSuchKey (the condition is evaluated against an object that is no longer there)."""
        deleted, errors = 0, []
        it = iter(etags.items())
        while batch := list(islice(it, DELETE_BATCH)):
            objects: list[Any] = [{"Key": k, "ETag": f'"{e}"'} for k, e in batch]
            with _translated(f"delete {len(batch)} keys from s3://{bucket}"):
                resp = self.client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            failed = [DeleteError(e.get("Key", ""), e.get("Code", ""), e.get("Message", "")) for e in resp.get("Errors", [])]
            deleted += len(batch) - len(failed)
            errors.extend(failed)
        return DeleteResult(deleted, tuple(errors))

    def put_file(self, bucket: str, key: str, fileobj: Any, content_type: str) -> None:
        """Upload a file object (a report too large to hold in memory), in parts when large."""
        with _translated(f"put s3://{bucket}/{key}"):
            self.client.upload_fileobj(fileobj, bucket, key, ExtraArgs={"ContentType": content_type}, Config=self.transfer_config)

    def put_stream(self, bucket: str, key: str, chunks: Iterable[bytes], content_type: str) -> str:
        """Write an object from `chunks` as they come, never holding it whole (a report of millions of items), and
        return its ETag: one PutObject when there is a single chunk, else a multipart upload with a part per chunk.
        S3's limits are the caller's to keep: every chunk but the last at least 5 MiB, at most 5 GiB, at most 10,000.
        When anything fails, the producer of the chunks included, the upload is aborted: no part is left stored."""
        what = f"put s3://{bucket}/{key}"
        it = iter(chunks)
        chunk: bytes | None = next(it, b"")
        following = next(it, None)
        if following is None:
            return self.put_bytes(bucket, key, chunk or b"", content_type)
        with _translated(what):
            upload_id = self.client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]
        parts: list[Any] = []
        try:
            while chunk is not None:
                with _translated(f"{what}: part {len(parts) + 1}"):
                    answer = self.client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=len(parts) + 1, Body=chunk
                    )
                parts.append({"ETag": answer["ETag"], "PartNumber": len(parts) + 1})
                chunk, following = following, None  # the part sent is let go before the next one is asked for
                chunk = chunk if chunk is not None else next(it, None)
            with _translated(what):
                done = self.client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except (ClientError, *_CONNECTION_ERRORS):
                pass  # the error that stopped the upload is the one to raise; the bucket's lifecycle rule aborts it later
            raise
        return _etag(done["ETag"])

    def delete_if_match(self, bucket: str, key: str, etag: str) -> bool:
        """Delete the key only while it still holds `etag` (DeleteObject If-Match); False when it changed or is gone.

        A HEAD then an unconditional delete leaves a window in which a new upload to the key is deleted with the old
        bytes it replaced; the condition closes it (the retire step's I5). A store that does not take the condition
        (501: LocalStack, MinIO, ...) raises ConditionalDeleteUnsupported, at once for a bucket known to lack it."""
        if bucket in self.unconditional_buckets:
            raise ConditionalDeleteUnsupported(bucket)
        with _translated(f"delete s3://{bucket}/{key} if ETag {etag}"):
            try:
                self.client.delete_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in NOT_IMPLEMENTED_CODES or status == 501:
                    self.unconditional_buckets.add(bucket)
                    raise ConditionalDeleteUnsupported(bucket) from exc
                if _is_not_found(exc) or code in PRECONDITION_CODES or status == 412:
                    return False
                raise
        return True

    def delete_compared(self, bucket: str, key: str, etag: str) -> bool:
        """Delete the key if it holds `etag` now: compare (HEAD), then delete, for stores without conditional deletes.
        An upload landing between the two is deleted too; on a versioned bucket its bytes stay a noncurrent version
        (recoverable), which is why the retire step uses this only as the fallback of `delete_if_match`."""
        head = self.head(bucket, key)
        if head is None or head.etag != etag:
            return False
        with _translated(f"delete s3://{bucket}/{key}"):
            self.client.delete_object(Bucket=bucket, Key=key)
        return True
