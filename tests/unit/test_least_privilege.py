"""Least privilege, read from the template as CloudFormation receives it: after the SAM transform (the SAM CLI's
own aws-sam-translator, mediacanon.local.topology.expand), so the roles and policies SAM generates are checked too."""

from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mediacanon.local.intrinsics import placeholders
from mediacanon.local.topology import Resolver, expand

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
PRIMARY, CDN, LEGACY = "archive-media", "archive-cdn", "archive-legacy"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf"
BASE = {"PrimaryBucketName": PRIMARY, "CdnBucketName": CDN, "DatabaseSecretArn": SECRET}
EVERYTHING = {
    **BASE,
    "FallbackBucketNames": f"{LEGACY},archive-old",
    "VpcSubnetIds": "subnet-1,subnet-2",
    "VpcSecurityGroupIds": "sg-1",
    "VpcId": "vpc-1",
    "VpcRouteTableIds": "rtb-1",
    "DatabaseProxyTarget": "archive-db",
    "CreateDistribution": "true",
    "AlarmEmail": "ops@example.com",
    "InventoryBucket": "archive-inventory",
    "InventoryPrefix": "inventory/",
}
STEPS = {"NormalizeFunction": "NormalizeQueue", "ReplicateFunction": "ReplicateQueue", "LinkFunction": "LinkQueue"}
ALLOWED_MANAGED_POLICIES = (
    "service-role/AWSLambdaBasicExecutionRole",  # its own log group
    "service-role/AWSLambdaVPCAccessExecutionRole",  # its network interfaces, with VpcSubnetIds
    "AWSXRayDaemonWriteAccess",  # traces
    "AWSXrayWriteOnlyAccess",  # traces: SAM's choice for the state machine's Tracing, the same X-Ray Put actions
)
# X-Ray's actions take no resource-level permissions: "*" is the only resource they accept
STAR_RESOURCE_ALLOWED = {"xray:puttracesegments", "xray:puttelemetryrecords", "xray:getsamplingrules", "xray:getsamplingtargets"}
READ_PREFIXES = ("Get", "List", "Describe", "Head")


class Stack:
    """The expanded template with every resolvable intrinsic evaluated for one set of parameters; what only a
    deployed stack knows reads as ``ref:<LogicalId>`` / ``getatt:<LogicalId>.<Attribute>``."""

    def __init__(self, parameters: dict[str, str]) -> None:
        self.template = expand(TEMPLATE, parameters, artifact_bucket="mediacanon-artifacts")
        declared = self.template["Parameters"]
        self.resolver = Resolver(self.template, {k: v for k, v in parameters.items() if k in declared})
        self.resources = {
            logical_id: self.resolver.resolve(placeholders(resource, set(self.template["Resources"])))
            for logical_id, resource in self.template["Resources"].items()
            if self.resolver.resource_enabled(resource)
        }

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r.get("Properties", {}) for k, r in self.resources.items() if r["Type"] == kind}

    def role_statements(self, role_id: str) -> list[dict[str, Any]]:
        role = self.resources[role_id]["Properties"]
        statements = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
        for arn in role.get("ManagedPolicyArns", []):
            if arn.startswith("ref:"):  # a managed policy of this stack
                statements += self.resources[arn[4:]]["Properties"]["PolicyDocument"]["Statement"]
        return statements

    def function_role(self, function_id: str) -> str:
        role = self.resources[function_id]["Properties"]["Role"]
        assert role.startswith("getatt:") and role.endswith(".Arn"), role
        return str(role[len("getatt:") : -len(".Arn")])

    def all_statements(self) -> list[dict[str, Any]]:
        out = [s for role_id in self.of_type("AWS::IAM::Role") for s in self.role_statements(role_id)]
        out += [s for p in self.of_type("AWS::IAM::ManagedPolicy").values() for s in p["PolicyDocument"]["Statement"]]
        return out


_stacks: dict[frozenset[tuple[str, str]], Stack] = {}


def stack_for(parameters: dict[str, str]) -> Stack:
    """One expansion per parameter set for the whole module (each is a SAM CLI subprocess, ~0.7 s)."""
    key = frozenset(parameters.items())
    if key not in _stacks:
        _stacks[key] = Stack(parameters)
    return _stacks[key]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _s3(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in statements if any(a.startswith("s3:") for a in _as_list(s["Action"]))]


def _is_read(action: str) -> bool:
    return action.split(":", 1)[1].startswith(READ_PREFIXES)


def _matches(patterns: list[str], arn: str) -> bool:
    return any(fnmatch.fnmatchcase(arn, p) for p in patterns)


@pytest.fixture(scope="module", params=["defaults", "everything"])
def stack(request: pytest.FixtureRequest) -> Stack:
    return stack_for(BASE if request.param == "defaults" else EVERYTHING)


@pytest.fixture(scope="module")
def everything() -> Stack:
    return stack_for(EVERYTHING)


def test_the_expansion_is_plain_cloudformation(stack: Stack) -> None:
    assert "Transform" not in stack.template
    assert not [k for k, r in stack.template["Resources"].items() if r["Type"].startswith("AWS::Serverless::")]
    assert set(STEPS) <= set(stack.of_type("AWS::Lambda::Function"))


def test_no_wildcard_actions_no_acls_no_star_resource_on_writes(stack: Stack) -> None:
    for statement in stack.all_statements():
        assert statement["Effect"] == "Allow", statement
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        actions = [a.lower() for a in _as_list(statement["Action"])]
        assert "*" not in actions and "s3:*" not in actions, statement
        assert not [a for a in actions if a.endswith("*")], f"no action wildcards: {statement}"
        assert not [a for a in actions if "acl" in a], f"no ACL actions (buckets enforce bucket-owner ownership): {statement}"
        if "*" in _as_list(statement["Resource"]):
            assert set(actions) <= STAR_RESOURCE_ALLOWED, f"'*' only where IAM allows nothing narrower: {statement}"


def test_only_the_expected_managed_policies(stack: Stack) -> None:
    for role_id, role in stack.of_type("AWS::IAM::Role").items():
        for arn in role.get("ManagedPolicyArns", []):
            if arn.startswith("ref:"):
                assert arn == "ref:FallbackReadPolicy", role_id
                continue
            assert arn.startswith("arn:aws:iam::aws:policy/"), (role_id, arn)
            assert arn.removeprefix("arn:aws:iam::aws:policy/") in ALLOWED_MANAGED_POLICIES, (role_id, arn)


@pytest.mark.parametrize(("function_id", "queue_id"), STEPS.items())
def test_each_function_consumes_only_its_own_queue_and_reads_only_the_secret(
    stack: Stack, function_id: str, queue_id: str
) -> None:
    statements = stack.role_statements(stack.function_role(function_id))
    sqs = [s for s in statements if any(a.startswith("sqs:") for a in _as_list(s["Action"]))]
    assert [r for s in sqs for r in _as_list(s["Resource"])] == [f"getatt:{queue_id}.Arn"]
    secrets = [s for s in statements if any(a.startswith("secretsmanager:") for a in _as_list(s["Action"]))]
    assert [a for s in secrets for a in _as_list(s["Action"])] == ["secretsmanager:GetSecretValue"]
    assert [r for s in secrets for r in _as_list(s["Resource"])] == [SECRET]
    # the event source mapping reads the queue through the role: it must point at the same queue
    (mapping,) = [
        m for m in stack.of_type("AWS::Lambda::EventSourceMapping").values() if m["FunctionName"] == f"ref:{function_id}"
    ]
    assert mapping["EventSourceArn"] == f"getatt:{queue_id}.Arn"


def test_read_only_on_fallback_buckets(everything: Stack) -> None:
    legacy_objects = [f"arn:aws:s3:::{name}/icons/a.png" for name in (LEGACY, "archive-old")]
    touching = [s for s in _s3(everything.all_statements()) if any(_matches(_as_list(s["Resource"]), a) for a in legacy_objects)]
    assert touching, "the backfill worker reads the fallbacks"
    for statement in touching:
        assert all(_is_read(a) for a in _as_list(statement["Action"])), statement
    # and only the backfill worker reads them
    readers = {
        role_id
        for role_id in everything.of_type("AWS::IAM::Role")
        if any(_matches(_as_list(s["Resource"]), legacy_objects[0]) for s in _s3(everything.role_statements(role_id)))
    }
    assert readers == {"BackfillFunctionRole"}


def test_the_inventory_is_read_by_the_objects_machine_alone_under_its_prefix_and_only_when_named(everything: Stack) -> None:
    """`mediacanon backfill --inventory`: the objects state machine's ItemReader (MANIFEST, s3:getObject) reads the
    manifest and its data files in InventoryBucket, under InventoryPrefix; no role may write there or read elsewhere
    in it, and a stack without InventoryBucket grants nothing on any inventory."""
    base = f"arn:aws:s3:::archive-inventory/inventory/{PRIMARY}/daily"
    wanted = [f"{base}/2026-12-01T00-00Z/manifest.json", f"{base}/data/0f0e1d2c.csv.gz"]

    def allowed(stack: Stack, role_id: str, action: str, arn: str) -> bool:
        return any(
            action in _as_list(s["Action"]) and _matches(_as_list(s["Resource"]), arn)
            for s in stack.role_statements(role_id)
            if s["Effect"] == "Allow"
        )

    roles = list(everything.of_type("AWS::IAM::Role"))
    readers = {r for r in roles if all(allowed(everything, r, "s3:GetObject", arn) for arn in wanted)}
    objects_role = everything.resources["BackfillObjectsStateMachine"]["Properties"]["RoleArn"]
    assert readers == {objects_role[len("getatt:") : -len(".Arn")]}
    touching = [
        s for s in _s3(everything.all_statements()) if any("archive-inventory" in str(r) for r in _as_list(s["Resource"]))
    ]
    assert touching and all(_as_list(s["Action"]) == ["s3:GetObject"] for s in touching), touching
    assert not any(allowed(everything, r, "s3:GetObject", "arn:aws:s3:::archive-inventory/elsewhere/x") for r in roles)
    defaults = stack_for(BASE)
    assert not [s for s in _s3(defaults.all_statements()) if any(":::/" in str(r) for r in _as_list(s["Resource"]))]
    assert not any(allowed(defaults, r, "s3:GetObject", wanted[0]) for r in defaults.of_type("AWS::IAM::Role")), (
        "an inventory is readable without InventoryBucket"
    )


def test_cloudfront_invalidation_only_by_replicate_and_the_backfill_on_their_own_distribution(everything: Stack) -> None:
    distribution = "arn:aws:cloudfront::123456789012:distribution/ref:CdnDistribution"
    for role_id in everything.of_type("AWS::IAM::Role"):
        invalidating = [
            s for s in everything.role_statements(role_id) if "cloudfront:CreateInvalidation" in _as_list(s["Action"])
        ]
        if role_id in ("ReplicateFunctionRole", "BackfillFunctionRole"):
            assert [s["Resource"] for s in invalidating] == [distribution], role_id
            assert all(_as_list(s["Action"]) == ["cloudfront:CreateInvalidation"] for s in invalidating), role_id
        else:
            assert invalidating == [], role_id
    for function_id in ("ReplicateFunction", "BackfillFunction"):
        env = everything.resources[function_id]["Properties"]["Environment"]["Variables"]
        assert env["MEDIACANON_CDN_DISTRIBUTION_ID"] == "ref:CdnDistribution", function_id


def test_without_a_distribution_no_cloudfront_anywhere() -> None:
    plain = stack_for(BASE)
    assert not plain.of_type("AWS::CloudFront::Distribution")
    assert not [s for s in plain.all_statements() if any(a.startswith("cloudfront:") for a in _as_list(s["Action"]))]
    for function_id in (*STEPS, "BackfillFunction"):
        assert "MEDIACANON_CDN_DISTRIBUTION_ID" not in plain.resources[function_id]["Properties"]["Environment"]["Variables"]


def test_cdn_bucket_is_read_by_the_distribution_only_through_origin_access_control(everything: Stack) -> None:
    (distribution,) = everything.of_type("AWS::CloudFront::Distribution").values()
    # the CDN bucket's origin; the primary is the origin group's second member (tests/unit/test_cdn_failover.py)
    origin = {o["Id"]: o for o in distribution["DistributionConfig"]["Origins"]}["cdn-bucket"]
    assert origin["OriginAccessControlId"] == "getatt:CdnOriginAccessControl.Id"
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}, "no legacy origin access identity"
    assert origin["DomainName"] == f"{CDN}.s3.us-east-1.amazonaws.com"
    assert distribution["DistributionConfig"]["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    oac = everything.of_type("AWS::CloudFront::OriginAccessControl")["CdnOriginAccessControl"]
    assert oac["OriginAccessControlConfig"]["SigningBehavior"] == "always"

    (policy,) = [p for p in everything.of_type("AWS::S3::BucketPolicy").values() if p["Bucket"] == "ref:CdnBucket"]
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allows == [
        {
            "Sid": "CloudFrontReadsThroughOriginAccessControl",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": "getatt:CdnBucket.Arn/*",
            "Condition": {"StringEquals": {"aws:SourceArn": "arn:aws:cloudfront::123456789012:distribution/ref:CdnDistribution"}},
        }
    ]


def test_no_bucket_is_public_or_uses_acls(stack: Stack) -> None:
    for logical_id, bucket in stack.of_type("AWS::S3::Bucket").items():
        assert "AccessControl" not in bucket, logical_id
        assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, logical_id
        assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}, logical_id
    for policy in stack.of_type("AWS::S3::BucketPolicy").values():
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert statement["Principal"] != "*" and "AWS" not in statement["Principal"], statement


def test_no_credentials_in_environment_variables(stack: Stack) -> None:
    for logical_id, function in stack.of_type("AWS::Lambda::Function").items():
        variables = function.get("Environment", {}).get("Variables", {})
        assert variables["MEDIACANON_DB_SECRET_ARN"] == SECRET, logical_id
        assert "DATABASE_URL" not in variables, logical_id
        text = json.dumps(variables).lower()
        assert "password" not in text and "postgresql://" not in text, logical_id


def test_rds_proxy_reads_only_the_secret_and_the_functions_use_its_endpoint(everything: Stack) -> None:
    (proxy,) = everything.of_type("AWS::RDS::DBProxy").values()
    assert proxy["RequireTLS"] is True
    assert proxy["Auth"] == [{"AuthScheme": "SECRETS", "SecretArn": SECRET, "IAMAuth": "DISABLED"}]
    assert everything.role_statements("DatabaseProxyRole") == [
        {"Sid": "ReadDatabaseSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET}
    ]
    (targets,) = everything.of_type("AWS::RDS::DBProxyTargetGroup").values()
    assert targets["DBInstanceIdentifiers"] == ["archive-db"] and "DBClusterIdentifiers" not in targets
    for function_id in (*STEPS, "BackfillFunction"):
        variables = everything.resources[function_id]["Properties"]["Environment"]["Variables"]
        assert variables["MEDIACANON_DB_HOST"] == "getatt:DatabaseProxy.Endpoint", function_id
    (endpoint,) = everything.of_type("AWS::EC2::VPCEndpoint").values()
    assert (endpoint["VpcEndpointType"], endpoint["ServiceName"], endpoint["RouteTableIds"]) == (
        "Gateway",
        "com.amazonaws.us-east-1.s3",
        ["rtb-1"],
    )


def test_without_vpc_no_proxy_no_endpoint_no_vpc_policy() -> None:
    plain = stack_for(BASE)
    assert not plain.of_type("AWS::RDS::DBProxy") and not plain.of_type("AWS::EC2::VPCEndpoint")
    for function_id in STEPS:
        role = plain.resources[plain.function_role(function_id)]["Properties"]
        assert not [a for a in role["ManagedPolicyArns"] if "VPCAccess" in a], function_id
        assert "VpcConfig" not in plain.resources[function_id]["Properties"]


# -- alarms and dashboard ------------------------------------------------------------------------------------------


def _alarms(stack: Stack) -> list[dict[str, Any]]:
    return list(stack.of_type("AWS::CloudWatch::Alarm").values())


def _alarm_on(stack: Stack, metric: str, dimension: str) -> dict[str, Any]:
    # a metric-math alarm (LiveLoopAlarm) has Metrics instead of MetricName and Dimensions
    (alarm,) = [a for a in _alarms(stack) if a.get("MetricName") == metric and a["Dimensions"][0]["Value"] == dimension]
    return alarm


@pytest.mark.parametrize("step", ["Normalize", "Replicate", "Link"])
def test_queue_alarms(stack: Stack, step: str) -> None:
    dlq = _alarm_on(stack, "ApproximateNumberOfMessagesVisible", f"getatt:{step}DeadLetterQueue.QueueName")
    assert (dlq["Namespace"], dlq["Threshold"], dlq["ComparisonOperator"]) == ("AWS/SQS", 0, "GreaterThanThreshold")
    age = _alarm_on(stack, "ApproximateAgeOfOldestMessage", f"getatt:{step}Queue.QueueName")
    assert int(age["Threshold"]) == 2400 and age["Statistic"] == "Maximum"
    # what EventBridge could not deliver to the queue: failed for good, and waiting in the rule's dead-letter queue
    failed = _alarm_on(stack, "FailedInvocations", f"ref:{step}Rule")
    assert (failed["Namespace"], failed["Threshold"], failed["Statistic"]) == ("AWS/Events", 0, "Sum")
    undelivered = _alarm_on(stack, "ApproximateNumberOfMessagesVisible", f"getatt:{step}RuleDeadLetterQueue.QueueName")
    assert (undelivered["Namespace"], undelivered["Threshold"]) == ("AWS/SQS", 0)


@pytest.mark.parametrize("step", ["Normalize", "Replicate", "Link", "Backfill"])
def test_function_alarms(stack: Stack, step: str) -> None:
    for metric in ("Errors", "Throttles"):
        alarm = _alarm_on(stack, metric, f"ref:{step}Function")
        assert (alarm["Namespace"], alarm["Threshold"], alarm["Statistic"]) == ("AWS/Lambda", 0, "Sum")


def test_alarm_actions_follow_the_parameters(everything: Stack) -> None:
    assert all(a["AlarmActions"] == ["ref:AlarmTopic"] for a in _alarms(everything))
    (subscription,) = everything.of_type("AWS::SNS::Subscription").values()
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "ops@example.com")
    assert all("AlarmActions" not in a for a in _alarms(stack_for(BASE))), "no topic, no actions"
    existing = "arn:aws:sns:us-east-1:123456789012:pager"
    chosen = stack_for({**EVERYTHING, "AlarmTopicArn": existing})
    assert not chosen.of_type("AWS::SNS::Topic")
    assert all(a["AlarmActions"] == [existing] for a in _alarms(chosen))


def test_dashboard_shows_every_queue_and_function(stack: Stack) -> None:
    (dashboard,) = stack.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads(dashboard["DashboardBody"].replace("getatt:", "").replace("ref:", ""))
    # a metric is [namespace, name, dimension, value, (options)]; an expression is [{"expression": ...}]
    shown = {str(m[3]) for w in body["widgets"] for m in w["properties"]["metrics"] if len(m) >= 4}
    for step in ("Normalize", "Replicate", "Link"):
        assert {f"{step}Queue.QueueName", f"{step}DeadLetterQueue.QueueName", f"{step}Function"} <= shown
        assert {f"{step}RuleDeadLetterQueue.QueueName", f"{step}Rule"} <= shown
    assert "BackfillFunction" in shown


@pytest.mark.parametrize("environment", ["default", "dev", "prod"])
def test_every_samconfig_environment_expands(environment: str) -> None:
    with (ROOT / "samconfig.toml").open("rb") as fh:
        deploy = tomllib.load(fh)[environment]["deploy"]["parameters"]
    parameters = dict(item.split("=", 1) for item in deploy["parameter_overrides"])
    stack = stack_for(parameters)  # undeclared names or values outside AllowedValues fail here
    assert set(STEPS) <= set(stack.of_type("AWS::Lambda::Function"))
    assert deploy["capabilities"] == "CAPABILITY_IAM"
