"""Reading the expanded template in tests: what only a deployed stack knows becomes a readable placeholder."""

from __future__ import annotations

from typing import Any


def placeholders(value: Any, resources: set[str]) -> Any:
    """`value` with Ref / GetAtt of the template's resources (and ${Resource} inside a Sub) as ``ref:<LogicalId>`` /
    ``getatt:<LogicalId>.<Attribute>``, so the resolver can evaluate the rest for one set of parameters."""
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
        # ${Resource} and ${Resource.Attr} inside a Sub: the same placeholders, so the resolver can finish it
        text = value["Fn::Sub"]
        for name in resources:
            text = text.replace(f"${{{name}}}", f"ref:{name}")
            for attribute in ("Arn", "QueueName", "Endpoint", "DomainName", "Id"):
                text = text.replace(f"${{{name}.{attribute}}}", f"getatt:{name}.{attribute}")
        return {"Fn::Sub": text}
    return {k: placeholders(v, resources) for k, v in value.items()}
