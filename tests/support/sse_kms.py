"""An S3 client that behaves as SSE-KMS does, over the moto server: a test double for buckets whose objects' ETags are
not MD5 digests of their bytes.

Amazon S3 API Reference, Object, ETag: "Objects created by the PUT Object, POST Object, or Copy operation, or through
the Amazon Web Services Management Console, and are encrypted by SSE-S3 or plaintext, have ETags that are an MD5
digest of their object data. Objects created by the PUT Object, POST Object, or Copy operation, or through the Amazon
Web Services Management Console, and are encrypted by SSE-C or SSE-KMS, have ETags that are not an MD5 digest of their
object data. If an object is created by either the Multipart Upload or Part Copy operation, the ETag is not an MD5
digest, regardless of the method of encryption."

moto 5.2 gives an SSE-KMS object the MD5 ETag all the same (moto/s3/models.py: the key's ETag is the MD5 of its
value whatever its encryption), so on moto alone every copy of an SSE-KMS object keeps its source's ETag and code that
compares ETags passes where AWS fails it. `SseKmsClient` is a real boto3 client on the moto server whose botocore
event hooks (before-parameter-build, before-call, after-call: so boto3's managed transfers through the same client
are covered too) make each bucket named in `kms_buckets` answer as an SSE-KMS bucket does:

- every PutObject, CopyObject and CompleteMultipartUpload gets a fresh random ETag (32 hex digits, as S3's look; a
  multipart object's keeps its "-<parts>"), which HeadObject, GetObject and ListObjectsV2 then report;
- ETag conditions take those ETags: CopySourceIfMatch (S3 refuses with 412; moto ignores the header, so it is done
  here), If-Match on HeadObject/GetObject/DeleteObject (moto checks it: translated to moto's ETag), DeleteObjects'
  per-object ETag (S3 deletes only a match, reporting PreconditionFailed, or NoSuchKey for a gone key; moto ignores
  it, so it is done here);
- responses say ServerSideEncryption "aws:kms" (other buckets: "AES256", S3's default encryption).

What it keeps from moto: the bytes, the metadata, and the checksums (moto stores the CRC32 boto3 sends with a
PutObject and moves a source's checksum to its copy, as S3 does: "When you copy or batch copy your data, however,
Amazon S3 calculates the checksum on the source object and moves it to the destination object", User Guide, "Checking
object integrity"; HeadObject returns it only with ChecksumMode=ENABLED, as S3 does). Writes made by another client
(moto's own, or `raw`) get a fresh ETag here the first time they are read. Events moto emits still carry moto's
ETags: tests build the events they need from this client's answers.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

KMS = "aws:kms"
WRITES = ("PutObject", "CopyObject", "CompleteMultipartUpload")


def _quoted(etag: str) -> str:
    return f'"{etag.strip(chr(34))}"'


class SseKmsClient:
    """`client` is the SSE-KMS-like boto3 client; `raw` a plain one on the same moto server (moto's own ETags)."""

    def __init__(self, endpoint_url: str, kms_buckets: set[str], *, checksums: bool = True) -> None:
        # checksums=False: a client that sends no checksum with its uploads (boto3 before 1.36, or
        # request_checksum_calculation=when_required): moto then stores none, as for an object older than S3's defaults
        config = Config(request_checksum_calculation="when_supported" if checksums else "when_required")
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1", config=config)
        self.raw = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")
        self.kms_buckets = set(kms_buckets)
        self.sent: Counter[str] = Counter()  # every operation this client sent (or answered itself), by name
        self._etags: dict[tuple[str, str], tuple[str, str]] = {}  # (bucket, key) -> (moto's ETag, the one shown)
        self._lock = threading.Lock()
        events = self.client.meta.events
        events.register("before-parameter-build.s3", self._before_parameters)
        events.register("before-call.s3", self._before_call)
        events.register("after-call.s3", self._after_call)

    # -- the ETag map ---------------------------------------------------------------------------------------------

    def _shown(self, bucket: str, key: str, real: str) -> str:
        """The ETag this client shows for moto's `real` one under the key: fresh for a write it has not seen."""
        real = real.strip('"')
        if bucket not in self.kms_buckets:
            return real
        with self._lock:
            known = self._etags.get((bucket, key))
            if known is not None and known[0] == real:
                return known[1]
            return self._fresh(bucket, key, real)

    def _fresh(self, bucket: str, key: str, real: str) -> str:
        parts = real.rsplit("-", 1)[1] if "-" in real else None
        shown = uuid.uuid4().hex + (f"-{parts}" if parts else "")
        self._etags[(bucket, key)] = (real, shown)
        return shown

    def current(self, bucket: str, key: str) -> tuple[str, str] | None:
        """(moto's ETag, the shown one) of what the key holds now; None when it holds nothing."""
        try:
            real = str(self.raw.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
        return real, self._shown(bucket, key, real)

    def _to_real(self, bucket: str, key: str, given: str) -> str:
        """A condition's ETag in moto's terms: moto's ETag when `given` is the key's current one, else `given` (which
        then matches nothing: a shown ETag is never one of moto's)."""
        now = self.current(bucket, key)
        if now is not None and given.strip('"') == now[1]:
            return _quoted(now[0])
        return _quoted(given)

    # -- hooks -----------------------------------------------------------------------------------------------------

    def _before_parameters(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        name = model.name
        bucket, key = params.get("Bucket"), params.get("Key")
        context["sse_kms"] = {"bucket": bucket, "key": key}
        if name == "CopyObject" and params.get("CopySourceIfMatch"):
            self._copy_source_if_match(params, context)
        for condition in ("IfMatch", "IfNoneMatch"):
            value = params.get(condition)
            if name in ("HeadObject", "GetObject", "DeleteObject") and value and value != "*" and bucket and key:
                params[condition] = self._to_real(bucket, key, value)
        if name == "DeleteObjects" and bucket and any("ETag" in o for o in params["Delete"]["Objects"]):
            self._delete_if_match(bucket, params, context)

    def _copy_source_if_match(self, params: dict[str, Any], context: dict[str, Any]) -> None:
        """CopySourceIfMatch against the shown ETag (moto ignores the header): refused here, or moto's ETag sent."""
        source = params["CopySource"]
        if isinstance(source, str):
            src_bucket, _, src_key = source.lstrip("/").partition("/")
        else:
            src_bucket, src_key = source["Bucket"], source["Key"]
        now = self.current(src_bucket, src_key)
        if now is None:
            context["sse_kms_answer"] = self._error(404, "NoSuchKey", "The specified key does not exist.")
        elif params["CopySourceIfMatch"].strip('"') != now[1]:
            context["sse_kms_answer"] = self._error(
                412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"
            )
        else:
            params["CopySourceIfMatch"] = _quoted(now[0])

    def _delete_if_match(self, bucket: str, params: dict[str, Any], context: dict[str, Any]) -> None:
        """DeleteObjects' per-object ETags (moto ignores them): only the matching objects are sent on, the others
        reported as S3 reports them."""
        kept: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for o in params["Delete"]["Objects"]:
            if "ETag" not in o:
                kept.append(o)
                continue
            now = self.current(bucket, o["Key"])
            if now is None:
                errors.append({"Key": o["Key"], "Code": "NoSuchKey", "Message": "The specified key does not exist."})
            elif o["ETag"].strip('"') != now[1]:
                errors.append(
                    {
                        "Key": o["Key"],
                        "Code": "PreconditionFailed",
                        "Message": "At least one of the pre-conditions you specified did not hold",
                    }
                )
            else:
                kept.append({"Key": o["Key"]})
        context["sse_kms_errors"] = errors
        if kept:
            params["Delete"] = {**params["Delete"], "Objects": kept}
        else:
            # the errors come in after-call (AWSResponse takes any mapping of headers; its stubs say HTTPHeaders)
            context["sse_kms_answer"] = (AWSResponse("", 200, {}, None), {})  # type: ignore[arg-type]

    def _error(self, status: int, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("", status, {}, None), {  # type: ignore[arg-type]  # headers: any mapping, as above
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        self.sent[model.name] += 1
        return context.pop("sse_kms_answer", None)

    def _after_call(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            return
        name = model.name
        where = context.get("sse_kms", {})
        bucket, key = where.get("bucket"), where.get("key")
        if name == "DeleteObjects":
            if context.get("sse_kms_errors"):
                parsed["Errors"] = [*parsed.get("Errors", []), *context["sse_kms_errors"]]
            return
        if name in ("ListObjectsV2", "ListObjects") and bucket:
            for o in parsed.get("Contents", []):
                o["ETag"] = _quoted(self._shown(bucket, o["Key"], o["ETag"]))
            return
        if not (bucket and key):
            return
        encryption = KMS if bucket in self.kms_buckets else "AES256"
        if name in WRITES:
            holder = parsed["CopyObjectResult"] if name == "CopyObject" else parsed
            real = str(holder["ETag"]).strip('"')
            if bucket in self.kms_buckets:
                with self._lock:
                    holder["ETag"] = _quoted(self._fresh(bucket, key, real))
            parsed["ServerSideEncryption"] = encryption
        elif name in ("HeadObject", "GetObject") and "ETag" in parsed:
            parsed["ETag"] = _quoted(self._shown(bucket, key, parsed["ETag"]))
            parsed["ServerSideEncryption"] = encryption
