"""AWS's documentation, not moto, is the spec: each test here encodes one documented AWS rule about template.yaml
that moto (which ignores Rules, queue policies, dead-letter delivery, partitions and KMS) and cfn-lint let through.
Each docstring names and quotes the document it encodes.

The raw template is read with mediacanon.local.topology.load_template; the expanded one (the SAM transform applied, as
`sam deploy` hands it to CloudFormation) with mediacanon.local.topology.expand.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from moto import mock_aws

from mediacanon.adapters.s3 import S3Adapter
from mediacanon.core.errors import MediacanonError
from mediacanon.local.intrinsics import placeholders
from mediacanon.local.topology import Resolver, expand, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
PRIMARY, CDN, LEGACY = "archive-media", "archive-cdn", "archive-legacy"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BASE = {"PrimaryBucketName": PRIMARY, "CdnBucketName": CDN, "DatabaseSecretArn": SECRET, "FallbackBucketNames": LEGACY}
PROXY = {"VpcSubnetIds": "subnet-1", "VpcSecurityGroupIds": "sg-1", "DatabaseProxyTarget": "archive-db"}
STEPS = ("NormalizeFunction", "ReplicateFunction", "LinkFunction")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


_expanded: dict[frozenset[tuple[str, str]], dict[str, Any]] = {}


def expanded(parameters: dict[str, str]) -> dict[str, Any]:
    """One SAM expansion per parameter set for the module (pseudo parameters are applied when resolving)."""
    key = frozenset(parameters.items())
    if key not in _expanded:
        declared = {k: v for k, v in parameters.items() if not k.startswith("AWS::")}
        _expanded[key] = expand(TEMPLATE, declared, artifact_bucket="mediacanon-artifacts", sam_python=SAM_PYTHON)
    return _expanded[key]


def resolved_resources(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every enabled resource with the intrinsics a parameter set decides evaluated; what only a deployed stack knows
    reads as ``ref:<LogicalId>`` / ``getatt:<LogicalId>.<Attribute>`` (as in test_least_privilege)."""
    resolver = Resolver(template, parameters)
    names = set(template["Resources"])
    return {
        logical_id: resolver.resolve(placeholders(resource, names))
        for logical_id, resource in template["Resources"].items()
        if resolver.resource_enabled(resource)
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _role_statements(resources: dict[str, dict[str, Any]], role_id: str) -> list[dict[str, Any]]:
    role = resources[role_id]["Properties"]
    statements = [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for arn in role.get("ManagedPolicyArns", []):
        if arn.startswith("ref:"):
            statements += resources[arn[4:]]["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _as_list(s["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"]))
        for s in statements
    )


# -- 1. CloudFormation Rules -------------------------------------------------------------------------------------

RULE_FUNCTIONS = {
    "Fn::And",
    "Fn::Contains",
    "Fn::EachMemberEquals",
    "Fn::EachMemberIn",
    "Fn::Equals",
    "Fn::If",
    "Fn::Not",
    "Fn::Or",
    "Fn::RefAll",
    "Fn::ValueOf",
    "Fn::ValueOfAll",
    "Ref",
}


def _functions_in(value: Any, where: str) -> list[tuple[str, str, Any]]:
    """(where, function name, argument) for every intrinsic function in a rule's condition or assertion."""
    found: list[tuple[str, str, Any]] = []
    if isinstance(value, list):
        for n, item in enumerate(value):
            found += _functions_in(item, f"{where}[{n}]")
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                found.append((where, key, arg))
            found += _functions_in(arg, f"{where}.{key}")
    return found


def test_rules_use_only_rule_specific_functions(template: dict[str, Any]) -> None:
    """AWS CloudFormation User Guide, "Rules" (rules-section-structure), "Rule-specific intrinsic functions":
    "To define a rule condition and assertions, use rule-specific intrinsic functions, which are functions that can
    only be used in the Rules section of a template. [...] You can use the following rule-specific intrinsic functions
    to define rule conditions and assertions: Fn::And, Fn::Contains, Fn::EachMemberEquals, Fn::EachMemberIn,
    Fn::Equals, Fn::If, Fn::Not, Fn::Or, Fn::RefAll, Fn::ValueOf, Fn::ValueOfAll".
    And "Rule functions", "Supported functions": "You cannot use another function within the Fn::ValueOf and
    Fn::ValueOfAll functions. However, you can use the following functions within all other rule-specific intrinsic
    functions: Ref; Other rule-specific intrinsic functions".

    cfn-lint accepts Fn::Join here and moto ignores Rules; CloudFormation rejects the template."""
    rules = template.get("Rules") or {}
    assert rules, "the template checks its half-given options with Rules"
    parameters = set(template["Parameters"])
    for name, rule in rules.items():
        trees = [(f"{name}.RuleCondition", rule["RuleCondition"])] if "RuleCondition" in rule else []
        trees += [(f"{name}.Assertions[{n}]", a["Assert"]) for n, a in enumerate(rule["Assertions"])]
        for where, tree in trees:
            for at, function, arg in _functions_in(tree, where):
                assert function in RULE_FUNCTIONS, f"{at}: {function} is not a rule-specific function"
                if function == "Ref":
                    assert arg in parameters, f"{at}: a rule may Ref parameters only, not {arg!r}"
                if function in ("Fn::ValueOf", "Fn::ValueOfAll"):
                    assert not _functions_in(arg, at), f"{at}: no function within {function}"


# -- 6. EventBridge targets: retries and a dead-letter queue ----------------------------------------------------


def test_every_rule_target_retries_then_dead_letters_to_a_queue_eventbridge_may_write(template: dict[str, Any]) -> None:
    """Amazon EventBridge User Guide, "Retrying event delivery" (eb-rule-retry-policy): "By default, EventBridge
    retries sending the event for 24 hours and up to 185 times [...] If an event isn't delivered after all retry
    attempts are exhausted, the event is dropped and EventBridge doesn't continue to process it. To avoid losing
    events after they fail to be delivered to a target, configure a dead-letter queue (DLQ)".
    "Using dead-letter queues" (eb-rule-dlq): "Some events are dropped or sent to a DLQ without any retry attempts.
    For example, for errors that result from missing permissions to a target [...]" and, "Granting permissions to the
    dead-letter queue": "If you specify a DLQ using the API [...] you must manually create a resource-based policy
    that grants the required permissions", the example granting "Principal": {"Service": "events.amazonaws.com"},
    "Action": "sqs:SendMessage" with "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:events:...:rule/MyTestRule"}}.
    "Monitoring Amazon EventBridge" (eb-monitoring): FailedInvocations, "The number of invocations that failed
    permanently", dimension RuleName.

    moto neither retries nor dead-letters nor checks queue policies: only the template can hold this."""
    resources = template["Resources"]
    rules = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert rules
    consumed = {
        e["Properties"]["Queue"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::Serverless::Function"
        for e in (r["Properties"].get("Events") or {}).values()
        if e.get("Type") == "SQS"
    }
    policies = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for rule_id, rule in rules.items():
        for target in rule["Targets"]:
            where = f"{rule_id}/{target['Id']}"
            retry = target.get("RetryPolicy")
            assert retry is not None, f"{where}: no RetryPolicy"
            assert 0 <= int(retry["MaximumRetryAttempts"]) <= 185 and 60 <= int(retry["MaximumEventAgeInSeconds"]) <= 86400
            dlq_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
            assert isinstance(dlq_arn, dict) and list(dlq_arn) == ["Fn::GetAtt"], f"{where}: no DeadLetterConfig"
            dlq, attribute = dlq_arn["Fn::GetAtt"]
            assert attribute == "Arn" and resources[dlq]["Type"] == "AWS::SQS::Queue", where
            assert "FifoQueue" not in resources[dlq].get("Properties", {}), "EventBridge DLQs are standard queues only"
            assert dlq != target["Arn"]["Fn::GetAtt"][0] and dlq not in consumed, f"{where}: nothing consumes the DLQ"

            (policy,) = [p for p in policies if p["Queues"] == [{"Ref": dlq}]]
            assert {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": {"Fn::GetAtt": [dlq, "Arn"]},
                "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}},
            }.items() <= policy["PolicyDocument"]["Statement"][0].items() and len(policy["PolicyDocument"]["Statement"]) == 1

            def alarmed(namespace: str, metric: str, dimension: str, value: Any) -> bool:
                return any(
                    a.get("Namespace") == namespace
                    and a.get("MetricName") == metric
                    and a.get("Dimensions") == [{"Name": dimension, "Value": value}]
                    and a.get("Threshold") == 0
                    and a.get("ComparisonOperator") == "GreaterThanThreshold"
                    for a in alarms
                )

            assert alarmed("AWS/Events", "FailedInvocations", "RuleName", {"Ref": rule_id}), where
            assert alarmed("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", {"Fn::GetAtt": [dlq, "QueueName"]})


# -- 7. loops Lambda does not detect ------------------------------------------------------------------------------


def test_no_alarm_or_widget_waits_for_recursive_invocations_dropped(template: dict[str, Any]) -> None:
    """AWS Lambda Developer Guide, "Use Lambda recursive loop detection to prevent infinite loops"
    (invocation-recursion), "Supported AWS services": "Lambda currently detects recursive loops between your
    functions, Amazon SQS, Amazon S3, and Amazon SNS. [...] When another AWS service such as Amazon DynamoDB forms
    part of the loop, Lambda can't currently detect and stop it." and "To detect recursive loops, Lambda uses AWS
    X-Ray tracing headers. When AWS services that support recursive loop detection send events to Lambda, those
    events are automatically annotated". mediacanon's loop runs S3 -> EventBridge -> SQS -> Lambda: EventBridge is
    not among them, so RecursiveInvocationsDropped stays 0 however long the loop runs, and an alarm on it cannot
    fire. The same page: "we recommend that you configure Amazon CloudWatch alarms to alert you to unusual usage
    patterns. For example, [...] spikes in Lambda function concurrency or invocations." """
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"):
            assert "RecursiveInvocationsDropped" not in str(resource), logical_id


def _loop_alarm(template: dict[str, Any]) -> dict[str, Any]:
    (alarm,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "Metrics" in r["Properties"] and "Invocations" in str(r["Properties"])
    ]
    return cast(dict[str, Any], alarm)


METRIC_MATH_FUNCTIONS = {"ABS", "FILL"}  # the CloudWatch metric math functions the loop alarm may use
_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/(),]))")


def _tokens(expression: str) -> list[tuple[str, str]]:
    out, at = [], 0
    while at < len(expression.rstrip()):
        m = _TOKEN.match(expression, at)
        assert m is not None, f"cannot read {expression!r} at {at}"
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        at = m.end()
    return out


def _evaluate(expression: str, values: dict[str, float | None]) -> float:
    """A small evaluator for the subset of CloudWatch metric math the alarm uses (+ - * /, ABS, FILL, numbers)."""
    tokens = _tokens(expression)
    pos = 0

    def peek() -> str | None:
        return tokens[pos][1] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos][1]
        assert expected is None or token == expected, (expression, token, expected)
        pos += 1
        return token

    def sum_() -> float | None:
        left = product()
        while peek() in ("+", "-"):
            op, right = take(), product()
            left = None if left is None or right is None else (left + right if op == "+" else left - right)
        return left

    def product() -> float | None:
        left = atom()
        while peek() in ("*", "/"):
            op, right = take(), atom()
            left = (
                None
                if left is None or right is None or (op == "/" and right == 0)
                else (left * right if op == "*" else left / right)
            )
        return left

    def atom() -> float | None:
        kind, token = tokens[pos]
        if token == "(":
            take("(")
            value = sum_()
            take(")")
            return value
        if kind == "number":
            take()
            return float(token)
        take()
        if token in METRIC_MATH_FUNCTIONS:
            take("(")
            arg = sum_()
            if token == "FILL":
                take(",")
                fill = float(take())
                take(")")
                return fill if arg is None else arg
            take(")")
            return None if arg is None else abs(arg)
        return values[token]  # an id: a metric (None when it has no datapoint) or an expression

    result = sum_()
    assert pos == len(tokens), f"trailing tokens in {expression!r}"
    assert result is not None, f"{expression!r} has no value for {values}"
    return result


def test_the_loop_alarm_is_well_formed_metric_math(template: dict[str, Any]) -> None:
    """Amazon CloudWatch API Reference, PutMetricAlarm, Metrics: "One item in the Metrics array is the expression
    that the alarm watches. You designate this expression by setting ReturnData to true for this object in the
    array. [...] If you use the Metrics parameter, you cannot include the Namespace, MetricName, Dimensions, Period,
    Unit, Statistic, or ExtendedStatistic parameters of PutMetricAlarm in the same operation." MetricDataQuery: "A
    single PutMetricAlarm call can include up to 20 MetricDataQuery structures in the array. The 20 structures can
    include as many as 10 structures that contain a MetricStat parameter [...] and as many as 10 structures that
    contain the Expression parameter [...] Of those Expression structures, one must have true as the value for
    ReturnData." The CloudWatch User Guide (using-metric-math): an Id "can include numbers, letters, and
    underscore, and must start with a lowercase letter"."""
    alarm = _loop_alarm(template)
    assert not {"Namespace", "MetricName", "Dimensions", "Period", "Unit", "Statistic", "ExtendedStatistic"} & set(alarm)
    queries = alarm["Metrics"]
    stats = [q for q in queries if "MetricStat" in q]
    expressions = [q for q in queries if "Expression" in q]
    assert len(stats) + len(expressions) == len(queries) and len(stats) <= 10 and len(expressions) <= 10
    assert [q["Id"] for q in queries if q.get("ReturnData")] == [expressions[-1]["Id"]], "exactly one result: the last"
    defined: set[str] = set()
    for query in queries:
        assert re.fullmatch(r"[a-z][a-zA-Z0-9_]*", query["Id"]) and query["Id"] not in defined, query["Id"]
        if "MetricStat" in query:
            stat = query["MetricStat"]
            assert {"Namespace", "MetricName", "Dimensions"} <= set(stat["Metric"]) and stat["Stat"] == "Sum"
            assert stat["Period"] == queries[0]["MetricStat"]["Period"] and stat["Period"] % 60 == 0
        else:
            for kind, token in _tokens(query["Expression"]):
                if kind == "name":
                    assert token in METRIC_MATH_FUNCTIONS or token in defined, f"{query['Id']}: {token} is not defined"
        defined.add(query["Id"])
    measured = {(q["MetricStat"]["Metric"]["Namespace"], q["MetricStat"]["Metric"]["MetricName"]) for q in stats}
    assert {("AWS/Lambda", "Invocations"), ("AWS/Events", "MatchedEvents")} <= measured
    functions = {
        q["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
        for q in stats
        if q["MetricStat"]["Metric"]["Namespace"] == "AWS/Lambda"
    }
    assert functions == set(STEPS), "every live function's invocations count"
    assert alarm["Threshold"] == {"Ref": "LoopAlarmInvocationsPerUpload"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["TreatMissingData"] == "notBreaching"


def _loop_ratio(template: dict[str, Any], metrics: Mapping[str, float | None]) -> float:
    """The alarm's watched value for one period, given each MetricStat's Sum by what it measures."""
    alarm = _loop_alarm(template)
    values: dict[str, float | None] = {}
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dimension = metric["Dimensions"][0]["Value"]
            key = f"{metric['MetricName']}:{dimension['Ref'] if isinstance(dimension, dict) else dimension}"
            values[query["Id"]] = metrics[key]
        else:
            values[query["Id"]] = _evaluate(query["Expression"], values)
    (result,) = [values[q["Id"]] for q in alarm["Metrics"] if q.get("ReturnData")]
    assert result is not None
    return result


def test_a_copy_loop_trips_the_loop_alarm_and_busy_uploads_do_not(template: dict[str, Any]) -> None:
    """The loop the recursion page says Lambda "can't currently detect and stop", in numbers, for one 15-minute
    period: an upload costs at most ~12 invocations; a looping key costs one normalize and one replicate
    invocation per hop, every few seconds, and each hop is one of normalize's own copies, not an upload."""
    threshold = float(template["Parameters"]["LoopAlarmInvocationsPerUpload"]["Default"])
    quiet = {k: None for k in ("Invocations:NormalizeFunction", "Invocations:ReplicateFunction", "Invocations:LinkFunction")}
    quiet |= {"MatchedEvents:NormalizeRule": None, "Normalized:normalize": None}
    assert _loop_ratio(template, quiet) == 0, "no traffic, no datapoints: not breaching"
    # 1,000 messy uploads, each copied once, retried by normalize while Django saves rows, in batches of one
    busy = {
        "Invocations:NormalizeFunction": 1000 * 5 + 1000,
        "Invocations:ReplicateFunction": 1000 * 3,
        "Invocations:LinkFunction": 1000,
        "MatchedEvents:NormalizeRule": 2000,
        "Normalized:normalize": 1000,
    }
    assert _loop_ratio(template, busy) <= threshold
    # one key looping (A -> B -> A ...) at a hop every 6 s on an otherwise idle site
    hops = 900 / 6
    loop = {
        "Invocations:NormalizeFunction": hops,
        "Invocations:ReplicateFunction": hops,
        "Invocations:LinkFunction": None,
        "MatchedEvents:NormalizeRule": hops + 1,
        "Normalized:normalize": hops,
    }
    assert _loop_ratio(template, loop) > threshold


# -- 8. partitions and the secret's KMS key -----------------------------------------------------------------------

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")


@pytest.mark.parametrize("partition", PARTITIONS)
def test_fallback_read_policy_arns_are_in_the_stacks_partition(partition: str) -> None:
    """AWS CloudFormation User Guide, "Pseudo parameters reference", AWS::Partition: "Returns the partition that the
    resource is in. For standard AWS Regions, the partition is aws. For resources in other partitions, the partition
    is aws-partitionname. For example, the partition for resources in the China (Beijing and Ningxia) Region is aws-cn
    and the partition for resources in the AWS GovCloud (US-West) region is aws-us-gov." And Fn::Join, "Supported
    functions": "For the Fn::Join delimiter, you cannot use any functions. You must specify a string value." So the
    ARN glue between the fallback names is a literal per partition, chosen by a condition."""
    parameters = {**BASE, "FallbackBucketNames": "old-a,old-b", "AWS::Partition": partition}
    resources = resolved_resources(expanded({k: v for k, v in parameters.items() if k != "AWS::Partition"}), parameters)
    statements = resources["FallbackReadPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s["Resource"] for s in statements}
    assert by_sid["ReadFallbackObjects"] == [f"arn:{partition}:s3:::old-a/*", f"arn:{partition}:s3:::old-b/*"]
    assert by_sid["ListFallbacks"] == [f"arn:{partition}:s3:::old-a", f"arn:{partition}:s3:::old-b"]


@pytest.mark.parametrize("partition", ["aws-cn", "aws-us-gov"])
def test_no_resource_names_the_aws_partition_outside_it(template: dict[str, Any], partition: str) -> None:
    """AWS::Partition (above): in aws-cn and aws-us-gov every ARN begins arn:aws-cn: / arn:aws-us-gov:, so a literal
    "arn:aws:" in a resource is an ARN of another partition there (IAM grants nothing with it). The state machine's
    ASL (statemachines/backfill.asl.json) is tested on its own (tests/unit/test_aws_rules.py) and left out here."""
    everything = {**BASE, **PROXY, "CreateDistribution": "true", "AlarmEmail": "ops@example.com", "AWS::Partition": partition}
    everything["DatabaseSecretArn"] = SECRET.replace("arn:aws:", f"arn:{partition}:")  # a secret of that partition
    everything["DatabaseSecretKmsKeyArn"] = KMS_KEY.replace("arn:aws:", f"arn:{partition}:")
    for logical_id, resource in resolved_resources(template, everything).items():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            continue
        hard_coded = [s for s in _strings(resource) if "arn:aws:" in s]
        assert not hard_coded, f"{logical_id} in {partition}: {hard_coded}"


def test_every_reader_of_the_secret_may_decrypt_it_with_its_kms_key() -> None:
    """AWS Secrets Manager API Reference, GetSecretValue, "Required permissions": "secretsmanager:GetSecretValue. If
    the secret is encrypted using a customer-managed key instead of the AWS managed key aws/secretsmanager, then you
    also need kms:Decrypt permissions for that key." (the managed policy AWSSecretsManagerClientReadOnlyAccess pairs
    kms:Decrypt with "kms:ViaService": "secretsmanager.*.amazonaws.com"). The RDS Proxy reads the secret with its own
    role, so it needs the same grant."""
    with_key = {**BASE, **PROXY, "DatabaseSecretKmsKeyArn": KMS_KEY}
    resources = resolved_resources(expanded(with_key), with_key)
    readers = {
        role_id
        for role_id, r in resources.items()
        if r["Type"] == "AWS::IAM::Role"
        and _allows(_role_statements(resources, role_id), "secretsmanager:GetSecretValue", SECRET)
    }
    assert readers == {
        "NormalizeFunctionRole",
        "ReplicateFunctionRole",
        "LinkFunctionRole",
        "BackfillFunctionRole",
        "DatabaseProxyRole",
    }
    for role_id in readers:
        (decrypt,) = [s for s in _role_statements(resources, role_id) if "kms:Decrypt" in _as_list(s["Action"])]
        assert (decrypt["Effect"], decrypt["Resource"]) == ("Allow", KMS_KEY), role_id
        assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}, role_id
    # without a key (the AWS managed aws/secretsmanager), no role may use KMS at all
    plain = {**BASE, **PROXY}
    resources = resolved_resources(expanded(plain), plain)
    for role_id, r in resources.items():
        if r["Type"] == "AWS::IAM::Role":
            assert not [s for s in _role_statements(resources, role_id) if "kms:" in str(s["Action"])], role_id


MEDIA_KEY = "arn:aws:kms:us-east-1:123456789012:key/abcd1234-12ab-34cd-56ef-1234567890ab"


def test_the_roles_that_copy_sse_kms_media_may_use_its_kms_key_through_s3() -> None:
    """AWS KMS Developer Guide, "How Amazon S3 uses AWS KMS" / Amazon S3 User Guide, "Using server-side encryption with
    AWS KMS keys (SSE-KMS)": to upload (and copy into) an SSE-KMS object the caller needs kms:GenerateDataKey on the
    key, to read (and copy from) one kms:Decrypt. HeadObject, ChecksumMode: "If you enable checksum mode and the object
    is uploaded with a checksum and encrypted with an Key Management Service (KMS) key, you must have permission to use
    the kms:Decrypt action to retrieve the checksum." So with MediaKmsKeyArn: normalize, replicate and the backfill
    (copies) and the two state machines (ItemReader reads, ResultWriter writes under the reports prefix) get both, link
    (HEADs with ChecksumMode, deletes, writes nothing) kms:Decrypt only; every grant through S3 only (kms:ViaService),
    on that key only. Without it: no media KMS grant at all."""
    with_key = {**BASE, "MediaKmsKeyArn": MEDIA_KEY}
    resources = resolved_resources(expanded(with_key), with_key)
    expected = {
        "NormalizeFunctionRole": {"kms:Decrypt", "kms:GenerateDataKey"},
        "ReplicateFunctionRole": {"kms:Decrypt", "kms:GenerateDataKey"},
        "BackfillFunctionRole": {"kms:Decrypt", "kms:GenerateDataKey"},
        "BackfillStateMachineRole": {"kms:Decrypt", "kms:GenerateDataKey"},
        "BackfillObjectsStateMachineRole": {"kms:Decrypt", "kms:GenerateDataKey"},  # its map's ResultWriter
        "LinkFunctionRole": {"kms:Decrypt"},
    }
    granted = {}
    for role_id, r in resources.items():
        if r["Type"] != "AWS::IAM::Role":
            continue
        media = [s for s in _role_statements(resources, role_id) if MEDIA_KEY in _as_list(s.get("Resource"))]
        if not media:
            continue
        for statement in media:
            assert statement["Effect"] == "Allow", role_id
            assert statement["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}, role_id
        granted[role_id] = {a for s in media for a in _as_list(s["Action"])}
    assert granted == expected
    resources = resolved_resources(expanded(BASE), BASE)
    for role_id, r in resources.items():
        if r["Type"] == "AWS::IAM::Role":
            assert not [s for s in _role_statements(resources, role_id) if "kms:" in str(s["Action"])], role_id


# -- 9. large copies -----------------------------------------------------------------------------------------------


def test_every_role_that_copies_in_parts_may_abort_its_multipart_uploads() -> None:
    """Amazon S3 User Guide, "Multipart upload API and permissions" (mpuAndPermissions): "Abort Multipart Upload: You
    must be allowed to perform the s3:AbortMultipartUpload action to abort a multipart upload." Above the transfer
    config's threshold (8 MiB) S3Adapter.copy copies in parts, and s3transfer aborts the upload when a part fails
    (test below): without the permission the abort is refused and the parts stay, billed, in a bucket whose
    lifecycle rule mediacanon may not own. Each role may abort where it writes, and nowhere else."""
    resources = resolved_resources(expanded(BASE), BASE)
    abort = "s3:AbortMultipartUpload"

    def role(function_id: str) -> list[dict[str, Any]]:
        arn = resources[function_id]["Properties"]["Role"]
        return _role_statements(resources, arn.removeprefix("getatt:").removesuffix(".Arn"))

    def obj(bucket: str) -> str:
        return f"arn:aws:s3:::{bucket}/icons/a.png"

    expected = {
        "NormalizeFunction": {PRIMARY},
        "ReplicateFunction": {CDN},
        "BackfillFunction": {PRIMARY, CDN},
        "LinkFunction": set(),
    }
    for function_id, buckets in expected.items():
        statements = role(function_id)
        assert {b for b in (PRIMARY, CDN, LEGACY) if _allows(statements, abort, obj(b))} == buckets, function_id


def test_s3transfer_aborts_a_multipart_copy_whose_part_fails() -> None:
    """Amazon S3 API Reference, AbortMultipartUpload: "This operation aborts a multipart upload. After a multipart
    upload is aborted, no additional parts can be uploaded using that upload ID. The storage consumed by any
    previously uploaded parts will be freed." S3Adapter.copy relies on boto3's managed copy (s3transfer) for objects
    above the multipart threshold: CreateMultipartUploadTask registers abort_multipart_upload as a failure cleanup
    (s3transfer/tasks.py), so the adapter adds no abort of its own. Proven here: a failed UploadPartCopy leaves no
    upload behind, while the same copy with the abort suppressed does (so the check can see a leak).

    (This one reads no template: it proves the behaviour the permission above is for, and held at 8c1cc8c too.)"""
    config = TransferConfig(multipart_threshold=5 * 1024**2, multipart_chunksize=5 * 1024**2, max_concurrency=1)

    def copy_with_a_failing_part(*, suppress_abort: bool) -> list[Any]:
        with mock_aws():
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket="src")
            client.create_bucket(Bucket="dst")
            client.put_object(Bucket="src", Key="big.bin", Body=b"x" * (12 * 1024**2), ContentType="application/octet-stream")

            def fail_second_part(params: dict[str, Any], **_: Any) -> None:
                if params.get("PartNumber") == 2:
                    raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "UploadPartCopy")

            client.meta.events.register("before-parameter-build.s3.UploadPartCopy", fail_second_part)
            if suppress_abort:
                # a before-call handler's answer replaces the request (botocore-stubs type handlers as returning None)
                client.meta.events.register(
                    "before-call.s3.AbortMultipartUpload",
                    lambda **_: ({"status_code": 204}, {}),  # type: ignore[arg-type]
                )
            with pytest.raises(MediacanonError, match="InternalError"):
                S3Adapter(client, transfer_config=config).copy("src", "big.bin", "dst", "canonical.bin")
            assert "Contents" not in client.list_objects_v2(Bucket="dst")
            return list(client.list_multipart_uploads(Bucket="dst").get("Uploads", []))

    assert copy_with_a_failing_part(suppress_abort=False) == []
    assert [u["Key"] for u in copy_with_a_failing_part(suppress_abort=True)] == ["canonical.bin"]


COPYING_STEPS = ("NormalizeFunction", "ReplicateFunction")
LARGE_COPY_BYTES = 25 * 1024**3  # the largest object docs/deploy.md promises the live path copies
MANAGED_COPY_BYTES_PER_SECOND = 100 * 1024**2  # docs/deploy.md's assumption for s3transfer's defaults (10 x 8 MiB parts)


def test_sqs_sources_outlast_six_function_timeouts_and_copies_have_time() -> None:
    """AWS Lambda Developer Guide, "Creating and configuring an Amazon SQS event source mapping"
    (services-sqs-configure): "To allow your function time to process each batch of records, set the source queue's
    visibility timeout to at least six times the configuration timeout on your function. The extra time allows
    Lambda to retry if your function is throttled while processing a previous batch." The batching window is added
    because a batch's first message is received up to MaximumBatchingWindowInSeconds before the function starts.

    And the copying steps' timeout is sized for the largest copy docs/deploy.md promises (60 s is not: a
    multi-gigabyte copy would time out on every receive, then dead-letter)."""
    template = expanded(BASE)
    resources = template["Resources"]
    mappings = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::Lambda::EventSourceMapping"}
    assert {m["FunctionName"]["Ref"] for m in mappings.values()} == set(STEPS)
    for mapping in mappings.values():
        function_id = mapping["FunctionName"]["Ref"]
        queue_id = mapping["EventSourceArn"]["Fn::GetAtt"][0]
        timeout = int(resources[function_id]["Properties"].get("Timeout", 3))
        window = int(mapping.get("MaximumBatchingWindowInSeconds", 0))
        visibility = int(resources[queue_id]["Properties"].get("VisibilityTimeout", 30))
        assert visibility >= 6 * timeout + window, f"{queue_id}: {visibility} s < 6 x {timeout} s + {window} s"
        if function_id in COPYING_STEPS:
            needed = LARGE_COPY_BYTES / MANAGED_COPY_BYTES_PER_SECOND
            assert timeout >= needed, (
                f"{function_id}: {timeout} s cannot copy {LARGE_COPY_BYTES / 1024**3:.0f} GiB ({needed:.0f} s)"
            )
