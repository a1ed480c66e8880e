"""The SAM transform of template.yaml, as ``sam deploy`` applies it; run by path by topology.expand.

Runs in the SAM CLI's own virtualenv (.venv-sam): its aws-sam-translator is the one `sam deploy` applies, and
its pins (pydantic ~= 2.13) cannot join the project's, so this script imports nothing from mediacanon. Local
code paths become the S3 locations `sam package` would upload them to, and the state machine's ASL is inlined
(moto's CloudFormation reads DefinitionString only).

Usage: python -P sam_expand.py <template> <parameters as JSON> <artifact bucket>; prints the expanded template.
"""

import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform  # type: ignore[import-not-found, unused-ignore]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-not-found, unused-ignore]


class NoManagedPolicies:  # the template names managed policies by ARN only
    def load(self) -> dict[str, Any]:
        return {}


def main(argv: list[str]) -> None:
    path, parameters, bucket = Path(argv[1]), json.loads(argv[2]), argv[3]
    template = yaml_parse(path.read_text(encoding="utf-8"))
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties") or {}
        kind = resource["Type"]
        if kind == "AWS::Serverless::Function":
            props["CodeUri"] = f"s3://{bucket}/{logical_id}.zip"
        elif kind == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = f"s3://{bucket}/{logical_id}.zip"
        elif kind == "AWS::Lambda::Function" and isinstance(props.get("Code"), str):
            props["Code"] = {"S3Bucket": bucket, "S3Key": f"{logical_id}.zip"}
        elif kind == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = json.loads((path.parent / props.pop("DefinitionUri")).read_text(encoding="utf-8"))
    print(json.dumps(transform(template, parameters, NoManagedPolicies())))


if __name__ == "__main__":
    main(sys.argv)
