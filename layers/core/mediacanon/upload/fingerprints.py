"""A local file's fingerprint: size, MD5, the ETag S3 will give it, and the image type its bytes say."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import filetype
from boto3.s3.transfer import TransferConfig
from s3transfer.utils import ChunksizeAdjuster

from mediacanon.copies import SOURCE_ETAG
from mediacanon.upload.outcomes import BadInput

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import ObjectHead

SNIFF_BYTES = 8192  # filetype reads at most 8 KiB; an SVG's root element comes early too


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
