"""What mediacanon records on the copies it makes, and how two objects are told to hold the same bytes.

An ETag is an MD5 digest of the bytes only for a single-part object under no or SSE-S3 encryption: a multipart
copy, and every copy of an SSE-KMS or SSE-C object, gets a new ETag for the same bytes. So every copy records the
ETag it came from, and where neither ETags nor records tell, the full-object checksums S3 keeps decide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mediacanon.adapters.s3 import ObjectHead, etag_is_digest

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import S3Adapter

# S3 user metadata must be ASCII: source keys (which may be unicode) are URL-quoted in it.
SOURCE_KEY = "mediacanon-source-key"
SOURCE_ETAG = "mediacanon-source-etag"
PRIMARY_ETAG = "mediacanon-primary-etag"  # on a CDN copy: the primary object's ETag it mirrors
RESTORED_BY = "mediacanon-restored-by-rollback"  # on the copies rollback restores: the ledger entry it reversed


def same_bytes(a: ObjectHead, b: ObjectHead) -> bool:
    """Byte-identical without reading bodies, from what the two heads hold: equal ETags, a copy's recorded ETag of what
    it copied, or equal full-object checksums (when the heads were read with them).

    A multipart copy, and every copy of an SSE-KMS or SSE-C object, gets a new ETag for the same bytes, which is why
    copies record the ETag they came from; a copy S3 made keeps its source's checksum (S3 moves it to the copy)."""
    if a.etag == b.etag:
        return True
    return a.size == b.size and (
        b.metadata.get(PRIMARY_ETAG) == a.etag
        or a.metadata.get(PRIMARY_ETAG) == b.etag
        or (a.metadata.get(SOURCE_ETAG) is not None and a.metadata.get(SOURCE_ETAG) == b.metadata.get(SOURCE_ETAG))
        or (a.checksum is not None and a.checksum == b.checksum)
    )


def undecided(a: ObjectHead, b: ObjectHead) -> bool:
    """Whether `same_bytes` said no only for want of checksums: the sizes agree, and an ETag is not an MD5 digest (an
    SSE-KMS, SSE-C or multipart object, or one only listed), so different ETags prove nothing."""
    if same_bytes(a, b) or a.size != b.size or (etag_is_digest(a) and etag_is_digest(b)):
        return False
    return a.checksum is None or b.checksum is None


def confirm_same_bytes(s3: S3Adapter, a_bucket: str, a: ObjectHead, b_bucket: str, b: ObjectHead) -> bool:
    """`same_bytes`, and where the heads cannot tell (`undecided`), the same with the full-object checksums S3 holds:
    see `compare_heads`. An SSE-S3 single-part pair never costs a request here."""
    return compare_heads(s3, a_bucket, a, b_bucket, b)[0]


def compare_heads(
    s3: S3Adapter, a_bucket: str, a: ObjectHead, b_bucket: str, b: ObjectHead
) -> tuple[bool, ObjectHead, ObjectHead]:
    """Whether `a` and `b` hold the same bytes, and the heads that showed it. While `undecided`, each head lacking a
    checksum is read again with ChecksumMode (its metadata too: a listed object's head holds none), `b` first (the
    copy: its recorded ETag may settle it), only then. An object that changed since its head was read is not the
    same (False, with the heads read so far)."""
    heads = [a, b]
    for i, bucket in ((1, b_bucket), (0, a_bucket)):
        if not undecided(heads[0], heads[1]):
            break
        if heads[i].checksum is not None:
            continue
        again = s3.head(bucket, heads[i].key, checksum=True)
        if again is None or again.etag != heads[i].etag:
            return False, heads[0], heads[1]
        heads[i] = again
    return same_bytes(heads[0], heads[1]), heads[0], heads[1]


def holds(mirrored: ObjectHead, etag: str | None) -> bool:
    """Whether a CDN object is a copy of the primary bytes whose ETag is `etag` (an S3 event's: what was written)."""
    return etag is not None and etag in (mirrored.etag, mirrored.metadata.get(PRIMARY_ETAG))


def made_by_steps(mirrored: ObjectHead) -> bool:
    """Whether a CDN object is a copy the steps made, or one a listed backfill batch made as it is.

    The steps' mirror (`Steps.mirror`: the live path, the backfill's per-object steps and its rows phase) always
    records PRIMARY_ETAG on the copy. A listed batch (`backfill.process_listed`) copies with one CopyObject that keeps
    the primary object's metadata (MetadataDirective COPY cannot add any), so its CDN copy carries no PRIMARY_ETAG,
    and SOURCE_KEY only when the primary copy was normalize's (the one case link can still move rows from). Nothing
    else in mediacanon writes the CDN bucket (upload and rollback write the primary only)."""
    return PRIMARY_ETAG in mirrored.metadata or SOURCE_KEY in mirrored.metadata
