"""A local stand-in for the CloudFront distribution of template.yaml: what a viewer's GET would get, and from where.

`LocalCdn.from_template` reads `CdnDistribution` from the template (expanded or not: it is plain CloudFormation
either way) for one set of parameters: its origins (each an S3 bucket, named by the parameter in its DomainName),
its origin groups (members in order, the failover status codes) and its cache behaviours (path patterns, the
default). `serve(key)` then answers a GET as the distribution would on a cache miss: the behaviour whose path
pattern matches, its origin, or its origin group's members in order, the next one only when the previous answered
a status code of the group's failover criteria. No cache, no TTLs, no edge: only the routing rule, so a test can
count what a viewer sees while the live path moves a file (tests/acceptance/test_settle_window.py).

S3 through an origin access control without s3:ListBucket answers 403 for a missing key; the emulators answer 404
(the credentials may list): both are failover codes of the template's group, so the route is the same.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from mediacanon.local.intrinsics import Resolver, TopologyError, placeholders

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DISTRIBUTION = "CdnDistribution"
_S3_DOMAIN = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]+[a-z0-9])\.s3(?:[.-](?P<region>[a-z0-9-]+))?\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class Route:
    """What one cache behaviour sends a request to: its origins in failover order, the codes that fail over."""

    target: str  # the behaviour's TargetOriginId: an origin's or an origin group's id
    origins: tuple[str, ...]  # origin ids, in the order they are tried
    failover_on: frozenset[int] = frozenset()  # status codes after which the next origin is tried


@dataclass(frozen=True)
class LocalCdn:
    s3: S3Client = field(repr=False)
    buckets: Mapping[str, str]  # origin id -> bucket name
    default: Route
    behaviours: tuple[tuple[str, Route], ...] = ()  # (path pattern, route), in the distribution's order

    @classmethod
    def from_template(cls, template: Mapping[str, Any], parameters: Mapping[str, str], s3: S3Client) -> LocalCdn:
        """The distribution of `template` for `parameters` (CreateDistribution=true), serving from `s3`'s buckets."""
        resolver = Resolver(template, {k: v for k, v in parameters.items() if k in (template.get("Parameters") or {})})
        resources = template.get("Resources") or {}
        resource = resources.get(DISTRIBUTION)
        if resource is None or not resolver.resource_enabled(resource):
            raise TopologyError(f"{DISTRIBUTION} is not created for these parameters (CreateDistribution=true?)")
        config = resolver.resolve(placeholders(resource["Properties"]["DistributionConfig"], set(resources)))
        buckets = {origin["Id"]: _bucket_of(origin) for origin in config["Origins"]}
        groups = {
            group["Id"]: Route(
                group["Id"],
                tuple(m["OriginId"] for m in group["Members"]["Items"]),
                frozenset(int(c) for c in group["FailoverCriteria"]["StatusCodes"]["Items"]),
            )
            for group in (config.get("OriginGroups") or {}).get("Items", [])
        }

        def route(behaviour: Mapping[str, Any]) -> Route:
            target = str(behaviour["TargetOriginId"])
            if target in groups:
                return groups[target]
            if target not in buckets:
                raise TopologyError(f"{DISTRIBUTION}: TargetOriginId {target!r} is neither an origin nor an origin group")
            return Route(target, (target,))

        behaviours = tuple((str(b["PathPattern"]), route(b)) for b in config.get("CacheBehaviors") or [])
        return cls(s3, buckets, route(config["DefaultCacheBehavior"]), behaviours)

    def without_failover(self) -> LocalCdn:
        """The same distribution with each origin group cut to its first member: the CDN bucket alone."""
        return replace(
            self,
            default=_first_only(self.default),
            behaviours=tuple((pattern, _first_only(r)) for pattern, r in self.behaviours),
        )

    def route_for(self, key: str) -> Route:
        """The first cache behaviour whose path pattern matches the path (case-sensitive, * and ?), else the default."""
        for pattern, route in self.behaviours:
            if fnmatch.fnmatchcase(key, pattern.lstrip("/")):
                return route
        return self.default

    def serve(self, key: str) -> tuple[int, str]:
        """A GET of /`key`: (status, the id of the origin that answered)."""
        route = self.route_for(key)
        status, origin = 0, route.origins[0]
        for origin in route.origins:
            status = self._get(self.buckets[origin], key)
            if status not in route.failover_on:
                break
        return status, origin

    def _get(self, bucket: str, key: str) -> int:
        try:
            self.s3.get_object(Bucket=bucket, Key=key)["Body"].close()
        except ClientError as exc:
            return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
        return 200


def _first_only(route: Route) -> Route:
    return Route(route.target, route.origins[:1])


def _bucket_of(origin: Mapping[str, Any]) -> str:
    if "S3OriginConfig" not in origin:
        raise TopologyError(f"{DISTRIBUTION}: origin {origin.get('Id')!r} is not an S3 bucket")
    match = _S3_DOMAIN.match(str(origin["DomainName"]))
    if match is None:
        raise TopologyError(f"{DISTRIBUTION}: origin {origin.get('Id')!r}: {origin['DomainName']!r} is not an S3 endpoint")
    return match["bucket"]
