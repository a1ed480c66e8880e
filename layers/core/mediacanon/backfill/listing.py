"""Which keys a bucket holds, with ETag and size, as cheaply as S3 allows: listing pages that start at the keys
themselves, HEADs where the keys lie too far apart (`present`), and the ItemReader's listed items (`Listed`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mediacanon.adapters.s3 import MAX_POOL_CONNECTIONS

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import S3Adapter


LIST_PAGE = 1000
# A batch's copies (and HEADs) at once. A CopyObject is S3's latency, not the worker's CPU: at 10 a batch of 1,000
# waits on ~100 round trips one after another; at 32 on ~32. On a 1 GB Lambda (about half a vCPU) 32 threads of
# botocore calls stay well under a core; the client's pool holds as many connections (adapters.s3.CLIENT_CONFIG).
COPY_THREADS = MAX_POOL_CONNECTIONS
# A LIST is billed as 12.5 HEADs (S3 Standard: $0.005 vs $0.0004 per 1,000): a page that placed fewer keys than this
# did not pay for itself, so the next keys are HEADed one by one, then listing is tried again.
LIST_PAYS_OFF = 12


@dataclass(frozen=True)
class Listed:
    key: str
    etag: str  # without quotes
    size: int


def listed_items(items: Sequence[dict[str, Any]]) -> list[Listed] | None:
    """A batch's items as the ItemReader listed them (Key, Etag, Size); None when some item lacks them."""
    out = []
    for item in items:
        if "Etag" not in item or "Size" not in item:
            return None
        out.append(Listed(str(item["Key"]), str(item["Etag"]).strip('"'), int(item["Size"])))
    return out


def _start_after(key: str) -> str:
    """The greatest string below `key` that S3 can take as StartAfter: the listing then starts at `key` itself."""
    last = ord(key[-1]) - 1
    if last < 0 or 0xD800 <= last <= 0xDFFF:
        return key[:-1]
    return key[:-1] + chr(last) + "\U0010ffff"


def present(s3: S3Adapter, bucket: str, keys: Iterable[str]) -> dict[str, Listed | None]:
    """Which of `keys` the bucket holds, with ETag and size, from listing pages that start at the keys themselves;
    where the keys lie too far apart for a page to pay, from HEADs (side by side, in runs that double while pages
    keep not paying)."""
    wanted = sorted(set(keys))
    out: dict[str, Listed | None] = {}
    i, head_next, head_run = 0, 0, LIST_PAYS_OFF
    while i < len(wanted):
        key = wanted[i]
        if head_next:
            run = wanted[i : i + head_next]
            with ThreadPoolExecutor(min(COPY_THREADS, len(run))) as pool:
                heads = list(pool.map(lambda k: s3.head(bucket, k), run))
            for k, head in zip(run, heads, strict=True):
                out[k] = None if head is None else Listed(k, head.etag, head.size)
            i, head_next = i + len(run), 0
            continue
        prefix = os.path.commonprefix([key, wanted[-1]])  # noqa: RUF071 - a key prefix, not a path
        page = next(s3.iter_pages(bucket, prefix, start_after=_start_after(key), page_size=LIST_PAGE))
        listed = {o.key: Listed(o.key, o.etag, o.size) for o in page}
        upto = page[-1].key if len(page) == LIST_PAGE else None  # None: the page ends the listing
        j = i
        while j < len(wanted) and (upto is None or wanted[j] <= upto):
            out[wanted[j]] = listed.get(wanted[j])
            j += 1
        if j == i:  # cannot happen (the page starts at the key); never loop on it
            head_next = 1
            continue
        if j - i < LIST_PAYS_OFF and j < len(wanted):
            head_next, head_run = head_run, min(head_run * 2, LIST_PAGE)
        else:
            head_run = LIST_PAYS_OFF
        i = j
    return out
