"""No 404 while a file settles, and production media in QA without copying (issue 18): the distribution of the
expanded template (after the SAM transform, as CloudFormation receives it: mediacanon.local.topology.expand) read
for several parameter sets.

CloudFront's rules the template must keep, in the words of its documentation (cfn-lint checks the shapes, not these):

- "An origin group includes two origins (a primary origin and a secondary origin to failover to) and a failover
  criteria that you specify." (CloudFront API Reference, OriginGroup:
  https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_OriginGroup.html) -- exactly two members, so a
  third bucket cannot join the group.
- "If the returned status code has been configured for failover, CloudFront sends the same request to the secondary
  origin in the origin group." and "CloudFront fails over to the secondary origin only when the HTTP method of the
  viewer request is GET, HEAD, or OPTIONS." (Developer Guide, Request and response behavior for origin groups:
  https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/RequestAndResponseBehaviorOriginGroups.html) --
  a cache behaviour that targets an origin group allows those methods only.
- "If the object you request doesn't exist, the error that Amazon S3 returns depends on whether you also have the
  s3:ListBucket permission. [...] If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status
  code 403 Forbidden error." (S3 API Reference, GetObject:
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html) -- the OAC may only s3:GetObject, so a
  missing key answers 403 to CloudFront: the failover criteria are [403, 404].
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

from mediacanon.local.intrinsics import placeholders
from mediacanon.local.topology import Resolver, expand, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
PRIMARY, CDN, PRODUCTION, LEGACY = "qa-media", "qa-cdn", "archive-media", "archive-legacy"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf"
BASE = {"PrimaryBucketName": PRIMARY, "CdnBucketName": CDN, "DatabaseSecretArn": SECRET}
WITH_CDN = {**BASE, "CreateDistribution": "true"}
QA = {**WITH_CDN, "ReadOnlyFallbackBucket": PRODUCTION}
DISTRIBUTION_ARN = "arn:aws:cloudfront::123456789012:distribution/ref:CdnDistribution"
FAILOVER_METHODS = {"GET", "HEAD", "OPTIONS"}
READ_PREFIXES = ("Get", "List", "Head")


class Stack:
    """The expanded template resolved for one set of parameters; a deployed stack's values as placeholders."""

    def __init__(self, parameters: dict[str, str]) -> None:
        self.template = expand(TEMPLATE, parameters, artifact_bucket="mediacanon-artifacts")
        self.resolver = Resolver(self.template, parameters)
        names = set(self.template["Resources"])
        self.resources = {
            logical_id: self.resolver.resolve(placeholders(resource, names))
            for logical_id, resource in self.template["Resources"].items()
            if self.resolver.resource_enabled(resource)
        }
        self.outputs = {
            name: self.resolver.resolve(placeholders(output["Value"], names))
            for name, output in self.template.get("Outputs", {}).items()
            if self.resolver.resource_enabled(output)
        }

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r.get("Properties", {}) for k, r in self.resources.items() if r["Type"] == kind}

    def distribution(self) -> dict[str, Any]:
        config: dict[str, Any] = self.resources["CdnDistribution"]["Properties"]["DistributionConfig"]
        return config

    def bucket_policy(self, logical_id: str) -> list[dict[str, Any]]:
        (policy,) = [p for p in self.of_type("AWS::S3::BucketPolicy").values() if p["Bucket"] == f"ref:{logical_id}"]
        statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
        return statements

    def every_statement(self) -> list[dict[str, Any]]:
        """Every policy statement of the stack: roles' inline policies, managed policies, bucket and queue policies."""
        out: list[dict[str, Any]] = []
        for resource in self.resources.values():
            props = resource.get("Properties", {})
            for policy in props.get("Policies", []):
                out += policy["PolicyDocument"]["Statement"]
            if "PolicyDocument" in props:
                out += props["PolicyDocument"]["Statement"]
        return out


_stacks: dict[frozenset[tuple[str, str]], Stack] = {}


def stack_for(parameters: dict[str, str]) -> Stack:
    key = frozenset(parameters.items())
    if key not in _stacks:
        _stacks[key] = Stack(parameters)
    return _stacks[key]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _origins(stack: Stack) -> dict[str, dict[str, Any]]:
    return {o["Id"]: o for o in stack.distribution()["Origins"]}


def _group(stack: Stack) -> dict[str, Any]:
    groups = stack.distribution()["OriginGroups"]
    (group,) = groups["Items"]
    assert groups["Quantity"] == 1
    return dict(group)


# -- part 3: the CDN bucket first, then the primary ---------------------------------------------------------------


def test_the_default_behaviour_fails_over_from_the_cdn_bucket_to_the_primary_on_403_and_404() -> None:
    stack = stack_for(WITH_CDN)
    origins = _origins(stack)
    group = _group(stack)
    members = [m["OriginId"] for m in group["Members"]["Items"]]
    assert members == ["cdn-bucket", "primary-bucket"]
    assert group["Members"]["Quantity"] == len(members) == 2, "an origin group holds exactly two origins"
    assert group["FailoverCriteria"] == {"StatusCodes": {"Quantity": 2, "Items": [403, 404]}}
    assert origins["cdn-bucket"]["DomainName"] == f"{CDN}.s3.us-east-1.amazonaws.com"
    assert origins["primary-bucket"]["DomainName"] == f"{PRIMARY}.s3.us-east-1.amazonaws.com"
    default = stack.distribution()["DefaultCacheBehavior"]
    assert default["TargetOriginId"] == group["Id"]
    assert set(default["AllowedMethods"]) == {"GET", "HEAD"} and set(default["CachedMethods"]) == {"GET", "HEAD"}


@pytest.mark.parametrize("parameters", [WITH_CDN, QA], ids=["prod", "qa"])
def test_every_behaviour_on_an_origin_group_allows_only_the_methods_that_fail_over(parameters: dict[str, str]) -> None:
    config = stack_for(parameters).distribution()
    groups = {g["Id"] for g in config["OriginGroups"]["Items"]}
    behaviours = [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]
    on_groups = [b for b in behaviours if b["TargetOriginId"] in groups]
    assert on_groups, "the default behaviour targets the group"
    for behaviour in on_groups:
        assert set(behaviour["AllowedMethods"]) <= FAILOVER_METHODS, behaviour
    for group in config["OriginGroups"]["Items"]:
        assert len(group["Members"]["Items"]) == group["Members"]["Quantity"] == 2, group
        assert {m["OriginId"] for m in group["Members"]["Items"]} <= {o["Id"] for o in config["Origins"]}


@pytest.mark.parametrize("parameters", [WITH_CDN, QA], ids=["prod", "qa"])
def test_each_bucket_is_read_through_an_origin_access_control_of_its_own(parameters: dict[str, str]) -> None:
    stack = stack_for(parameters)
    origins = _origins(stack)
    controls = [o["OriginAccessControlId"] for o in origins.values()]
    assert len(set(controls)) == len(controls) == len(origins), "one OAC per bucket"
    for origin in origins.values():
        assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}, "no legacy origin access identity"
        assert str(origin["OriginAccessControlId"]).startswith("getatt:") and origin["OriginAccessControlId"].endswith(".Id")
    oacs = stack.of_type("AWS::CloudFront::OriginAccessControl")
    assert {f"getatt:{k}.Id" for k in oacs} == set(controls)
    for oac in oacs.values():
        config = oac["OriginAccessControlConfig"]
        assert (config["OriginAccessControlOriginType"], config["SigningBehavior"], config["SigningProtocol"]) == (
            "s3",
            "always",
            "sigv4",
        )


def test_the_reports_prefix_is_never_failed_over_to_the_primary() -> None:
    config = stack_for(WITH_CDN).distribution()
    (reports,) = config["CacheBehaviors"]
    assert reports["PathPattern"] == "mediacanon-reports/*"
    assert reports["TargetOriginId"] == "cdn-bucket", "the CDN bucket never holds the reports: they 404 there"


def _read_grant(bucket_arn: str) -> dict[str, Any]:
    return {
        "Sid": "CloudFrontReadsThroughOriginAccessControl",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": f"{bucket_arn}/*",
        "Condition": {"StringEquals": {"aws:SourceArn": DISTRIBUTION_ARN}},
    }


def _reports_denied(bucket_arn: str) -> dict[str, Any]:
    return {
        "Sid": "CloudFrontNeverReadsReports",
        "Effect": "Deny",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": f"{bucket_arn}/mediacanon-reports/*",
    }


def test_the_primary_bucket_this_stack_creates_grants_the_distribution_get_object_only() -> None:
    statements = stack_for(WITH_CDN).bucket_policy("PrimaryBucket")
    to_cloudfront = [s for s in statements if s["Principal"] != "*"]
    assert to_cloudfront == [_read_grant("getatt:PrimaryBucket.Arn"), _reports_denied("getatt:PrimaryBucket.Arn")]
    assert "PrimaryBucketPolicyStatement" not in stack_for(WITH_CDN).outputs, "the stack manages that policy itself"


def test_without_a_distribution_no_bucket_grants_cloudfront_anything() -> None:
    plain = stack_for(BASE)
    assert not plain.of_type("AWS::CloudFront::OriginAccessControl")
    for logical_id in ("PrimaryBucket", "CdnBucket"):
        assert [s["Effect"] for s in plain.bucket_policy(logical_id)] == ["Deny"], "TLS only"
    assert not {"PrimaryBucketPolicyStatement", "CdnBucketPolicyStatement", "ReadOnlyFallbackBucketPolicyStatement"} & set(
        plain.outputs
    )


@pytest.mark.parametrize(
    ("create", "outputs"),
    [("cdn-only", ["PrimaryBucketPolicyStatement"]), ("false", ["PrimaryBucketPolicyStatement", "CdnBucketPolicyStatement"])],
)
def test_a_bucket_this_stack_does_not_create_gets_the_same_statements_as_an_output(create: str, outputs: list[str]) -> None:
    """What the stack would put in a policy it creates is, for a bucket it does not, an output to add by hand."""
    stack = stack_for({**WITH_CDN, "CreateBuckets": create})
    assert sorted(k for k in stack.outputs if k.endswith("BucketPolicyStatement")) == sorted(outputs)
    created = stack_for(WITH_CDN)
    primary = json.loads(stack.outputs["PrimaryBucketPolicyStatement"])
    expected = [s for s in created.bucket_policy("PrimaryBucket") if s["Principal"] != "*"]
    assert primary == json.loads(json.dumps(expected).replace("getatt:PrimaryBucket.Arn", f"arn:aws:s3:::{PRIMARY}"))
    if "CdnBucketPolicyStatement" in outputs:
        cdn = json.loads(stack.outputs["CdnBucketPolicyStatement"])
        assert cdn == _read_grant(f"arn:aws:s3:::{CDN}")
        assert [s for s in created.bucket_policy("CdnBucket") if s["Effect"] == "Allow"] == [_read_grant("getatt:CdnBucket.Arn")]


# -- part 4: a read-only fallback (QA on a production dump) ------------------------------------------------------


def test_with_a_read_only_fallback_the_group_is_the_primary_then_the_fallback() -> None:
    """Two origins per group: (primary, fallback). The CDN bucket holds a subset of the primary's keys with the
    primary's bytes (I3), so leaving it out loses no key and keeps the settle window closed."""
    stack = stack_for(QA)
    origins = _origins(stack)
    group = _group(stack)
    assert [m["OriginId"] for m in group["Members"]["Items"]] == ["primary-bucket", "read-only-fallback"]
    assert group["FailoverCriteria"]["StatusCodes"]["Items"] == [403, 404]
    assert origins["read-only-fallback"]["DomainName"] == f"{PRODUCTION}.s3.us-east-1.amazonaws.com"
    assert stack.distribution()["DefaultCacheBehavior"]["TargetOriginId"] == group["Id"]
    elsewhere = stack_for({**QA, "ReadOnlyFallbackBucketRegion": "eu-west-1"})
    assert _origins(elsewhere)["read-only-fallback"]["DomainName"] == f"{PRODUCTION}.s3.eu-west-1.amazonaws.com"


def test_the_fallback_gets_its_statement_as_an_output_granting_get_object_only() -> None:
    stack = stack_for(QA)
    statement = json.loads(stack.outputs["ReadOnlyFallbackBucketPolicyStatement"])
    assert statement == {
        "Sid": "ReadOnlyFallbackForQaDistribution",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{PRODUCTION}/*",
        "Condition": {"StringEquals": {"aws:SourceArn": DISTRIBUTION_ARN}},
    }
    # the stack never manages the production bucket's policy
    policies = stack.of_type("AWS::S3::BucketPolicy").values()
    assert all(p["Bucket"] in ("ref:PrimaryBucket", "ref:CdnBucket") for p in policies)
    assert "ReadOnlyFallbackBucketPolicyStatement" not in stack_for(WITH_CDN).outputs


@pytest.mark.parametrize(
    "parameters",
    [QA, {**QA, "FallbackBucketNames": f"{PRODUCTION},{LEGACY}"}, {**QA, "CreateBuckets": "cdn-only", "InventoryBucket": "inv"}],
    ids=["qa", "qa-and-backfill-fallbacks", "qa-existing-primary"],
)
def test_nothing_in_the_stack_may_write_or_delete_on_the_read_only_fallback(parameters: dict[str, str]) -> None:
    """Read-only by construction: no statement of any policy (roles, managed policies, bucket and queue policies)
    allows an s3 action other than a read on the fallback bucket or its objects."""
    stack = stack_for(parameters)
    targets = [f"arn:aws:s3:::{PRODUCTION}", f"arn:aws:s3:::{PRODUCTION}/icons/nytimes.png"]
    statements = [s for s in stack.every_statement() if s["Effect"] == "Allow"]
    assert statements
    for statement in statements:
        resources = [str(r) for r in _as_list(statement.get("Resource", []))]
        if not any(fnmatch.fnmatchcase(t, r) for t in targets for r in resources):
            continue
        for action in _as_list(statement["Action"]):
            service, _, name = str(action).partition(":")
            assert service != "s3" or (name.startswith(READ_PREFIXES) and "*" not in name), statement
    for write in ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectTagging", "s3:PutBucketPolicy"):
        assert not [
            s
            for s in statements
            if any(fnmatch.fnmatchcase(write.lower(), str(a).lower()) for a in _as_list(s["Action"]))
            and any(fnmatch.fnmatchcase(t, str(r)) for t in targets for r in _as_list(s.get("Resource", [])))
        ], write


def test_a_fallback_without_the_distribution_fails_the_deploy() -> None:
    template = load_template(TEMPLATE)

    def broken(parameters: dict[str, str]) -> list[str]:
        resolver = Resolver(template, parameters)
        return [
            name
            for name, rule in template["Rules"].items()
            if resolver.resolve(rule.get("RuleCondition", True))
            and not all(resolver.resolve(a["Assert"]) for a in rule["Assertions"])
        ]

    assert broken(QA) == []
    assert broken({**BASE, "ReadOnlyFallbackBucket": PRODUCTION}) == ["ReadOnlyFallbackNeedsTheDistribution"]
    assert broken({**QA, "ReadOnlyFallbackBucket": PRIMARY}) == ["ReadOnlyFallbackNeedsTheDistribution"]
    assert broken({**QA, "ReadOnlyFallbackBucket": CDN}) == ["ReadOnlyFallbackNeedsTheDistribution"]


def test_cfn_lint_finds_nothing_in_the_expanded_qa_template(tmp_path: Path) -> None:
    """cfn-lint (make test) reads template.yaml; here the plain CloudFormation SAM hands over for QA's parameters."""
    path = tmp_path / "expanded.json"
    path.write_text(json.dumps(stack_for(QA).template), encoding="utf-8")
    assert [str(m) for m in lint_file(path, ManualArgs(regions=["us-east-1"]))] == []
