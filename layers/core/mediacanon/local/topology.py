"""The live-path topology read from ``template.yaml`` itself, so local runs and tests cannot drift from the deploy.

A pure reader: no boto3, no network. It loads the template (CloudFormation short tags included), resolves the
intrinsics that depend only on parameters and conditions (``Ref`` to a parameter, ``Fn::Sub``, ``Fn::If``,
``Fn::Join``...), and returns the buckets, queues, EventBridge rules and functions the local runner recreates
on moto. What only a deployed stack knows (``Fn::GetAtt``, ARNs of created resources) is read as a logical
id where the wiring needs it, and left unresolved otherwise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import yaml

# Pseudo parameters as the local default (moto's account); a caller's ``parameters`` override them.
PSEUDO_PARAMETERS: dict[str, str] = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::StackName": "mediacanon",
    "AWS::URLSuffix": "amazonaws.com",
}
_NO_VALUE = "AWS::NoValue"


class TopologyError(ValueError):
    """The template cannot be read as mediacanon's topology (a missing parameter, an unexpected shape)."""


# -- loading: CloudFormation short tags -> the long JSON forms ------------------------------------------------

_SHORT_TAGS = (
    "Ref",
    "Condition",
    "GetAtt",
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Length",
    "ToJsonString",
)


class TemplateLoader(yaml.SafeLoader):
    """A safe YAML loader that reads ``!Ref X`` as ``{"Ref": "X"}`` and ``!Join [...]`` as ``{"Fn::Join": [...]}``."""


def _short_tag_constructor(tag: str) -> Any:
    name = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":  # !GetAtt Queue.Arn is the short form of ["Queue", "Arn"]
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


for _tag in _SHORT_TAGS:
    TemplateLoader.add_constructor(f"!{_tag}", _short_tag_constructor(_tag))


def load_template(template_path: str | Path) -> dict[str, Any]:
    """The template as plain data, short tags turned into their long forms; nothing resolved."""
    with open(template_path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=TemplateLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TopologyError(f"{template_path}: not a CloudFormation template (no Resources)")
    return data


# -- resolving intrinsics -----------------------------------------------------------------------------------


class Unresolved(TopologyError):
    """An intrinsic whose value only a deployed stack knows (``Fn::GetAtt``, a created resource's ARN)."""


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Evaluates intrinsics against parameter values and the template's conditions."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self.template = template
        self.values = _parameter_values(template, parameters)
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definitions = self.template.get("Conditions") or {}
            if name not in definitions:
                raise TopologyError(f"unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(definitions[name]))
        return self._conditions[name]

    def resource_enabled(self, resource: Mapping[str, Any]) -> bool:
        name = resource.get("Condition")
        return True if name is None else self.condition(str(name))

    def resolve(self, value: Any) -> Any:
        """The value with every resolvable intrinsic evaluated; ``AWS::NoValue`` drops the key or item."""
        if isinstance(value, list):
            return [r for r in (self.resolve(item) for item in value) if r is not _DROP]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                return self._intrinsic(key, arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _DROP}

    def text(self, value: Any) -> str:
        resolved = self.resolve(value)
        if not isinstance(resolved, str | int | float) or isinstance(resolved, bool):
            raise TopologyError(f"expected a string, got {resolved!r}")
        return str(resolved)

    def _intrinsic(self, key: str, arg: Any) -> Any:
        evaluate = _INTRINSICS.get(key)
        if evaluate is None:
            raise Unresolved(f"{key} is not evaluated locally")
        return evaluate(self, arg)

    def _if(self, arg: Any) -> Any:
        name, if_true, if_false = arg
        return self.resolve(if_true if self.condition(str(name)) else if_false)

    def _equals(self, arg: Any) -> bool:
        left, right = (self.resolve(a) for a in arg)
        return bool(_scalar(left) == _scalar(right))

    # the rule-specific functions of a template's Rules section (CloudFormation evaluates them before a deploy)
    def _contains(self, arg: Any) -> bool:
        items, value = arg
        return _scalar(self.resolve(value)) in [_scalar(v) for v in self._list(items)]

    def _each_member_equals(self, arg: Any) -> bool:
        items, value = arg
        return all(_scalar(v) == _scalar(self.resolve(value)) for v in self._list(items))

    def _each_member_in(self, arg: Any) -> bool:
        to_check, to_match = arg
        allowed = [_scalar(v) for v in self._list(to_match)]
        return all(_scalar(v) in allowed for v in self._list(to_check))

    def _join(self, arg: Any) -> str:
        delimiter, items = arg
        return self.text(delimiter).join(self.text(item) for item in self._list(items))

    def _split(self, arg: Any) -> list[str]:
        delimiter, source = arg
        return self.text(source).split(self.text(delimiter))

    def _select(self, arg: Any) -> Any:
        index, items = arg
        return self._list(items)[int(self.text(index))]

    def _find_in_map(self, arg: Any) -> Any:
        mapping, top, second = (self.text(a) for a in arg)
        return self.resolve(self.template["Mappings"][mapping][top][second])

    def _get_att(self, arg: Any) -> Any:
        raise Unresolved(f"Fn::GetAtt {arg!r} is only known to a deployed stack")

    def _list(self, value: Any) -> list[Any]:
        resolved = self.resolve(value)
        if not isinstance(resolved, list):
            raise TopologyError(f"expected a list, got {resolved!r}")
        return resolved

    def _ref(self, name: str) -> Any:
        if name == _NO_VALUE:
            return _DROP
        if name in self.values:
            return self.values[name]
        raise Unresolved(f"Ref {name!r} names a resource, only known to a deployed stack")

    def _sub(self, arg: Any) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {k: self.text(v) for k, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} is the escape for a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in local:
                return local[name]
            value = self._ref(name)
            if isinstance(value, list):
                raise TopologyError(f"Fn::Sub variable {name!r} is a list")
            return str(value)

        return _SUB_VARIABLE.sub(substitute, str(template))


# intrinsic function name -> how the Resolver evaluates its argument
_INTRINSICS: dict[str, Callable[[Resolver, Any], Any]] = {
    "Ref": lambda r, arg: r._ref(str(arg)),
    "Condition": lambda r, arg: r.condition(str(arg)),
    "Fn::If": Resolver._if,
    "Fn::Equals": Resolver._equals,
    "Fn::Not": lambda r, arg: not r.resolve(arg[0]),
    "Fn::And": lambda r, arg: all(r.resolve(a) for a in arg),
    "Fn::Or": lambda r, arg: any(r.resolve(a) for a in arg),
    "Fn::Contains": Resolver._contains,
    "Fn::EachMemberEquals": Resolver._each_member_equals,
    "Fn::EachMemberIn": Resolver._each_member_in,
    "Fn::Join": Resolver._join,
    "Fn::Split": Resolver._split,
    "Fn::Select": Resolver._select,
    "Fn::Sub": Resolver._sub,
    "Fn::FindInMap": Resolver._find_in_map,
    "Fn::GetAtt": Resolver._get_att,
}


class _Drop:
    """Marks an ``AWS::NoValue``: the key or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


_DROP: Any = _Drop()


def _scalar(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value


def _parameter_values(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = dict(PSEUDO_PARAMETERS)
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    unknown = sorted(set(given) - set(declared) - set(PSEUDO_PARAMETERS))
    if unknown:
        raise TopologyError(f"parameters not declared in the template: {', '.join(unknown)}")
    missing = []
    for name, spec in declared.items():
        raw = given.get(name, spec.get("Default"))
        if raw is None:
            missing.append(name)
            continue
        raw = str(raw)
        allowed = spec.get("AllowedValues")
        if allowed is not None and raw not in [str(a) for a in allowed]:
            raise TopologyError(f"parameter {name}={raw!r} is not one of {allowed}")
        values[name] = [s.strip() for s in raw.split(",")] if spec.get("Type") == "CommaDelimitedList" else raw
    if missing:
        raise TopologyError(f"parameters without a value or default: {', '.join(missing)}")
    for name in PSEUDO_PARAMETERS:
        if name in given:
            values[name] = given[name]
    return values


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


# -- the template as CloudFormation receives it -----------------------------------------------------------------

# Runs in the SAM CLI's own virtualenv (see sam_expand.py, which must not import mediacanon); -P keeps
# this directory off its sys.path.
_EXPAND = Path(__file__).with_name("sam_expand.py")


def expand(
    template_path: str | Path, parameters: Mapping[str, str], *, artifact_bucket: str, sam_python: str | Path | None = None
) -> dict[str, Any]:
    """The template after the SAM transform: plain CloudFormation, as ``sam deploy`` hands it over.

    Function and layer code are expected as ``s3://<artifact_bucket>/<LogicalId>.zip``. ``sam_python`` is the
    SAM CLI virtualenv's interpreter (default: ``.venv-sam/bin/python`` beside the template).
    """
    path = Path(template_path).resolve()
    python = Path(sam_python) if sam_python is not None else path.parent / ".venv-sam" / "bin" / "python"
    if not python.exists():
        raise TopologyError(f"{python}: no SAM CLI virtualenv to expand the template with (run `make .venv-sam/.installed`)")
    region = str(parameters.get("AWS::Region", PSEUDO_PARAMETERS["AWS::Region"]))
    done = subprocess.run(
        [str(python), "-P", str(_EXPAND), str(path), json.dumps(dict(parameters)), artifact_bucket],
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_DEFAULT_REGION": region},
        check=False,
    )
    if done.returncode != 0:
        raise TopologyError(f"the SAM transform of {path} failed: {done.stderr.strip()[-2000:]}")
    expanded: dict[str, Any] = json.loads(done.stdout)
    return expanded
