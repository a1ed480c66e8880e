"""The promises template.yaml makes, read through the reader the local runner uses (mediacanon.local.topology)."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

from mediacanon.local.topology import Resolver, Topology, TopologyError, load_template, load_topology

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
PRIMARY, CDN, LEGACY = "archive-media", "archive-cdn", "archive-legacy"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf"
PARAMETERS = {"PrimaryBucketName": PRIMARY, "CdnBucketName": CDN, "DatabaseSecretArn": SECRET, "FallbackBucketNames": LEGACY}
MEDIA_MAP_ARN = "arn:aws:ssm:us-east-1:123456789012:parameter/mediacanon/media-map"
STEPS = ("NormalizeFunction", "ReplicateFunction", "LinkFunction")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def resolver(template: dict[str, Any]) -> Resolver:
    return Resolver(template, PARAMETERS)


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(TEMPLATE, PARAMETERS)


def test_cfn_lint_finds_nothing() -> None:
    matches = lint_file(TEMPLATE, ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


# -- functions ------------------------------------------------------------------------------------------------


def test_the_live_path_has_exactly_the_three_steps(topology: Topology) -> None:
    assert {f.logical_id for f in topology.functions} == set(STEPS)


@pytest.mark.parametrize("logical_id", STEPS)
def test_function_runtime_and_batching(topology: Topology, logical_id: str) -> None:
    fn = topology.function(logical_id)
    assert fn.runtime == "python3.13"
    assert fn.architectures == ("arm64",)
    assert fn.report_batch_item_failures, "without it one bad record fails (and retries) the whole batch"
    assert fn.maximum_concurrency is not None and fn.maximum_concurrency >= 2, "bounds the database connections"
    assert (ROOT / fn.handler_path).is_file()
    assert fn.handler_name == "lambda_handler"


@pytest.mark.parametrize("logical_id", STEPS)
def test_function_has_its_own_queue_with_a_dead_letter_queue(topology: Topology, logical_id: str) -> None:
    fn = topology.function(logical_id)
    others = {f.queue_logical_id for f in topology.functions if f is not fn}
    assert fn.queue_logical_id not in others
    queue = topology.queue(fn.queue_logical_id)
    assert queue.dlq_logical_id is not None
    assert queue.max_receive_count == 5
    dlq = topology.queue(queue.dlq_logical_id)
    assert dlq.dlq_logical_id is None
    assert dlq.logical_id not in {f.queue_logical_id for f in topology.functions}, "nothing consumes a DLQ"
    # Lambda's guidance for SQS sources: at least 6x the function timeout, plus the batching window
    assert queue.visibility_timeout >= 6 * fn.timeout + fn.maximum_batching_window


@pytest.mark.parametrize("logical_id", STEPS)
def test_function_uses_the_core_layer_and_shared_settings(template: dict[str, Any], topology: Topology, logical_id: str) -> None:
    props = template["Resources"][logical_id]["Properties"]
    assert props["Layers"] == [{"Ref": "CoreLayer"}]
    env = topology.function(logical_id).environment
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "mediacanon"
    assert env["MEDIACANON_MEDIA_MAP_PARAMETER"] == "/mediacanon/media-map"
    assert env["MEDIACANON_DB_SECRET_ARN"] == SECRET
    assert env["LOG_LEVEL"] == "INFO"
    assert env["POWERTOOLS_SERVICE_NAME"]
    assert template["Globals"]["Function"]["Tracing"] == "Active"


@pytest.mark.parametrize(("sdk", "disabled"), [("false", "true"), ("true", "false")])
def test_x_ray_sdk_subsegments_are_a_choice_active_tracing_is_not(template: dict[str, Any], sdk: str, disabled: str) -> None:
    resolver = Resolver(template, {**PARAMETERS, "XRaySdkSubsegments": sdk})
    globals_ = resolver.resolve(template["Globals"]["Function"])
    backfill = template["Resources"]["BackfillFunction"]["Properties"]
    assert globals_["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == disabled
    assert resolver.resolve(backfill["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"]) == disabled
    assert (globals_["Tracing"], backfill["TracingConfig"]) == ("Active", {"Mode": "Active"})


def test_core_layer_is_built_for_the_function_runtime(template: dict[str, Any]) -> None:
    layer = template["Resources"]["CoreLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/core"
    # built by layers/core/Makefile (the product only, tests/unit/test_layer.py), for the functions' runtime
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    build = (ROOT / "layers/core/Makefile").read_text(encoding="utf-8")
    assert "build-CoreLayer:" in build and "--python-version 3.13" in build and "aarch64" in build
    assert (ROOT / "layers/core/requirements.txt").is_file()


@pytest.mark.parametrize(("subnets", "expected"), [("", None), ("subnet-1,subnet-2", ["subnet-1", "subnet-2"])])
def test_vpc_config_only_when_subnets_are_given(template: dict[str, Any], subnets: str, expected: list[str] | None) -> None:
    resolver = Resolver(template, {**PARAMETERS, "VpcSubnetIds": subnets, "VpcSecurityGroupIds": "sg-1"})
    globals_ = resolver.resolve(template["Globals"]["Function"])
    assert globals_.get("VpcConfig", {}).get("SubnetIds") == expected


# -- routing: bucket -> EventBridge rule -> queue -> function ----------------------------------------------


def _s3_event(detail_type: str, bucket: str) -> dict[str, Any]:
    return {"source": "aws.s3", "detail-type": detail_type, "detail": {"bucket": {"name": bucket}, "object": {"key": "k"}}}


@pytest.mark.parametrize(
    ("logical_id", "routed", "not_routed"),
    [
        ("NormalizeFunction", [("Object Created", PRIMARY)], [("Object Deleted", PRIMARY), ("Object Created", CDN)]),
        ("ReplicateFunction", [("Object Created", PRIMARY), ("Object Deleted", PRIMARY)], [("Object Created", CDN)]),
        ("LinkFunction", [("Object Created", CDN)], [("Object Created", PRIMARY), ("Object Deleted", CDN)]),
    ],
)
def test_events_reach_the_right_queue(
    topology: Topology, logical_id: str, routed: list[tuple[str, str]], not_routed: list[tuple[str, str]]
) -> None:
    queue = topology.function(logical_id).queue_logical_id

    def queues_for(detail_type: str, bucket: str) -> set[str]:
        event = _s3_event(detail_type, bucket)
        return {q for rule in topology.rules if rule.matches(event) for q in rule.target_queue_ids}

    for detail_type, bucket in routed:
        assert queue in queues_for(detail_type, bucket), (detail_type, bucket)
    for detail_type, bucket in not_routed:
        assert queue not in queues_for(detail_type, bucket), (detail_type, bucket)


def test_each_rule_dead_letters_to_a_queue_of_its_own_that_the_local_stack_has_too(topology: Topology) -> None:
    # the reader sees each target's DeadLetterConfig, and the queue it names is one the local runner creates
    dead_letters = topology.rule_dead_letter_queues()
    assert dead_letters == {r: f"{r}DeadLetterQueue" for r in ("NormalizeRule", "ReplicateRule", "LinkRule")}
    queues = {q.logical_id: q for q in topology.queues}
    consumed = {f.queue_logical_id for f in topology.functions}
    for dlq in dead_letters.values():
        assert dlq in queues and dlq not in consumed and queues[dlq].dlq_logical_id is None
    for rule in topology.rules:
        (target,) = rule.targets
        assert (target.maximum_retry_attempts, target.maximum_event_age) == (185, 86400)


def test_rule_functions_evaluate_as_cloudformation_does(template: dict[str, Any]) -> None:
    # an empty CommaDelimitedList parameter is the list [""]: what the Rules test for "not given"
    resolver = Resolver(template, {**PARAMETERS, "VpcSubnetIds": "subnet-1,subnet-2"})
    assert resolver.resolve({"Fn::EachMemberEquals": [{"Ref": "VpcRouteTableIds"}, ""]}) is True
    assert resolver.resolve({"Fn::EachMemberEquals": [{"Ref": "VpcSubnetIds"}, ""]}) is False
    assert resolver.resolve({"Fn::Contains": [{"Ref": "VpcSubnetIds"}, "subnet-2"]}) is True
    assert resolver.resolve({"Fn::EachMemberIn": [{"Ref": "VpcSubnetIds"}, ["subnet-1", "subnet-2", "subnet-3"]]}) is True
    assert resolver.resolve({"Fn::EachMemberIn": [{"Ref": "VpcSubnetIds"}, ["subnet-1"]]}) is False


def test_each_queue_accepts_only_its_own_rule(template: dict[str, Any], topology: Topology) -> None:
    policies = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    # a rule's dead-letter queue has a policy of its own (tests/unit/test_aws_rules_template.py)
    dead_letters = set(topology.rule_dead_letter_queues().values())
    policies = [p for p in policies if not {q["Ref"] for q in p["Queues"]} <= dead_letters]
    for fn in topology.functions:
        (rule,) = [r for r in topology.rules if fn.queue_logical_id in r.target_queue_ids]
        (policy,) = [p for p in policies if p["Queues"] == [{"Ref": fn.queue_logical_id}]]
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule.logical_id, "Arn"]}}}


# -- IAM: each step may do only what it does ------------------------------------------------------------------


def _statements(template: dict[str, Any], resolver: Resolver, logical_id: str) -> list[dict[str, Any]]:
    props = template["Resources"][logical_id]["Properties"]
    # a role of its own: no SAM policy templates (S3CrudPolicy...) and no SAM-generated role, whose
    # AWSLambdaSQSQueueExecutionRole would let the step consume every queue
    assert "Policies" not in props
    role_id = props["Role"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]["Properties"]
    assert all(resolver.resolve(arn).endswith(("/AWSLambdaBasicExecutionRole", "/AWSLambdaVPCAccessExecutionRole"))
               for arn in resolver.resolve(role["ManagedPolicyArns"]))  # fmt: skip
    statements = [s for p in role["Policies"] for s in resolver.resolve(_queue_arns(p["PolicyDocument"]))["Statement"]]
    assert all(s["Effect"] == "Allow" for s in statements)
    return statements


def _queue_arns(value: Any) -> Any:
    """``!GetAtt Queue.Arn`` as the queue's ARN would read once deployed (the resolver leaves GetAtt to a stack)."""
    if isinstance(value, list):
        return [_queue_arns(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["Fn::GetAtt"] and value["Fn::GetAtt"][1] == "Arn":
            return f"arn:aws:sqs:us-east-1:123456789012:{value['Fn::GetAtt'][0]}"
        return {k: _queue_arns(v) for k, v in value.items()}
    return value


def _as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    return any(
        any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(s["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"]))
        for s in statements
    )


def _obj(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}/icons/nytimes.png"


WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging", "s3:PutObjectAcl")

GRANTS = {
    "NormalizeFunction": {
        "allowed": [
            ("s3:GetObject", _obj(PRIMARY)),
            ("s3:PutObject", _obj(PRIMARY)),
            ("s3:ListBucket", f"arn:aws:s3:::{PRIMARY}"),
        ],
        "denied": [*((w, _obj(CDN)) for w in WRITES), ("s3:DeleteObject", _obj(PRIMARY))],
    },
    "ReplicateFunction": {
        "allowed": [("s3:GetObject", _obj(PRIMARY)), ("s3:PutObject", _obj(CDN)), ("s3:DeleteObject", _obj(CDN))],
        "denied": [("s3:DeleteObject", _obj(PRIMARY)), ("s3:PutObject", _obj(PRIMARY))],
    },
    "LinkFunction": {
        "allowed": [("s3:GetObject", _obj(CDN)), ("s3:GetObject", _obj(PRIMARY)), ("s3:DeleteObject", _obj(PRIMARY))],
        "denied": [*((w, _obj(CDN)) for w in WRITES), ("s3:PutObject", _obj(PRIMARY))],
    },
}


@pytest.mark.parametrize("logical_id", STEPS)
def test_iam_is_scoped_to_the_step(template: dict[str, Any], resolver: Resolver, topology: Topology, logical_id: str) -> None:
    statements = _statements(template, resolver, logical_id)
    for action, resource in GRANTS[logical_id]["allowed"]:
        assert _allows(statements, action, resource), f"{logical_id} needs {action} on {resource}"
    for action, resource in GRANTS[logical_id]["denied"]:
        assert not _allows(statements, action, resource), f"{logical_id} must not {action} on {resource}"
    assert _allows(statements, "secretsmanager:GetSecretValue", SECRET)
    assert _allows(statements, "ssm:GetParameter", MEDIA_MAP_ARN)
    queue = topology.function(logical_id).queue_logical_id
    (consume,) = [s for s in statements if any(a.startswith("sqs:") for a in _as_list(s["Action"]))]
    assert consume["Resource"] == f"arn:aws:sqs:us-east-1:123456789012:{queue}", "its own queue, no other"
    for s in statements:
        if s.get("Sid") == "XRay":  # X-Ray takes no resource-level permissions
            assert all(a.startswith("xray:Put") for a in _as_list(s["Action"]))
            continue
        assert "*" not in _as_list(s["Resource"]) and "*" not in _as_list(s["Action"])
        assert not any(a.lower() == "s3:*" for a in _as_list(s["Action"]))


@pytest.mark.parametrize("logical_id", STEPS)
def test_no_step_writes_a_read_only_source(template: dict[str, Any], resolver: Resolver, logical_id: str) -> None:
    statements = _statements(template, resolver, logical_id)
    for action in (*WRITES, "s3:GetObject"):
        assert not _allows(statements, action, _obj(LEGACY))


def test_fallback_policy_is_read_only(template: dict[str, Any], resolver: Resolver) -> None:
    policy = template["Resources"]["FallbackReadPolicy"]
    assert resolver.resource_enabled(policy)
    statements = resolver.resolve(policy["Properties"]["PolicyDocument"])["Statement"]
    assert _allows(statements, "s3:GetObject", _obj(LEGACY))
    for action in WRITES:
        assert not _allows(statements, action, _obj(LEGACY))
    assert all(a.split(":")[1].startswith(("Get", "List")) for s in statements for a in _as_list(s["Action"]))
    several = Resolver(template, {**PARAMETERS, "FallbackBucketNames": "old-a,old-b"})
    resources = several.resolve(policy["Properties"]["PolicyDocument"])["Statement"][0]["Resource"]
    assert resources == ["arn:aws:s3:::old-a/*", "arn:aws:s3:::old-b/*"]
    assert not Resolver(template, {**PARAMETERS, "FallbackBucketNames": ""}).resource_enabled(policy)


# -- buckets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("logical_id", "name"), [("PrimaryBucket", PRIMARY), ("CdnBucket", CDN)])
def test_bucket_is_private_versioned_tls_only_and_on_eventbridge(
    template: dict[str, Any], topology: Topology, logical_id: str, name: str
) -> None:
    bucket = topology.bucket(logical_id)
    assert (bucket.name, bucket.eventbridge, bucket.created) == (name, True, True)
    resource = template["Resources"][logical_id]
    props = resource["Properties"]
    assert resource["DeletionPolicy"] == "Retain"
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}

    (policy,) = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": logical_id}
    ]
    assert policy.get("Condition") == resource.get("Condition"), "the policy exists exactly when the bucket does"
    # an Fn::If statement (the distribution's read access) has no Effect until resolved: test_cloudfront_* covers it
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s.get("Effect") == "Deny"]
    assert deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"Fn::GetAtt": [logical_id, "Arn"]} in deny["Resource"]
    assert {"Fn::Sub": f"${{{logical_id}.Arn}}/*"} in deny["Resource"]


@pytest.mark.parametrize(("create", "primary", "cdn"), [("true", True, True), ("cdn-only", False, True), ("false", False, False)])
def test_existing_buckets_can_be_used(create: str, primary: bool, cdn: bool) -> None:
    topology = load_topology(TEMPLATE, {**PARAMETERS, "CreateBuckets": create})
    assert (topology.bucket("PrimaryBucket").created, topology.bucket("CdnBucket").created) == (primary, cdn)
    # routing is by name, so it is the same whether or not the stack owns the bucket
    assert topology.rule("NormalizeRule").event_pattern["detail"]["bucket"]["name"] == [PRIMARY]
    assert topology.rule("LinkRule").event_pattern["detail"]["bucket"]["name"] == [CDN]


# -- the backfill (issue 4) keeps its ASL in its own file -----------------------------------------------------


def test_no_inline_state_machine_definition(template: dict[str, Any]) -> None:
    machines = {
        k: r
        for k, r in template["Resources"].items()
        if r["Type"] in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
    }
    for logical_id, resource in machines.items():
        props = resource["Properties"]
        assert not {"Definition", "DefinitionString"} & set(props), logical_id
        uri = props.get("DefinitionUri") or props.get("DefinitionS3Location")
        assert isinstance(uri, str) and uri.startswith("statemachines/") and uri.endswith(".asl.json"), logical_id
        assert (ROOT / uri).is_file()
    assert "StartAt" not in TEMPLATE.read_text(encoding="utf-8")


# -- the reader itself ----------------------------------------------------------------------------------------


def test_short_tags_load_as_their_long_forms(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n"
        "  X:\n"
        "    Type: T\n"
        "    Properties:\n"
        "      A: !Ref P\n"
        "      B: !GetAtt Q.Arn\n"
        "      C: !Sub '${P}-x'\n"
        "      D: !If [Cond, !Join ['', [a, b]], !Ref AWS::NoValue]\n"
        "      E: !Select [1, !Split [',', 'a,b']]\n"
        "      F: !FindInMap [M, k, v]\n"
        "      G: !Not [!Equals [!Ref P, '']]\n",
        encoding="utf-8",
    )
    props = load_template(path)["Resources"]["X"]["Properties"]
    assert props == {
        "A": {"Ref": "P"},
        "B": {"Fn::GetAtt": ["Q", "Arn"]},
        "C": {"Fn::Sub": "${P}-x"},
        "D": {"Fn::If": ["Cond", {"Fn::Join": ["", ["a", "b"]]}, {"Ref": "AWS::NoValue"}]},
        "E": {"Fn::Select": [1, {"Fn::Split": [",", "a,b"]}]},
        "F": {"Fn::FindInMap": ["M", "k", "v"]},
        "G": {"Fn::Not": [{"Fn::Equals": [{"Ref": "P"}, ""]}]},
    }


def test_a_required_parameter_must_be_given() -> None:
    with pytest.raises(TopologyError, match="DatabaseSecretArn"):
        load_topology(TEMPLATE, {"PrimaryBucketName": PRIMARY, "CdnBucketName": CDN})


def test_an_undeclared_parameter_is_refused() -> None:
    with pytest.raises(TopologyError, match="PrimaryBucket"):
        load_topology(TEMPLATE, {**PARAMETERS, "PrimaryBucket": PRIMARY})


# -- optional production resources: conditional, and invisible to the local topology ------------------------


def test_the_production_parameter_set_still_reads_as_the_live_path() -> None:
    production = {
        **PARAMETERS,
        "VpcSubnetIds": "subnet-1,subnet-2",
        "VpcSecurityGroupIds": "sg-1",
        "VpcId": "vpc-1",
        "VpcRouteTableIds": "rtb-1",
        "DatabaseProxyTarget": "archive-db",
        "CreateDistribution": "true",
        "AlarmEmail": "ops@example.com",
    }
    topology = load_topology(TEMPLATE, production)
    assert {f.logical_id for f in topology.functions} == set(STEPS)
    replicate = topology.function("ReplicateFunction").environment
    # only a deployed stack knows the distribution's id and the proxy's endpoint: left out, never guessed
    assert "MEDIACANON_CDN_DISTRIBUTION_ID" not in replicate and "MEDIACANON_DB_HOST" not in replicate
    assert replicate["MEDIACANON_DB_SECRET_ARN"] == SECRET


def test_local_defaults_create_no_optional_resource(template: dict[str, Any], resolver: Resolver) -> None:
    optional = {
        "AWS::CloudFront::Distribution",
        "AWS::CloudFront::OriginAccessControl",
        "AWS::EC2::VPCEndpoint",
        "AWS::RDS::DBProxy",
        "AWS::RDS::DBProxyTargetGroup",
        "AWS::SNS::Topic",
        "AWS::SNS::Subscription",
    }
    found = {k: r for k, r in template["Resources"].items() if r["Type"] in optional}
    assert {r["Type"] for r in found.values()} == optional
    assert not [k for k, r in found.items() if resolver.resource_enabled(r)], "off unless its parameters are given"


def _rules_broken(template: dict[str, Any], parameters: dict[str, str]) -> list[str]:
    """The template's Rules evaluated as CloudFormation does before a deploy: the names whose assertion fails."""
    resolver = Resolver(template, {**PARAMETERS, **parameters})
    return [
        name
        for name, rule in template["Rules"].items()
        if resolver.resolve(rule.get("RuleCondition", True))
        and not all(resolver.resolve(a["Assert"]) for a in rule["Assertions"])
    ]


@pytest.mark.parametrize(
    ("parameters", "broken"),
    [
        ({}, []),
        ({"VpcSubnetIds": "subnet-1", "VpcId": "vpc-1", "VpcRouteTableIds": "rtb-1", "DatabaseProxyTarget": "db"}, []),
        ({"DatabaseProxyTarget": "db"}, ["DatabaseProxyNeedsTheVpc"]),
        ({"VpcRouteTableIds": "rtb-1", "VpcSubnetIds": "subnet-1"}, ["S3GatewayEndpointNeedsTheVpc"]),
        ({"VpcRouteTableIds": "rtb-1", "VpcId": "vpc-1"}, ["S3GatewayEndpointNeedsTheVpc"]),
    ],
)
def test_half_given_network_options_fail_the_deploy(
    template: dict[str, Any], parameters: dict[str, str], broken: list[str]
) -> None:
    assert _rules_broken(template, parameters) == broken
