"""The expanded template (the SAM transform applied, as `sam deploy` would) created as a stack on moto's
CloudFormation: it reaches CREATE_COMPLETE and the resources the live path needs exist, wired as declared.

moto's CloudFormation creates what it models and skips other types with a warning (CloudWatch alarms, queue
and bucket policies, CloudFront, RDS Proxy): those are checked in tests/unit/test_least_privilege.py on the
expanded template itself, and only a real account proves them deployable. The state machine it creates lands
in moto's plain Step Functions backend, which the server's API does not show once the executing backend is
switched on (mediacanon.local.embedded does so): its CREATE_COMPLETE is what is checked here.
"""

from __future__ import annotations

import ast
import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest

from mediacanon.local.topology import expand

pytestmark = [
    pytest.mark.integration,
    pytest.mark.moto_only(reason="moto's CloudFormation is what it checks; LocalStack runs without CloudFormation here"),
]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
STEPS = ("Normalize", "Replicate", "Link")


def _zip_of(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(directory.rglob("*.py")):
            archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def _wait_for_stack(cloudformation: Any, name: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return dict(stack)
        if time.monotonic() > deadline:
            raise AssertionError(f"stack {name} still {stack['StackStatus']} after {timeout:.0f}s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def deployed(moto_endpoint: str) -> dict[str, Any]:
    """One stack for the module's tests (they only read it)."""
    s3_client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    suffix = uuid.uuid4().hex[:8]
    artifacts = f"mediacanon-artifacts-{suffix}"
    s3_client.create_bucket(Bucket=artifacts)
    for logical_id, directory in {
        **{f"{step}Function": ROOT / "functions" / step.lower() for step in STEPS},
        "BackfillFunction": ROOT / "functions" / "backfill",
        "CoreLayer": ROOT / "layers" / "core",
    }.items():
        s3_client.put_object(Bucket=artifacts, Key=f"{logical_id}.zip", Body=_zip_of(directory))
    parameters = {
        "PrimaryBucketName": f"media-{suffix}",
        "CdnBucketName": f"cdn-{suffix}",
        "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf",
        "FallbackBucketNames": f"legacy-{suffix}",
        "AlarmEmail": "ops@example.com",
    }
    started = time.monotonic()
    template = expand(TEMPLATE, parameters, artifact_bucket=artifacts)
    cloudformation = boto3.client("cloudformation", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"mediacanon-{suffix}"
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    stack = _wait_for_stack(cloudformation, name)
    resources = {
        r["LogicalResourceId"]: r
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=name)
        for r in page["StackResourceSummaries"]
    }
    print(f"expanded and created on moto in {time.monotonic() - started:.1f}s")  # the CI budget's number
    return {"stack": stack, "resources": resources, "parameters": parameters, "endpoint": moto_endpoint, "template": template}


def _policy_document(value: Any) -> dict[str, Any]:
    """IAM answers a URL-encoded JSON document; moto, for a role made by CloudFormation, the Python repr of it."""
    if isinstance(value, dict):
        return value
    text = unquote(value)
    try:
        return dict(json.loads(text))
    except json.JSONDecodeError:
        return dict(ast.literal_eval(text))


def _client(deployed: dict[str, Any], service: str) -> Any:
    # boto3-stubs overload client() by each service's Literal name; any service name here
    return boto3.client(service, endpoint_url=deployed["endpoint"], region_name="us-east-1")  # type: ignore[call-overload]


def _physical(deployed: dict[str, Any], logical_id: str) -> str:
    return str(deployed["resources"][logical_id]["PhysicalResourceId"])


def test_the_expanded_template_creates_a_complete_stack(deployed: dict[str, Any]) -> None:
    assert deployed["stack"]["StackStatus"] == "CREATE_COMPLETE", deployed["stack"].get("StackStatusReason")
    expected = {
        "PrimaryBucket",
        "CdnBucket",
        "NormalizeRule",
        "ReplicateRule",
        "LinkRule",
        "BackfillFunction",
        "BackfillFunctionRole",
        "BackfillStateMachine",
        "BackfillStateMachineRole",
        "FallbackReadPolicy",
        "AlarmTopic",
        "Dashboard",
    }
    for step in STEPS:
        expected |= {f"{step}Queue", f"{step}DeadLetterQueue", f"{step}Function", f"{step}FunctionRole", f"{step}FunctionQueue"}
        expected |= {f"{step}RuleDeadLetterQueue"}
    assert expected <= set(deployed["resources"])
    assert all(r["ResourceStatus"] == "CREATE_COMPLETE" for r in deployed["resources"].values())
    outputs = {o["OutputKey"]: o["OutputValue"] for o in deployed["stack"]["Outputs"]}
    assert outputs["PrimaryBucketName"] == deployed["parameters"]["PrimaryBucketName"]


def test_buckets_queues_and_functions_are_wired_as_declared(deployed: dict[str, Any]) -> None:
    s3, sqs, lambda_ = _client(deployed, "s3"), _client(deployed, "sqs"), _client(deployed, "lambda")
    for parameter in ("PrimaryBucketName", "CdnBucketName"):
        bucket = deployed["parameters"][parameter]
        # of the bucket's properties moto's CloudFormation applies the encryption (versioning and the rest: unit tests)
        (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    for step in STEPS:
        queue_url = _physical(deployed, f"{step}Queue")
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=_physical(deployed, f"{step}DeadLetterQueue"), AttributeNames=["QueueArn"])
        assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"] == dlq_arn["Attributes"]["QueueArn"]

        function = lambda_.get_function(FunctionName=_physical(deployed, f"{step}Function"))["Configuration"]
        assert (function["Runtime"], function["Handler"]) == ("python3.13", "app.lambda_handler")  # moto drops Architectures
        assert function["Role"].endswith(_physical(deployed, f"{step}FunctionRole"))
        variables = function["Environment"]["Variables"]
        assert variables["MEDIACANON_DB_SECRET_ARN"] == deployed["parameters"]["DatabaseSecretArn"]
        assert "MEDIACANON_CDN_DISTRIBUTION_ID" not in variables and "MEDIACANON_DB_HOST" not in variables
        (mapping,) = lambda_.list_event_source_mappings(FunctionName=function["FunctionName"])["EventSourceMappings"]
        assert mapping["EventSourceArn"] == attributes["QueueArn"]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_each_rule_target_dead_letters_to_its_rules_queue(deployed: dict[str, Any]) -> None:
    # moto keeps a target's DeadLetterConfig and RetryPolicy (it neither retries nor dead-letters: the unit tests
    # hold the rest); the queue named is the stack's own
    events, sqs = _client(deployed, "events"), _client(deployed, "sqs")
    for step in STEPS:
        (target,) = events.list_targets_by_rule(Rule=_physical(deployed, f"{step}Rule"))["Targets"]
        dlq_url = _physical(deployed, f"{step}RuleDeadLetterQueue")
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        assert target["DeadLetterConfig"] == {"Arn": dlq_arn}
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}


def test_each_function_role_names_only_its_own_queue(deployed: dict[str, Any]) -> None:
    iam, sqs = _client(deployed, "iam"), _client(deployed, "sqs")
    for step in STEPS:
        role = _physical(deployed, f"{step}FunctionRole")
        (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
        document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
        # moto keeps an AWS::NoValue list item as None where CloudFormation drops it
        statements = [s for s in _policy_document(document)["Statement"] if s is not None]
        (consume,) = [s for s in statements if s.get("Sid") == "ConsumeOwnQueue"]
        own_arn = sqs.get_queue_attributes(QueueUrl=_physical(deployed, f"{step}Queue"), AttributeNames=["QueueArn"])
        assert consume["Resource"] == own_arn["Attributes"]["QueueArn"]
        attached = [p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]]
        assert "AWSLambdaSQSQueueExecutionRole" not in attached
