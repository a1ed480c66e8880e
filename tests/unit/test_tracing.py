"""The handlers' tracing switch (mediacanon.live.traced): the X-Ray SDK is imported only when tracing is on."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A fresh interpreter each: this test process may have imported the X-Ray SDK already.
PROBE = """
import sys
from mediacanon.live import traced
def handler(event, context):
    return event
wrapped = traced(handler, handler=True)
print(wrapped is handler, "aws_xray_sdk" in sys.modules)
"""


@pytest.mark.parametrize(("disabled", "expected"), [("true", "True False"), ("false", "False True")])
def test_a_disabled_tracer_leaves_the_handler_as_it_is_and_never_imports_the_sdk(disabled: str, expected: str) -> None:
    env = {"POWERTOOLS_TRACE_DISABLED": disabled, "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[-2] == expected, done.stderr
