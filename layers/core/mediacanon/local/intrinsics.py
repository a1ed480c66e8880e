"""template.yaml as data: loading with CloudFormation's short tags, and the intrinsics a local run can evaluate.

The Resolver evaluates what depends only on parameters and conditions (``Ref`` to a parameter, ``Fn::Sub``,
``Fn::If``, ``Fn::Join``...); what only a deployed stack knows (``Fn::GetAtt``, created resources) raises
Unresolved. No boto3, no network.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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


RESOURCE_ATTRIBUTES = ("Arn", "Id", "DomainName", "QueueName", "Endpoint")


def placeholders(value: Any, resources: set[str]) -> Any:
    """`value` with what only a deployed stack knows (Ref / GetAtt of the template's resources, and ${Resource} inside
    a Sub) as ``ref:<LogicalId>`` / ``getatt:<LogicalId>.<Attribute>``, so a Resolver can evaluate the rest for one
    set of parameters."""
    if isinstance(value, list):
        return [placeholders(v, resources) for v in value]
    if not isinstance(value, dict):
        return value
    if list(value) == ["Ref"] and value["Ref"] in resources:
        return f"ref:{value['Ref']}"
    if list(value) == ["Fn::GetAtt"]:
        target = value["Fn::GetAtt"]
        name, attribute = target if isinstance(target, list) else str(target).split(".", 1)
        return f"getatt:{name}.{attribute}"
    if list(value) == ["Fn::Sub"] and isinstance(value["Fn::Sub"], str):
        text = value["Fn::Sub"]
        for name in resources:
            text = text.replace(f"${{{name}}}", f"ref:{name}")
            for attribute in RESOURCE_ATTRIBUTES:
                text = text.replace(f"${{{name}.{attribute}}}", f"getatt:{name}.{attribute}")
        return {"Fn::Sub": text}
    return {k: placeholders(v, resources) for k, v in value.items()}


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
