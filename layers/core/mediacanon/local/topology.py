"""The live-path topology read from ``template.yaml`` itself, so local runs and tests cannot drift from the deploy.

A pure reader: no boto3, no network. It loads the template (CloudFormation short tags included), resolves the
intrinsics that depend only on parameters and conditions (``Ref`` to a parameter, ``Fn::Sub``, ``Fn::If``,
``Fn::Join``...), and returns the buckets, queues, EventBridge rules and functions the local runner recreates
on moto. What only a deployed stack knows (``Fn::GetAtt``, ARNs of created resources) is read as a logical
id where the wiring needs it, and left unresolved otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

# the template loading and the Resolver live in intrinsics, the SAM transform in expansion; their names stay
# importable from here, where the local runner and the tests have always found them
from mediacanon.local.expansion import expand
from mediacanon.local.intrinsics import (
    _DROP,
    PSEUDO_PARAMETERS,
    Resolver,
    TemplateLoader,
    TopologyError,
    Unresolved,
    load_template,
)

__all__ = [
    "PSEUDO_PARAMETERS",
    "Bucket",
    "Function",
    "Queue",
    "Resolver",
    "Rule",
    "Target",
    "TemplateLoader",
    "Topology",
    "TopologyError",
    "Unresolved",
    "expand",
    "load_template",
    "load_topology",
]


# -- the topology -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    logical_id: str
    name: str
    eventbridge: bool  # NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled
    created: bool  # False when the stack uses an existing bucket of that name (CreateBuckets)


@dataclass(frozen=True)
class Queue:
    logical_id: str
    visibility_timeout: int
    dlq_logical_id: str | None
    max_receive_count: int | None


@dataclass(frozen=True)
class Target:
    """One queue target of a rule, with where EventBridge puts what it cannot deliver (the target's DeadLetterConfig)."""

    queue_logical_id: str
    dead_letter_queue_logical_id: str | None
    maximum_retry_attempts: int | None  # RetryPolicy; None: EventBridge's default (185)
    maximum_event_age: int | None  # seconds; None: EventBridge's default (86400)


@dataclass(frozen=True)
class Rule:
    logical_id: str
    event_pattern: dict[str, Any]  # bucket names resolved
    target_queue_ids: tuple[str, ...]
    targets: tuple[Target, ...] = ()

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether EventBridge would route ``event`` to this rule's targets (exact values, ``prefix``,
        ``anything-but`` and ``exists``; other content filters raise rather than guess)."""
        return _pattern_matches(self.event_pattern, event)


def _pattern_matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    for field, expected in pattern.items():
        present = isinstance(event, Mapping) and field in event
        actual = event.get(field) if present else None
        if isinstance(expected, Mapping):
            if not (present and isinstance(actual, Mapping) and _pattern_matches(expected, actual)):
                return False
        elif not any(_value_matches(option, present, actual) for option in expected):
            return False
    return True


def _value_matches(option: Any, present: bool, actual: Any) -> bool:
    if not isinstance(option, Mapping):
        return present and actual == option
    (operator, arg), *rest = option.items()
    if rest:
        raise TopologyError(f"content filter with several operators is not supported: {option!r}")
    match operator:
        case "exists":
            return present is bool(arg)
        case "prefix":
            return present and isinstance(actual, str) and actual.startswith(str(arg))
        case "anything-but":
            excluded = arg if isinstance(arg, list) else [arg]
            return present and actual not in excluded
        case _:
            raise TopologyError(f"content filter {operator!r} is not supported locally")


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_uri: str  # "functions/normalize/", relative to the template's directory
    handler_path: str  # "functions/normalize/app.py"
    handler_name: str  # "lambda_handler"
    runtime: str  # "python3.13"
    architectures: tuple[str, ...]  # ("arm64",)
    queue_logical_id: str
    batch_size: int
    maximum_batching_window: int  # seconds
    report_batch_item_failures: bool
    maximum_concurrency: int | None
    timeout: int  # seconds
    environment: dict[str, str]


@dataclass(frozen=True)
class Topology:
    root: Path  # the template's directory: code_uri and handler_path are relative to it
    buckets: tuple[Bucket, ...]
    queues: tuple[Queue, ...]
    rules: tuple[Rule, ...]
    functions: tuple[Function, ...]

    def bucket(self, logical_id: str) -> Bucket:
        return _by_id(self.buckets, logical_id)

    def queue(self, logical_id: str) -> Queue:
        return _by_id(self.queues, logical_id)

    def rule(self, logical_id: str) -> Rule:
        return _by_id(self.rules, logical_id)

    def function(self, logical_id: str) -> Function:
        return _by_id(self.functions, logical_id)

    def rule_dead_letter_queues(self) -> dict[str, str]:
        """Rule logical id -> the queue EventBridge dead-letters that rule's undeliverable events to."""
        return {
            r.logical_id: t.dead_letter_queue_logical_id for r in self.rules for t in r.targets if t.dead_letter_queue_logical_id
        }


_Item = TypeVar("_Item", Bucket, Queue, Rule, Function)


def _by_id(items: tuple[_Item, ...], logical_id: str) -> _Item:
    for item in items:
        if item.logical_id == logical_id:
            return item
    raise KeyError(logical_id)


DEFAULT_FUNCTION_TIMEOUT = 3  # Lambda's own default when neither the function nor Globals set one
SQS_DEFAULT_VISIBILITY_TIMEOUT = 30
SQS_DEFAULT_BATCH_SIZE = 10


def load_topology(template_path: str | Path, parameters: Mapping[str, str]) -> Topology:
    """Buckets, queues, rules and functions of the live path, as the deployed stack would have them."""
    path = Path(template_path)
    template = load_template(path)
    resolver = Resolver(template, parameters)
    resources: dict[str, Any] = template["Resources"]
    buckets, queues, rules, functions = [], [], [], []
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        props: dict[str, Any] = resource.get("Properties") or {}
        if kind == "AWS::S3::Bucket":
            buckets.append(_bucket(resolver, logical_id, resource, props))
        elif not resolver.resource_enabled(resource):
            continue
        elif kind == "AWS::SQS::Queue":
            queues.append(_queue(resolver, logical_id, props))
        elif kind == "AWS::Events::Rule":
            rules.append(_rule(resolver, logical_id, props))
        elif kind == "AWS::Serverless::Function":
            functions.append(_function(resolver, template, logical_id, props))
    return Topology(path.resolve().parent, tuple(buckets), tuple(queues), tuple(rules), tuple(functions))


def _bucket(resolver: Resolver, logical_id: str, resource: Mapping[str, Any], props: Mapping[str, Any]) -> Bucket:
    if "BucketName" not in props:
        raise TopologyError(f"{logical_id}: a bucket needs a BucketName (the local runner creates it by name)")
    notification = resolver.resolve(props.get("NotificationConfiguration") or {})
    eventbridge = notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled", False)
    return Bucket(
        logical_id, resolver.text(props["BucketName"]), eventbridge in (True, "true", "True"), resolver.resource_enabled(resource)
    )


def _queue(resolver: Resolver, logical_id: str, props: Mapping[str, Any]) -> Queue:
    redrive = props.get("RedrivePolicy")
    dlq_id, max_receive = None, None
    if redrive is not None:
        dlq_id = _logical_id_of_arn(redrive.get("deadLetterTargetArn"), f"{logical_id}.RedrivePolicy")
        max_receive = int(resolver.text(redrive["maxReceiveCount"]))
    visibility = int(resolver.text(props.get("VisibilityTimeout", SQS_DEFAULT_VISIBILITY_TIMEOUT)))
    return Queue(logical_id, visibility, dlq_id, max_receive)


def _rule(resolver: Resolver, logical_id: str, props: Mapping[str, Any]) -> Rule:
    pattern = resolver.resolve(props.get("EventPattern") or {})
    if not isinstance(pattern, dict):
        raise TopologyError(f"{logical_id}: EventPattern must be a mapping")
    targets = tuple(_target(resolver, logical_id, t) for t in props.get("Targets") or [])
    return Rule(logical_id, pattern, tuple(t.queue_logical_id for t in targets), targets)


def _target(resolver: Resolver, rule_id: str, target: Mapping[str, Any]) -> Target:
    where = f"{rule_id}.Targets"
    dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
    retry: Mapping[str, Any] = resolver.resolve(target.get("RetryPolicy") or {})
    attempts, age = retry.get("MaximumRetryAttempts"), retry.get("MaximumEventAgeInSeconds")
    return Target(
        queue_logical_id=_logical_id_of_arn(target.get("Arn"), where),
        dead_letter_queue_logical_id=None
        if dead_letter is None
        else _logical_id_of_arn(dead_letter, f"{where}.DeadLetterConfig"),
        maximum_retry_attempts=None if attempts is None else int(attempts),
        maximum_event_age=None if age is None else int(age),
    )


def _function(resolver: Resolver, template: Mapping[str, Any], logical_id: str, props: Mapping[str, Any]) -> Function:
    defaults: Mapping[str, Any] = (template.get("Globals") or {}).get("Function") or {}
    code_uri = resolver.text(props.get("CodeUri", defaults.get("CodeUri", ".")))
    handler = resolver.text(props.get("Handler", defaults.get("Handler", "")))
    module, _, handler_name = handler.rpartition(".")
    if not module or not handler_name:
        raise TopologyError(f"{logical_id}: Handler {handler!r} is not 'module.function'")
    handler_path = str(PurePosixPath(code_uri) / (module.replace(".", "/") + ".py"))

    sqs = [e["Properties"] for e in (props.get("Events") or {}).values() if e.get("Type") == "SQS"]
    if len(sqs) != 1:
        raise TopologyError(f"{logical_id}: expected exactly one SQS event source, found {len(sqs)}")
    source: Mapping[str, Any] = sqs[0]
    scaling = resolver.resolve(source.get("ScalingConfig") or {})
    concurrency = scaling.get("MaximumConcurrency")

    env: dict[str, str] = {}
    for layer in (defaults, props):
        for name, raw in ((layer.get("Environment") or {}).get("Variables") or {}).items():
            try:
                value = resolver.resolve(raw)
            except Unresolved:  # a created resource's id (the distribution, the proxy endpoint): not known locally
                continue
            if value is not _DROP:
                env[name] = str(value)

    return Function(
        logical_id=logical_id,
        code_uri=code_uri,
        handler_path=handler_path,
        handler_name=handler_name,
        runtime=resolver.text(props.get("Runtime", defaults.get("Runtime", ""))),
        architectures=tuple(resolver.resolve(props.get("Architectures", defaults.get("Architectures", ["x86_64"])))),
        queue_logical_id=_logical_id_of_arn(source.get("Queue"), f"{logical_id}.Events"),
        batch_size=int(resolver.text(source.get("BatchSize", SQS_DEFAULT_BATCH_SIZE))),
        maximum_batching_window=int(resolver.text(source.get("MaximumBatchingWindowInSeconds", 0))),
        report_batch_item_failures="ReportBatchItemFailures" in (source.get("FunctionResponseTypes") or []),
        maximum_concurrency=None if concurrency is None else int(concurrency),
        timeout=int(resolver.text(props.get("Timeout", defaults.get("Timeout", DEFAULT_FUNCTION_TIMEOUT)))),
        environment=env,
    )


def _logical_id_of_arn(value: Any, where: str) -> str:
    """The logical id behind ``!GetAtt Resource.Arn`` (how the template wires queues to rules and functions)."""
    if isinstance(value, dict) and isinstance(value.get("Fn::GetAtt"), list) and value["Fn::GetAtt"][1:] == ["Arn"]:
        return str(value["Fn::GetAtt"][0])
    raise TopologyError(f"{where}: expected !GetAtt <LogicalId>.Arn, got {value!r}")
