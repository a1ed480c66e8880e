"""CloudFront invalidations of the CDN paths a Lambda task replaced or removed: the live path's replicate batches and
the backfill's tasks collect them and send them in one CreateInvalidation at the end of the batch.

CloudFront bills per path and limits the invalidations in progress per distribution (Amazon CloudFront Developer
Guide, "Quotas", Invalidations, https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/cloudfront-limits.html#limits-invalidations;
"Concurrent invalidation request maximum"): at most 3,000 file paths in progress at one time, and 15 wildcard paths.
So a request never names more than 3,000 files: a batch that replaced more (a prune run with a large maxDeletes) is
invalidated by wildcards over the folders holding its paths, at most 15 of them. Splitting it into requests of 3,000
files each would not help: the second is refused while the first is in progress.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import quote

DISTRIBUTION_ENV = "MEDIACANON_CDN_DISTRIBUTION_ID"  # set by template.yaml when the stack has a distribution
MAX_FILE_PATHS = 3000  # file invalidation paths in progress per distribution
MAX_WILDCARD_PATHS = 15  # wildcard invalidation paths in progress per distribution


def cdn_path(key: str) -> str:
    """The distribution's path of a CDN-bucket key, quoted as Django's storage quotes it in URLs (filepath_to_uri),
    so the invalidation names the URL viewers requested."""
    return "/" + quote(key, safe="/~!*()'")


def invalidation_paths(paths: list[str]) -> list[str]:
    """The paths one CreateInvalidation sends for these file paths: themselves, up to MAX_FILE_PATHS; beyond that the
    fewest wildcards (`/folder/*`, as deep as MAX_WILDCARD_PATHS of them allow, `/*` at worst) that cover them all."""
    if len(paths) <= MAX_FILE_PATHS:
        return sorted(paths)
    folders = [p.split("/")[:-1] for p in paths]  # "/icons/a.png" -> ["", "icons"]
    for depth in range(max(len(f) for f in folders), 0, -1):
        wildcards = {"/".join(f[:depth]) + "/*" for f in folders}
        # a file nearer the root than `depth` gives its own folder's wildcard, which covers deeper ones
        covered = {w for w in wildcards for v in wildcards if v != w and w.startswith(v[:-1])}
        if len(wildcards - covered) <= MAX_WILDCARD_PATHS:
            return sorted(wildcards - covered)
    return ["/*"]


_client_lock = threading.Lock()


def _cloudfront() -> Any:
    """A CloudFront client from boto3's default session (which reads AWS_ENDPOINT_URL), built under a lock: a backfill
    runs its tasks in threads, and building clients from the default session is not thread-safe. Built only when a
    batch has paths to invalidate."""
    import boto3

    with _client_lock:
        return boto3.client("cloudfront")


class CdnInvalidations:
    """The CDN paths one batch replaced or removed, invalidated with one CreateInvalidation at its end
    (CloudFront bills per path and limits invalidations in progress, so never one request per record)."""

    def __init__(self, distribution_id: str, client: Any | None = None) -> None:
        self.distribution_id = distribution_id
        self._client = client
        self._paths: set[str] = set()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _cloudfront()
        return self._client

    def add_key(self, key: str) -> None:
        """A CDN-bucket key whose object was replaced or removed."""
        self._paths.add(cdn_path(key))

    @property
    def pending(self) -> list[str]:
        """The file paths collected and not yet flushed."""
        return sorted(self._paths)

    def flush(self, reference: str) -> list[str]:
        """Invalidate the collected paths (if any) and forget them; `reference` makes the request unique. Returns the
        paths sent (wildcards when there were more files than one request may name: `invalidation_paths`)."""
        paths, self._paths = invalidation_paths(list(self._paths)), set()
        if paths:
            self.client.create_invalidation(
                DistributionId=self.distribution_id,
                InvalidationBatch={"Paths": {"Quantity": len(paths), "Items": paths}, "CallerReference": reference},
            )
        return paths


def invalidations_from_env(env: dict[str, str] | None = None) -> CdnInvalidations | None:
    """A collector for the stack's distribution (MEDIACANON_CDN_DISTRIBUTION_ID), or None when it has none."""
    distribution = (os.environ if env is None else env).get(DISTRIBUTION_ENV)
    return CdnInvalidations(distribution) if distribution else None
