"""The stack's Lambda functions run in this process, as Lambda would run them: the handler files imported under
their environment (one warm execution environment per function), SQS records shaped as Lambda's event source
shapes them, a context object, and what a function writes sent where CloudWatch Logs would keep it."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import itertools
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote_plus

from mediacanon import wiring
from mediacanon.live import Observer, StepRunner
from mediacanon.local.provision import LocalRunError, LocalStack
from mediacanon.local.topology import PSEUDO_PARAMETERS, Function

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

DEFAULT_OWNER_WAIT = 3.0  # seconds; < DEFAULT_RETRY_DELAY x (maxReceiveCount - 1), see mediacanon.local.localrun
DEFAULT_MEMORY_MB = 512  # the template's Globals.Function.MemorySize (topology.Function does not carry it)


def s3_body(body: str) -> str:
    """A message body as real S3 → EventBridge would have sent it.

    moto sends ``detail.object.key`` unencoded and spells ``eTag`` where S3 spells ``etag``; real S3 URL-encodes
    the key (a space as ``+``) and the handlers decode it exactly once (Powertools' ``unquote_plus``). Without this,
    ``icons/a+b.png`` would reach the steps as ``icons/a b.png``. The ``eTag`` spelling is also how a moto body is
    told apart from a real-shaped one (``events/*.json``), which is already encoded and passes unchanged.
    moto's constant ``sequencer`` is left alone. Bodies that are not S3 events (poison) pass unchanged.
    """
    try:
        event = json.loads(body)
        obj = event["detail"]["object"]
    except (ValueError, TypeError, KeyError):
        return body
    if event.get("source") != "aws.s3" or not isinstance(obj, dict) or "etag" in obj or "eTag" not in obj:
        return body
    obj["key"] = quote_plus(str(obj["key"]), safe="/")
    obj["etag"] = obj.pop("eTag")
    return json.dumps(event)


def lambda_record(message: MessageTypeDef, *, queue_arn: str, region: str, body: str | None = None) -> dict[str, Any]:
    """One record of the event Lambda's SQS event source hands a function (``body`` replaces the message's)."""
    text = message["Body"] if body is None else body
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": text,
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": base64.b64encode(value["BinaryValue"]).decode() if "BinaryValue" in value else None,
                "stringListValues": list(value.get("StringListValues", [])),
                "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),  # noqa: S324 - SQS's checksum, of the body handed over
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


@dataclass
class LocalLambdaContext:
    """The parts of Lambda's context object that Powertools and the handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = DEFAULT_MEMORY_MB
    timeout: float = 60.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout - (time.monotonic() - self._started)) * 1000))


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_module_ids = itertools.count(1)


class InProcessFunctions:
    """The stack's handlers imported into this process: one warm execution environment per function.

    Handlers read their settings at cold start, and ``mediacanon.wiring.live_steps()`` is cached process-wide, so one
    environment at a time is live: building a new one closes the previous one's database connection.
    """

    def __init__(self, stack: LocalStack, environment: Mapping[str, str]) -> None:
        self.stack = stack
        self.environment = dict(environment)
        _reset_steps()
        self._modules: dict[str, ModuleType] = {}

    def env_for(self, fn: Function) -> dict[str, str]:
        """The template's environment for the function, then the local overrides."""
        return {**fn.environment, **self.environment, "AWS_DEFAULT_REGION": self.stack.region}

    def invoke(self, fn: Function, event: dict[str, Any], log: TextIO | None = None, observe: Observer | None = None) -> Any:
        """Run the function's handler on one event; with `log`, everything it writes goes there (see `_captured`);
        `observe` sees each record's result (a live function's `runner`: mediacanon.live.StepRunner)."""
        with _environment(self.env_for(fn)), _captured(log, f"{self.stack.stack_name}-{fn.logical_id}"):
            module = self._modules.get(fn.logical_id) or self._load(fn)
            runner = getattr(module, "runner", None)
            if isinstance(runner, StepRunner):
                runner.observe = observe
            handler: Callable[[dict[str, Any], LocalLambdaContext], Any] = getattr(module, fn.handler_name)
            account = PSEUDO_PARAMETERS["AWS::AccountId"]
            name = f"{self.stack.stack_name}-{fn.logical_id}"
            context = LocalLambdaContext(
                function_name=name,
                invoked_function_arn=f"arn:aws:lambda:{self.stack.region}:{account}:function:{name}",
                timeout=fn.timeout,
            )
            return handler(event, context)

    def _load(self, fn: Function) -> ModuleType:
        """Import the handler file (its cold start runs here, under the function's environment)."""
        path = self.stack.topology.root / fn.handler_path
        spec = importlib.util.spec_from_file_location(f"_mediacanon_local_{fn.logical_id}_{next(_module_ids)}", path)
        if spec is None or spec.loader is None:
            raise LocalRunError(f"{fn.logical_id}: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self._modules[fn.logical_id] = module
        return module

    def close(self) -> None:
        _reset_steps()
        self._modules.clear()


@contextmanager
def _captured(log: TextIO | None, function_name: str) -> Iterator[None]:
    """A function's output into `log`, as Lambda hands a function's stdout and stderr to CloudWatch Logs: print()
    (Powertools' EMF metrics), the handlers of Powertools' loggers, which hold the stream that was sys.stdout when
    the first one was made (maybe a terminal), and warnings, which Python would print to stderr (Powertools warns
    when a batch published no metric), each as a JSON line. Nothing is silenced: it is written where it belongs."""
    if log is None:
        yield
        return
    handlers = _powertools_handlers()
    saved = [h.setStream(log) for h in handlers]
    caught: list[warnings.WarningMessage] = []
    try:
        with redirect_stdout(log), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield  # a handler that raises (a batch whose every record failed) warns too: written below all the same
    finally:
        for handler, stream in zip(handlers, saved, strict=True):
            handler.setStream(stream)
        for w in caught:
            line = {
                "level": "WARNING",
                "location": f"{w.filename}:{w.lineno}",
                "message": str(w.message),
                "category": w.category.__name__,
                "function_name": function_name,
                "timestamp": time.strftime("%Y-%m-%d %H:%M:%S%z"),
            }
            log.write(json.dumps(line) + "\n")


def _powertools_handlers() -> list[logging.StreamHandler[Any]]:
    """The stream handlers Powertools' Logger installed (it marks the standard logger with `powertools_handler`)."""
    found: list[logging.StreamHandler[Any]] = []
    for logger in list(logging.Logger.manager.loggerDict.values()):
        handler = getattr(logger, "powertools_handler", None)
        if isinstance(handler, logging.StreamHandler) and handler not in found:
            found.append(handler)
    return found


def _reset_steps() -> None:
    """Forget the cached Steps (closing its database connection), so the next cold start reads settings anew."""
    wiring.forget_live_steps()


_functions: InProcessFunctions | None = None


def functions_for(stack: LocalStack, environment: Mapping[str, str]) -> InProcessFunctions:
    """The warm handlers for this stack and environment, reused across runs; a change means a new cold start."""
    global _functions
    if _functions is None or _functions.stack is not stack or _functions.environment != dict(environment):
        if _functions is not None:
            _functions.close()
        _functions = InProcessFunctions(stack, environment)
    return _functions


def shutdown() -> None:
    """Close the warm handlers' resources (their database connection); the next run starts cold."""
    global _functions
    if _functions is not None:
        _functions.close()
        _functions = None


def local_environment(
    config: str | Path, database_url: str, *, endpoint_url: str | None, owner_wait: float = DEFAULT_OWNER_WAIT
) -> dict[str, str]:
    """The settings the handlers read at cold start, pointed at the local stack."""
    env = {
        "MEDIACANON_CONFIG": str(Path(config).resolve()),
        "DATABASE_URL": database_url,
        "MEDIACANON_OWNER_WAIT_SECONDS": str(owner_wait),
        "POWERTOOLS_METRICS_NAMESPACE": "mediacanon",
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
    }
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env
