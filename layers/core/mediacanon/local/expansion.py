"""The template as CloudFormation receives it: the SAM transform, run by sam_expand.py under the SAM CLI's python."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mediacanon.local.intrinsics import PSEUDO_PARAMETERS, TopologyError

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
