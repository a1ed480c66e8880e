"""The live path on AWS, as a model: per-upload latency and cost per million uploads, from the batching settings.

    .venv/bin/python bench/live_model.py               # the grid, the choice; bench/results/live-model.md, RESULTS.json
    .venv/bin/python bench/live_model.py --no-write    # print the choice only
    .venv/bin/python bench/live_model.py --render      # only bench/results/live-model.md, from RESULTS.json

bench/live.py measures the live path on a local runner (one consumer, no batching window, no concurrency). This file
models the same path on AWS: S3 -> EventBridge -> SQS -> Lambda's event-source mapping (ESM) -> the handler, three hops
in a row (PUT -> normalize -> canonical copy -> replicate -> CDN copy -> link), as a discrete-event simulation that is
deterministic for a seed. Per upload, six SQS records (counted from the handler outcomes bench/live.py recorded):

    S3 event            -> records                 the record that carries the upload on
    PUT (primary)       -> normalize N1, replicate R1   N1 copies the messy key to its canonical key
    copy (primary)      -> normalize N2, replicate R2   R2 copies the canonical key to the CDN bucket
    CDN copy (CDN)      -> link L1                      L1 updates the row, deletes the source: the upload is done
    delete (primary)    -> replicate R3

R1, N2 and R3 find nothing to do (the handlers' "skipped" outcomes) but load their queues like the others.

What the model takes in, each from an AWS document (AWS_DOCS, cited beside every constant) or from bench/live.py's
measurement (bench/RESULTS.json "live"):

- EventBridge delivery: S3 -> EventBridge -> SQS, per event. AWS publishes no figure beyond "typically ... in seconds";
  the model adds ASSUMED_DELIVERY_S per hop, flagged as an assumption. It is the same for every configuration, so it
  shifts every row alike and cannot change the choice.
- ESM polling: long polling (a message is taken as soon as it is available; an empty poll waits 20 s), five pollers
  to begin with, up to 300 more a minute while messages wait, never more than MaximumConcurrency batches at once.
  Messages go to the pollers that are not busy in turn (each poller long-polls on its own).
- The batching window: a poller gathers records until the batch is full (BatchSize), the invocation payload would pass
  6 MB, or the window has expired. With a window set, the batch goes when the poll outstanding at the window's end
  returns: "if your SQS queue contains very low traffic, Lambda might wait for up to 20 seconds" (with-sqs.html).
- Queueing: a batch holds its poller (one concurrency slot) while the handler runs its records one after another,
  each record's service time drawn from the per-hop p50/p99 bench/live.py measured at 1 upload/s (a log-normal through
  both). Above MaximumConcurrency / service time records per second a queue grows.
- Cost: SQS requests (EventBridge's SendMessage per record, the ESM's ReceiveMessage, empty long polls included, and
  DeleteMessageBatch), EventBridge events (S3 events on the default bus), Lambda requests and GB-seconds at the
  template's memory sizes (arm64). Free tiers are left out: the marginal cost of a million uploads.

Scenarios are bench/live.py's phases, their lengths as measured (30 uploads at 1/s, 60 at 5/s, 200 at 20/s, a burst of
1,000 at once), each repeated with new draws to SAMPLES uploads; at the steady rates uploads go on for TRAFFIC_AFTER_S
after the counted ones (a live site does not stop at the end of a phase), and those are not counted.

Measured service times are the local runner's per-hop times (moto + PostgreSQL on one machine, the runner's own
polling included), an upper bound on a handler's time on AWS. If RESULTS.json has no 1/s phase, FALLBACK_SERVICE_S is
used and every figure says so ("service_times_source": "fallback").

The choice: over GRID (BatchSize x MaximumBatchingWindowInSeconds per queue), minimize the mean p99 of the three steady
rates (1, 5, 20 uploads/s), subject to the cost bound: no more than COST_BOUND_RATIO x the cheapest uniform grid
point's cost per million uploads (the mean over the same three rates). Mean p99s within LATENCY_TOLERANCE of
the least count as equal (the model's error is larger: the service times are the local runner's), and of those the
cheapest wins. First the same setting on all three queues, then each queue on its own in turn while the others keep
theirs, until nothing changes; the choice is then taken over every configuration evaluated.

Not in the model: a per-invocation overhead (none is measured or documented, so small batches are not penalized),
cold starts, retries (a failed record comes back after the visibility timeout), and the 2-batch idle optimization
Lambda cannot use with MaximumConcurrency set (services-sqs-scaling.html).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TEMPLATE = REPO / "template.yaml"
EVENTS = REPO / "events"
RESULTS_JSON = BENCH / "RESULTS.json"
MODEL_MD = BENCH / "results" / "live-model.md"
QUEUES = ("normalize", "replicate", "link")
FUNCTIONS = {"normalize": "NormalizeFunction", "replicate": "ReplicateFunction", "link": "LinkFunction"}
TEMPLATE_PARAMETERS = {
    "PrimaryBucketName": "archive-media",
    "CdnBucketName": "archive-cdn",
    "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf",
    "FallbackBucketNames": "archive-legacy",
}

sys.path.insert(0, str(BENCH))
from live import maximum_concurrency, percentile  # noqa: E402

# -- AWS documents and the constants taken from them ----------------------------------------------------------------


@dataclass(frozen=True)
class AwsDoc:
    title: str
    url: str
    quote: str


AWS_DOCS: dict[str, AwsDoc] = {
    "with-sqs": AwsDoc(
        "Using Lambda with Amazon SQS (AWS Lambda Developer Guide)",
        "https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html",
        "Before invoking the function, Lambda continues to poll messages from the standard queue until the batch window "
        "expires, the invocation payload size quota is reached, or the configured maximum batch size is reached. If "
        "you're using a batch window and your SQS queue contains very low traffic, Lambda might wait for up to 20 "
        "seconds before invoking your function. This is true even if you set a batch window lower than 20 seconds.",
    ),
    "sqs-queueconfig": AwsDoc(
        "Using Lambda with Amazon SQS: configuring a queue (AWS Lambda Developer Guide)",
        "https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html#events-sqs-queueconfig",
        "We recommend setting your queue's visibility timeout to six times your function timeout, plus the value of "
        "MaximumBatchingWindowInSeconds.",
    ),
    "sqs-configure": AwsDoc(
        "Creating and configuring an Amazon SQS event source mapping (AWS Lambda Developer Guide)",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html",
        "To allow your function time to process each batch of records, set the source queue's visibility timeout to at "
        "least six times the configuration timeout on your function.",
    ),
    "sqs-scaling": AwsDoc(
        "Configuring scaling behavior for SQS event source mappings (AWS Lambda Developer Guide)",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html",
        "For standard queues, Lambda uses long polling to poll a queue until it becomes active. When messages are "
        "available, Lambda starts processing five batches at a time with five concurrent invocations of your function. "
        "If messages are still available, Lambda increases the number of processes that are reading batches by up to "
        "300 more instances per minute. [...] can optimize to as few as 2 concurrent batches [...] However, this "
        "optimization is not available when you enable the maximum concurrency setting.",
    ),
    "scaling-config": AwsDoc(
        "ScalingConfig (AWS Lambda API Reference)",
        "https://docs.aws.amazon.com/lambda/latest/api/API_ScalingConfig.html",
        "MaximumConcurrency: Limits the number of concurrent instances that the Amazon SQS event source can invoke. "
        "Valid Range: Minimum value of 2. Maximum value of 1000.",
    ),
    "sqs-parameters": AwsDoc(
        "Lambda parameters for Amazon SQS event source mappings (AWS Lambda Developer Guide)",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html",
        "BatchSize: default 10. For standard queues, the maximum is 10,000. MaximumBatchingWindowInSeconds: default 0.",
    ),
    "esm-api": AwsDoc(
        "CreateEventSourceMapping (AWS Lambda API Reference)",
        "https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html",
        "BatchSize: Lambda passes all of the records in the batch to the function in a single call, up to the payload "
        "limit for synchronous invocation (6 MB). MaximumBatchingWindowInSeconds: any value from 0 seconds to 300 "
        "seconds [...] when you set BatchSize to a value greater than 10, you must set MaximumBatchingWindowInSeconds "
        "to at least 1.",
    ),
    "sqs-long-polling": AwsDoc(
        "Setting-up long polling in Amazon SQS (Amazon SQS Developer Guide)",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/best-practices-setting-up-long-polling.html",
        "The maximum long polling wait time is 20 seconds. [...] Long polling lets you consume messages from your "
        "Amazon SQS queue as soon as they become available (best-practices-using-appropriate-polling-mode.html).",
    ),
    "sqs-batch": AwsDoc(
        "Amazon SQS batch actions (Amazon SQS Developer Guide)",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api.html",
        "Amazon SQS provides batch actions to help you reduce costs and manipulate up to 10 messages with a single action.",
    ),
    "s3-notifications": AwsDoc(
        "Amazon S3 Event Notifications (Amazon S3 User Guide)",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventNotifications.html",
        "Amazon S3 event notifications are designed to be delivered at least once. Typically, event notifications are "
        "delivered in seconds but can sometimes take a minute or longer.",
    ),
    "sqs-pricing": AwsDoc(
        "Amazon SQS pricing (us-east-1)",
        "https://aws.amazon.com/sqs/pricing/",
        "Standard queue: $0.40 per million requests (first 100 billion requests a month, after the free tier); each "
        "64 KB chunk of a payload is billed as one request.",
    ),
    "lambda-pricing": AwsDoc(
        "AWS Lambda pricing (us-east-1)",
        "https://aws.amazon.com/lambda/pricing/",
        "Requests: $0.20 per 1M requests. Duration, Arm: $0.0000133334 for every GB-second (first 7.5 billion GB-seconds "
        "a month). Duration is rounded up to the nearest 1 ms.",
    ),
    "eventbridge-pricing": AwsDoc(
        "Amazon EventBridge pricing (us-east-1)",
        "https://aws.amazon.com/eventbridge/pricing/",
        'Some AWS services, such as S3, can send data plane events to the event bus after you opt-in ("AWS opt-in data '
        'events") [...] $1.00 per million events. Each 64 KB chunk of a payload is billed as one event.',
    ),
}


@dataclass(frozen=True)
class Constant:
    value: float
    doc: str  # a key of AWS_DOCS
    note: str = ""


# Every number below names its AWS document (AWS_DOCS[doc]); tests/unit/test_live_model.py checks that each does.
CONSTANTS: dict[str, Constant] = {
    # "Lambda starts processing five batches at a time" -- services-sqs-scaling.html
    "ESM_INITIAL_POLLERS": Constant(5, "sqs-scaling"),
    # "up to 300 more instances per minute" -- services-sqs-scaling.html
    "ESM_SCALE_UP_PER_MINUTE": Constant(300, "sqs-scaling"),
    # MaximumConcurrency "Minimum value of 2. Maximum value of 1000." -- API_ScalingConfig.html
    "MAXIMUM_CONCURRENCY_MIN": Constant(2, "scaling-config"),
    # the same range's top -- API_ScalingConfig.html
    "MAXIMUM_CONCURRENCY_MAX": Constant(1000, "scaling-config"),
    # "For standard queues, the maximum is 10,000" -- services-sqs-parameters.html
    "BATCH_SIZE_MAX": Constant(10_000, "sqs-parameters"),
    # "any value from 0 seconds to 300 seconds" -- API_CreateEventSourceMapping.html
    "BATCHING_WINDOW_MAX_S": Constant(300, "esm-api"),
    # "when you set BatchSize to a value greater than 10, you must set MaximumBatchingWindowInSeconds to at least 1"
    # -- API_CreateEventSourceMapping.html
    "BATCH_SIZE_MAX_WITHOUT_WINDOW": Constant(10, "esm-api"),
    # "the payload limit for synchronous invocation (6 MB)" -- API_CreateEventSourceMapping.html
    "INVOKE_PAYLOAD_LIMIT_BYTES": Constant(6 * 1024 * 1024, "esm-api"),
    # "The maximum long polling wait time is 20 seconds" -- best-practices-setting-up-long-polling.html (the ESM
    # long-polls: services-sqs-scaling.html; with a window, "Lambda might wait for up to 20 seconds": with-sqs.html)
    "LONG_POLL_WAIT_S": Constant(20, "sqs-long-polling"),
    # "manipulate up to 10 messages with a single action" (ReceiveMessage, DeleteMessageBatch) -- sqs-batch-api.html
    "SQS_MESSAGES_PER_CALL": Constant(10, "sqs-batch"),
    # "visibility timeout to six times your function timeout, plus the value of MaximumBatchingWindowInSeconds"
    # -- with-sqs.html#events-sqs-queueconfig (services-sqs-configure.html: "at least six times")
    "VISIBILITY_TIMEOUT_FACTOR": Constant(6, "sqs-queueconfig"),
    # "$0.40 per million requests", standard queue, us-east-1 -- aws.amazon.com/sqs/pricing
    "SQS_USD_PER_REQUEST": Constant(0.40 / 1e6, "sqs-pricing"),
    # "each 64 KB chunk of a payload is billed as one request" -- aws.amazon.com/sqs/pricing
    "SQS_BILLING_CHUNK_BYTES": Constant(64 * 1024, "sqs-pricing"),
    # "$0.20 per 1M requests" -- aws.amazon.com/lambda/pricing
    "LAMBDA_USD_PER_REQUEST": Constant(0.20 / 1e6, "lambda-pricing"),
    # "Arm: $0.0000133334 for every GB-second" (the template's functions are arm64) -- aws.amazon.com/lambda/pricing
    "LAMBDA_ARM_USD_PER_GB_S": Constant(0.0000133334, "lambda-pricing"),
    # "Duration is rounded up to the nearest 1 ms" -- aws.amazon.com/lambda/pricing
    "LAMBDA_BILLING_GRANULARITY_S": Constant(0.001, "lambda-pricing"),
    # S3's events on the default bus ("AWS opt-in data events"): "$1.00 per million" -- aws.amazon.com/eventbridge/pricing
    "EVENTBRIDGE_USD_PER_EVENT": Constant(1.00 / 1e6, "eventbridge-pricing"),
    # "Each 64 KB chunk of a payload is billed as one event" -- aws.amazon.com/eventbridge/pricing
    "EVENTBRIDGE_BILLING_CHUNK_BYTES": Constant(64 * 1024, "eventbridge-pricing"),
    # ASSUMPTION, not an AWS figure: S3 says only "Typically, event notifications are delivered in seconds"
    # (EventNotifications.html). One second per hop, the same for every configuration: it cannot change the choice.
    "ASSUMED_DELIVERY_S": Constant(1.0, "s3-notifications", "assumption: AWS gives no figure beyond 'in seconds'"),
}


def const(name: str) -> float:
    return CONSTANTS[name].value


# Not AWS figures: the model's policy and its fallback, stated as such.
LATENCY_TOLERANCE = 0.05  # p99s within 5 % of the least count as equal (below the model's error); then the cheaper wins
COST_BOUND_RATIO = 1.25  # the chosen setting may cost at most 25 % more per million uploads than the cheapest grid point
STEADY_RATES = (1.0, 5.0, 20.0)  # bench/live.py's default phases (uploads/s); the burst is reported, not optimized
GRID_BATCH_SIZES = (1, 5, 10, 20, 50, 100)
GRID_WINDOWS_S = (0, 1, 2, 5, 10, 20)
TRAFFIC_AFTER_S = 60  # steady phases: uploads go on this long after the counted ones (see put_times)
SAMPLES = 1000  # uploads simulated per scenario (phases of the measured length, repeated with new draws)
SEED = 19
FALLBACK_SERVICE_S = {q: (0.25, 0.5) for q in QUEUES}  # (p50, p99) if RESULTS.json has no 1/s phase: flagged
Z99 = 2.3263478740408408  # the standard normal's 99th percentile (log-normal through p50 and p99)


# -- the model's inputs -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Esm:
    """One event-source mapping's batching: BatchSize and MaximumBatchingWindowInSeconds."""

    batch_size: int
    window_s: int

    def validate(self) -> None:
        if not 1 <= self.batch_size <= const("BATCH_SIZE_MAX"):
            raise ValueError(f"BatchSize {self.batch_size} outside 1..{const('BATCH_SIZE_MAX'):.0f}")
        if not 0 <= self.window_s <= const("BATCHING_WINDOW_MAX_S"):
            raise ValueError(f"MaximumBatchingWindowInSeconds {self.window_s} outside 0..300")
        if self.batch_size > const("BATCH_SIZE_MAX_WITHOUT_WINDOW") and self.window_s < 1:
            raise ValueError("BatchSize above 10 needs MaximumBatchingWindowInSeconds >= 1")

    @property
    def label(self) -> str:
        return f"{self.batch_size}/{self.window_s}s"


@dataclass(frozen=True)
class Config:
    esm: Mapping[str, Esm]  # queue -> its mapping's batching
    concurrency: int  # MaximumConcurrency, per queue

    @staticmethod
    def uniform(batch_size: int, window_s: int, concurrency: int) -> Config:
        return Config({q: Esm(batch_size, window_s) for q in QUEUES}, concurrency)

    def with_queue(self, queue: str, esm: Esm) -> Config:
        return Config({**self.esm, queue: esm}, self.concurrency)

    def validate(self) -> None:
        for e in self.esm.values():
            e.validate()
        if not const("MAXIMUM_CONCURRENCY_MIN") <= self.concurrency <= const("MAXIMUM_CONCURRENCY_MAX"):
            raise ValueError(f"MaximumConcurrency {self.concurrency} outside 2..1000")

    @property
    def label(self) -> str:
        labels = {self.esm[q].label for q in QUEUES}
        if len(labels) == 1:
            return f"all {labels.pop()}"
        return ", ".join(f"{q} {self.esm[q].label}" for q in QUEUES)

    def to_json(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, **{q: asdict(self.esm[q]) for q in QUEUES}}


@dataclass(frozen=True)
class ServiceTime:
    """A record's handler time, log-normal through the measured p50 and p99."""

    p50: float
    p99: float

    @property
    def sigma(self) -> float:
        return max(math.log(self.p99 / self.p50), 0.0) / Z99

    @property
    def mean(self) -> float:
        return self.p50 * math.exp(self.sigma**2 / 2)

    def draw(self, z: float) -> float:
        return self.p50 * math.exp(self.sigma * z)


@dataclass(frozen=True)
class Inputs:
    service: Mapping[str, ServiceTime]
    service_source: str  # "measured: RESULTS.json live.phases.<name> (measured_at)" or "fallback"
    memory_mb: Mapping[str, int]
    timeout_s: Mapping[str, int]
    record_bytes: int  # the largest SQS record of events/*.json: the 6 MB payload bound and the billing chunks
    records_per_upload: Mapping[str, int]  # from the measured outcomes
    delivery_s: float = field(default_factory=lambda: const("ASSUMED_DELIVERY_S"))


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float | None  # uploads per second, evenly spaced; None: all at once (the burst)
    uploads: int  # per phase, as bench/live.py ran it


# -- the simulation ------------------------------------------------------------------------------------------------------

# kind -> (queue, the S3 event it came from); what finishing it sends on: kind -> [(kind, ...)] after one delivery
RECORDS = {"N1": "normalize", "R1": "replicate", "N2": "normalize", "R2": "replicate", "L1": "link", "R3": "replicate"}
ON_EVENT = {"put": ("N1", "R1"), "copy": ("N2", "R2"), "cdn": ("L1",), "delete": ("R3",)}
EMITS = {"N1": "copy", "R2": "cdn", "L1": "delete"}  # the S3 event the handler's own write causes
S3_EVENTS_PER_UPLOAD = len(ON_EVENT)


@dataclass
class Poller:
    """One concurrency slot of an ESM: idle (long-polling), gathering a batch, or busy running one."""

    idle_since: float = 0.0
    batch: list[tuple[int, str]] | None = None
    started: float = 0.0  # when the batch began gathering
    token: int = 0  # invalidates stale poll-timeout events
    receives: int = 0
    busy_until: float | None = None


@dataclass
class Counts:
    invocations: int = 0
    records: int = 0
    receives: int = 0
    deletes: int = 0
    gb_s: float = 0.0
    sends: int = 0
    events: int = 0

    def add(self, other: Counts) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


class Simulation:
    """One phase: uploads arrive, records flow through the three queues, each ESM's pollers batch and invoke."""

    def __init__(self, config: Config, inputs: Inputs, put_times: Sequence[float], z: Sequence[Mapping[str, float]]):
        self.config, self.inputs, self.put_times, self.z = config, inputs, put_times, z
        self.heap: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self.seq = 0
        self.waiting: dict[str, deque[tuple[int, str]]] = {q: deque() for q in QUEUES}
        self.pollers: dict[str, list[Poller]] = {q: [] for q in QUEUES}
        self.turn = dict.fromkeys(QUEUES, 0)
        self.done_at: dict[int, float] = {}
        self.counts = Counts()
        self.now = 0.0
        self.payload_cap = max(1, int(const("INVOKE_PAYLOAD_LIMIT_BYTES") // inputs.record_bytes))

    # events
    def push(self, t: float, kind: str, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, args))

    def run(self) -> Simulation:
        for i, t in enumerate(self.put_times):
            self.s3_event(t, i, "put")
        while self.heap:
            self.now, _, kind, args = heapq.heappop(self.heap)
            getattr(self, f"on_{kind}")(*args)
        self.finish()
        return self

    def s3_event(self, t: float, upload: int, event: str) -> None:
        self.counts.events += 1
        for kind in ON_EVENT[event]:
            self.counts.sends += 1  # EventBridge's SendMessage to the rule's queue
            self.push(t + self.inputs.delivery_s, "arrive", upload, kind)

    # the ESM
    def slots(self, queue: str) -> int:
        ramp = const("ESM_INITIAL_POLLERS") + const("ESM_SCALE_UP_PER_MINUTE") / 60 * self.now
        return int(min(self.config.concurrency, ramp))

    def grow(self, queue: str) -> None:
        pollers = self.pollers[queue]
        while len(pollers) < self.slots(queue):
            pollers.append(Poller(idle_since=self.now))
            self.take_waiting(queue, pollers[-1])

    def limit(self, queue: str) -> int:
        return min(self.config.esm[queue].batch_size, self.payload_cap)

    def on_arrive(self, upload: int, kind: str) -> None:
        queue = RECORDS[kind]
        self.grow(queue)
        free = [p for p in self.pollers[queue] if p.busy_until is None]
        if not free:
            self.waiting[queue].append((upload, kind))
            return
        poller = free[self.turn[queue] % len(free)]  # SQS answers one of the outstanding long polls
        self.turn[queue] += 1
        self.receive(queue, poller, [(upload, kind)])

    def receive(self, queue: str, poller: Poller, records: list[tuple[int, str]]) -> None:
        """A poll returned records: start or extend the poller's batch; invoke if it is complete."""
        esm = self.config.esm[queue]
        per_call = int(const("SQS_MESSAGES_PER_CALL"))
        if poller.batch is None:
            poller.receives += self.empty_polls(self.now - poller.idle_since)
            poller.batch, poller.started = [], self.now
        poller.batch.extend(records)
        poller.receives += math.ceil(len(records) / per_call)
        expired = self.now >= poller.started + esm.window_s
        if len(poller.batch) >= self.limit(queue) or esm.window_s == 0 or expired:
            self.invoke(queue, poller)
            return
        poller.token += 1
        self.push(self.now + const("LONG_POLL_WAIT_S"), "poll_timeout", queue, poller, poller.token)

    def on_poll_timeout(self, queue: str, poller: Poller, token: int) -> None:
        if poller.batch is None or token != poller.token:
            return
        poller.receives += 1  # the long poll came back empty
        if self.now >= poller.started + self.config.esm[queue].window_s:
            self.invoke(queue, poller)
        else:
            poller.token += 1
            self.push(self.now + const("LONG_POLL_WAIT_S"), "poll_timeout", queue, poller, poller.token)

    def invoke(self, queue: str, poller: Poller) -> None:
        batch, poller.batch = poller.batch or [], None
        poller.token += 1
        t = self.now
        for upload, kind in batch:
            t += self.inputs.service[queue].draw(self.z[upload][kind])
            self.push(t, "record_done", upload, kind)
        granularity = const("LAMBDA_BILLING_GRANULARITY_S")
        billed = math.ceil((t - self.now) / granularity - 1e-9) * granularity
        self.counts.gb_s += billed * self.inputs.memory_mb[queue] / 1024
        self.counts.invocations += 1
        self.counts.records += len(batch)
        self.counts.deletes += math.ceil(len(batch) / const("SQS_MESSAGES_PER_CALL"))
        poller.busy_until = t
        self.push(t, "poller_free", queue, poller)

    def on_record_done(self, upload: int, kind: str) -> None:
        if kind == "L1":
            self.done_at[upload] = self.now
        if kind in EMITS:
            self.s3_event(self.now, upload, EMITS[kind])

    def on_poller_free(self, queue: str, poller: Poller) -> None:
        poller.busy_until, poller.idle_since = None, self.now
        self.grow(queue)
        self.take_waiting(queue, poller)

    def take_waiting(self, queue: str, poller: Poller) -> None:
        waiting = self.waiting[queue]
        if not waiting or poller.busy_until is not None or poller.batch is not None:
            return
        n = min(len(waiting), self.limit(queue))
        self.receive(queue, poller, [waiting.popleft() for _ in range(n)])

    @staticmethod
    def empty_polls(idle_s: float) -> int:
        return int(max(idle_s, 0.0) // const("LONG_POLL_WAIT_S"))

    def finish(self) -> None:
        for pollers in self.pollers.values():
            for p in pollers:
                if p.busy_until is None and p.batch is None:
                    p.receives += self.empty_polls(self.now - p.idle_since)
                self.counts.receives += p.receives

    def latencies(self) -> list[float]:
        return [self.done_at[i] - t for i, t in enumerate(self.put_times)]


# -- figures per configuration ------------------------------------------------------------------------------------------


def put_times(scenario: Scenario) -> list[float]:
    """The phase's uploads, then (steady rates) TRAFFIC_AFTER_S more at the same rate that are not counted: a live site
    does not stop at the end of a measured phase, and an ESM waits longest where its queue goes quiet."""
    if scenario.rate is None:
        return [0.0] * scenario.uploads
    total = scenario.uploads + int(scenario.rate * TRAFFIC_AFTER_S)
    return [i / scenario.rate for i in range(total)]


def draws(scenario: Scenario, uploads: int, repetition: int, seed: int) -> list[dict[str, float]]:
    """Standard normals per (upload, record): the same for every configuration (common random numbers)."""
    rng = random.Random(f"{seed}:{scenario.name}:{repetition}")
    return [{kind: rng.gauss(0.0, 1.0) for kind in RECORDS} for _ in range(uploads)]


def cost_per_upload(counts: Counts, uploads: int, inputs: Inputs) -> dict[str, float]:
    sqs_chunks = math.ceil(inputs.record_bytes / const("SQS_BILLING_CHUNK_BYTES"))
    eb_chunks = math.ceil(inputs.record_bytes / const("EVENTBRIDGE_BILLING_CHUNK_BYTES"))
    sqs = (counts.sends * sqs_chunks + counts.receives + counts.deletes) * const("SQS_USD_PER_REQUEST")
    return {
        "sqs": sqs / uploads,
        "eventbridge": counts.events * eb_chunks * const("EVENTBRIDGE_USD_PER_EVENT") / uploads,
        "lambda_requests": counts.invocations * const("LAMBDA_USD_PER_REQUEST") / uploads,
        "lambda_duration": counts.gb_s * const("LAMBDA_ARM_USD_PER_GB_S") / uploads,
    }


def utilization(config: Config, inputs: Inputs, rate: float) -> dict[str, float]:
    """Per queue: records/s x mean service time / MaximumConcurrency; at or above 1 the queue grows without bound."""
    return {q: rate * inputs.records_per_upload[q] * inputs.service[q].mean / config.concurrency for q in QUEUES}


def evaluate(config: Config, inputs: Inputs, scenario: Scenario, samples: int = SAMPLES, seed: int = SEED) -> dict[str, Any]:
    """p50/p99 latency (end of the PUT -> link done) and $ per million uploads for one configuration in one scenario."""
    config.validate()
    repetitions = max(1, math.ceil(samples / scenario.uploads))
    latencies: list[float] = []
    counts = Counts()
    drain = 0.0
    times = put_times(scenario)
    for r in range(repetitions):
        sim = Simulation(config, inputs, times, draws(scenario, len(times), r, seed)).run()
        latencies += sim.latencies()[: scenario.uploads]
        counts.add(sim.counts)
        drain = max(drain, sim.now)
    uploads, simulated = repetitions * scenario.uploads, repetitions * len(times)
    cost = cost_per_upload(counts, simulated, inputs)
    figures: dict[str, Any] = {
        "scenario": scenario.name,
        "uploads": uploads,
        "p50_s": percentile(latencies, 50),
        "p99_s": percentile(latencies, 99),
        "max_s": max(latencies),
        "usd_per_million": {k: v * 1e6 for k, v in cost.items()},
        "usd_per_million_total": sum(cost.values()) * 1e6,
        "simulated_uploads": simulated,
        "invocations_per_upload": counts.invocations / simulated,
        "records_per_invocation": counts.records / max(counts.invocations, 1),
        "sqs_requests_per_upload": (counts.sends + counts.receives + counts.deletes) / simulated,
    }
    if scenario.rate is None:
        figures["drain_s"] = drain
    else:
        figures["utilization"] = utilization(config, inputs, scenario.rate)
    return figures


# -- the choice ---------------------------------------------------------------------------------------------------------


def grid() -> list[Esm]:
    out = []
    for b in GRID_BATCH_SIZES:
        for w in GRID_WINDOWS_S:
            esm = Esm(b, w)
            try:
                esm.validate()
            except ValueError:
                continue
            out.append(esm)
    return out


def objective(per_scenario: Mapping[str, Mapping[str, Any]], steady: Iterable[str]) -> float:
    """What the choice minimizes: the mean p99 over the steady rates."""
    names = list(steady)
    return sum(float(per_scenario[n]["p99_s"]) for n in names) / len(names)


def choose(rows: Sequence[Mapping[str, Any]], bound_usd: float, tolerance: float = LATENCY_TOLERANCE) -> Mapping[str, Any]:
    """Among the rows within the cost bound, those whose objective is within `tolerance` of the least; of those the
    cheapest to the cent, then the one with the larger batches (fewer invocations when a queue backs up: without a
    window, BatchSize 1, 5 and 10 tie at steady rates, where every record is its own invocation), then the faster."""
    within = [r for r in rows if r["cost_usd_per_million"] <= bound_usd + 1e-12]
    if not within:
        raise ValueError("no configuration within the cost bound")
    best = min(r["objective_s"] for r in within)
    near = [r for r in within if r["objective_s"] <= best * (1 + tolerance) + 1e-12]

    def batches(r: Mapping[str, Any]) -> int:
        config = r.get("config") or {}
        return sum(int(config[q]["batch_size"]) for q in QUEUES if q in config)

    return min(near, key=lambda r: (round(r["cost_usd_per_million"], 2), -batches(r), r["objective_s"]))


class Search:
    """Evaluates configurations (cached) and searches the grid under the objective and the cost bound."""

    def __init__(self, inputs: Inputs, scenarios: Sequence[Scenario], concurrency: int, samples: int = SAMPLES):
        self.inputs, self.concurrency, self.samples = inputs, concurrency, samples
        self.steady = [s for s in scenarios if s.rate is not None]
        self.cache: dict[str, dict[str, Any]] = {}

    def row(self, config: Config) -> dict[str, Any]:
        key = json.dumps(config.to_json(), sort_keys=True)
        if key not in self.cache:
            per = {s.name: evaluate(config, self.inputs, s, self.samples) for s in self.steady}
            self.cache[key] = {
                "config": config.to_json(),
                "label": config.label,
                "objective_s": objective(per, per),
                "cost_usd_per_million": sum(f["usd_per_million_total"] for f in per.values()) / len(per),
                "scenarios": per,
            }
        return self.cache[key]

    def run(self) -> dict[str, Any]:
        uniform = [self.row(Config.uniform(e.batch_size, e.window_s, self.concurrency)) for e in grid()]
        bound = min(r["cost_usd_per_million"] for r in uniform) * COST_BOUND_RATIO
        best = choose(uniform, bound)
        current = _config(best["config"])
        for _ in range(3):  # each queue on its own, the others fixed, until nothing improves
            changed = False
            for q in QUEUES:
                rows = [self.row(current.with_queue(q, e)) for e in grid()]
                pick = choose([*rows, self.row(current)], bound)
                if pick["config"] != current.to_json():
                    current, changed = _config(pick["config"]), True
            if not changed:
                break
        final = choose(list(self.cache.values()), bound)
        return {"uniform": uniform, "bound_usd_per_million": bound, "choice": final, "rows": list(self.cache.values())}


def _config(data: Mapping[str, Any]) -> Config:
    return Config({q: Esm(**data[q]) for q in QUEUES}, int(data["concurrency"]))


def visibility_timeouts(config: Config, inputs: Inputs) -> dict[str, int]:
    """Lambda's guidance: six times the function timeout, plus MaximumBatchingWindowInSeconds."""
    factor = const("VISIBILITY_TIMEOUT_FACTOR")
    return {q: int(factor * inputs.timeout_s[q] + config.esm[q].window_s) for q in QUEUES}


# -- inputs from the repository ----------------------------------------------------------------------------------------


def load_inputs(live: Mapping[str, Any] | None, template: Path = TEMPLATE) -> Inputs:
    from mediacanon.local.topology import load_template, load_topology

    raw = load_template(template)
    topology = load_topology(template, TEMPLATE_PARAMETERS)
    globals_fn = (raw.get("Globals") or {}).get("Function") or {}
    resources = raw["Resources"]
    memory = {
        q: int((resources[f]["Properties"]).get("MemorySize", globals_fn.get("MemorySize", 128))) for q, f in FUNCTIONS.items()
    }
    timeout = {q: topology.function(f).timeout for q, f in FUNCTIONS.items()}
    service, source = service_times(live)
    return Inputs(service, source, memory, timeout, record_bytes(), records_per_upload(live))


def service_times(live: Mapping[str, Any] | None) -> tuple[dict[str, ServiceTime], str]:
    phases = (live or {}).get("phases") or {}
    slow = [(name, p) for name, p in phases.items() if p.get("rate") == min(STEADY_RATES) and p.get("hops_s")]
    if slow:
        name, phase = slow[0]
        hops = phase["hops_s"]
        if all(hops.get(q, {}).get("p50") and hops[q].get("p99") for q in QUEUES):
            times = {q: ServiceTime(float(hops[q]["p50"]), float(hops[q]["p99"])) for q in QUEUES}
            return times, f"measured: RESULTS.json live.phases.{name}.hops_s ({(live or {}).get('measured_at')})"
    return {q: ServiceTime(*FALLBACK_SERVICE_S[q]) for q in QUEUES}, "fallback"


def records_per_upload(live: Mapping[str, Any] | None) -> dict[str, int]:
    """Records per queue per upload from the measured handler outcomes (link's outcomes count the uploads)."""
    outcomes: Mapping[str, int] = (live or {}).get("outcomes") or {}
    uploads = sum(n for k, n in outcomes.items() if k.startswith("link:"))
    declared = {q: sum(1 for r in RECORDS.values() if r == q) for q in QUEUES}
    if not uploads:
        return declared
    measured = {q: round(sum(n for k, n in outcomes.items() if k.startswith(f"{q}:")) / uploads) for q in QUEUES}
    if measured != declared:
        raise ValueError(f"measured records per upload {measured} differ from the model's routes {declared}")
    return measured


def record_bytes() -> int:
    sizes = [len(json.dumps(r)) for p in sorted(EVENTS.glob("*.json")) for r in json.loads(p.read_text())["Records"]]
    return max(sizes) if sizes else 2048


def template_batching() -> dict[str, Esm]:
    from mediacanon.local.topology import load_topology

    topology = load_topology(TEMPLATE, TEMPLATE_PARAMETERS)
    return {q: Esm(topology.function(f).batch_size, topology.function(f).maximum_batching_window) for q, f in FUNCTIONS.items()}


def scenarios(live: Mapping[str, Any] | None) -> list[Scenario]:
    """bench/live.py's phases (their lengths as measured), or its defaults."""
    phases = (live or {}).get("phases") or {}
    measured = {p.get("rate"): int(p.get("uploads") or 0) for p in phases.values()}
    steady = [Scenario(f"{r:g}/s", r, measured.get(r) or {1.0: 30, 5.0: 60, 20.0: 200}[r]) for r in STEADY_RATES]
    burst = int((live or {}).get("burst_uploads") or 1000)
    return [*steady, Scenario("burst", None, burst)]


# -- the run ------------------------------------------------------------------------------------------------------------


def run_model(live: Mapping[str, Any] | None, samples: int = SAMPLES) -> dict[str, Any]:
    inputs = load_inputs(live)
    concurrency = maximum_concurrency(TEMPLATE.read_text(encoding="utf-8")) or 5
    all_scenarios = scenarios(live)
    search = Search(inputs, all_scenarios, concurrency, samples)
    result = search.run()
    choice = _config(result["choice"]["config"])
    baseline = Config(template_batching(), concurrency)
    previous = Config.uniform(10, 5, concurrency)  # the template's setting before this model (BatchSize 10, 5 s)
    compared = {}
    for name, cfg in (("before (10/5s)", previous), ("template now", baseline), ("choice", choice)):
        compared[name] = {"config": cfg.to_json(), "label": cfg.label,
                          "scenarios": {s.name: evaluate(cfg, inputs, s, samples) for s in all_scenarios}}  # fmt: skip
    burst = next(s for s in all_scenarios if s.rate is None)
    by_concurrency = {c: evaluate(Config(choice.esm, c), inputs, burst, samples) for c in (5, 20, 100)}
    keep_up = keep_up_by_concurrency(choice, inputs, all_scenarios, samples)
    return {
        "generated_by": "bench/live_model.py",
        "measured_at": (live or {}).get("measured_at"),
        "inputs": {
            "service_times_s": {q: asdict(inputs.service[q]) for q in QUEUES},
            "service_times_source": inputs.service_source,
            "memory_mb": dict(inputs.memory_mb),
            "timeout_s": dict(inputs.timeout_s),
            "record_bytes": inputs.record_bytes,
            "records_per_upload": dict(inputs.records_per_upload),
            "maximum_concurrency": concurrency,
            "assumed_delivery_s": inputs.delivery_s,
            "samples": samples,
            "seed": SEED,
        },
        "constants": {
            k: {"value": c.value, "doc": AWS_DOCS[c.doc].title, "url": AWS_DOCS[c.doc].url, "note": c.note}
            for k, c in CONSTANTS.items()
        },
        "objective": "minimize the mean p99 (end of the PUT -> link done) over 1, 5 and 20 uploads/s, subject to the cost per "
        f"million uploads (mean over the same rates) <= {COST_BOUND_RATIO} x the cheapest uniform grid point's; mean p99s within "
        f"{LATENCY_TOLERANCE:.0%} of the least count as equal, and of those the cheapest (to the cent) is chosen, then the "
        "one with the larger batches, then the faster",
        "cost_bound_ratio": COST_BOUND_RATIO,
        "latency_tolerance": LATENCY_TOLERANCE,
        "grid": {"batch_size": list(GRID_BATCH_SIZES), "window_s": list(GRID_WINDOWS_S)},
        "bound_usd_per_million": result["bound_usd_per_million"],
        "evaluated": len(result["rows"]),
        "rows": [{k: r[k] for k in ("label", "config", "objective_s", "cost_usd_per_million")} for r in result["rows"]],
        "uniform": [
            {k: r[k] for k in ("label", "config", "objective_s", "cost_usd_per_million")}
            | {"scenarios": {n: _brief(f) for n, f in r["scenarios"].items()}}
            for r in result["uniform"]
        ],
        "choice": {k: result["choice"][k] for k in ("label", "config", "objective_s", "cost_usd_per_million")},
        "visibility_timeout_s": visibility_timeouts(choice, inputs),
        "compared": compared,
        "burst_by_concurrency": {str(c): f for c, f in by_concurrency.items()},
        "keep_up_by_concurrency": keep_up,
        "keep_up_ratio": keep_up[str(concurrency)]["ratio"],
        "keeps_up_from_concurrency": next((int(c) for c, k in keep_up.items() if k["ratio"] <= KEEP_UP_TARGET), None),
    }


KEEP_UP_TARGET = 1.5  # issue 19: p99 at 20/s <= 1.5 x p99 at 1/s
KEEP_UP_CONCURRENCY = (5, 10, 20, 50)


def keep_up_by_concurrency(
    choice: Config, inputs: Inputs, all_scenarios: Sequence[Scenario], samples: int
) -> dict[str, dict[str, Any]]:
    """Whether the live path keeps up on AWS, by MaximumConcurrency (the template's among them): p99 at the highest
    steady rate over p99 at the lowest, with the chosen batching. MaximumConcurrency also bounds the database
    connections (one per concurrent invocation: 3 x MaximumConcurrency for the three queues)."""
    steady = sorted((s for s in all_scenarios if s.rate is not None), key=lambda s: float(s.rate or 0))
    slow, fast = steady[0], steady[-1]
    out: dict[str, dict[str, Any]] = {}
    for c in sorted({*KEEP_UP_CONCURRENCY, choice.concurrency}):
        config = Config(choice.esm, c)
        p99_slow = evaluate(config, inputs, slow, samples)["p99_s"]
        p99_fast = evaluate(config, inputs, fast, samples)["p99_s"]
        out[str(c)] = {
            "p99_s_slow": p99_slow,
            "p99_s_fast": p99_fast,
            "ratio": p99_fast / p99_slow if p99_slow else None,
            "db_connection_bound": c * len(QUEUES),
            "slow": slow.name,
            "fast": fast.name,
        }
    return out


def _brief(figures: Mapping[str, Any]) -> dict[str, Any]:
    return {k: figures[k] for k in ("p50_s", "p99_s", "usd_per_million_total", "invocations_per_upload")}


def _f(v: Any, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(model: Mapping[str, Any]) -> str:
    inp = model["inputs"]
    cmp = model["compared"]
    before, choice = cmp["before (10/5s)"]["scenarios"], cmp["choice"]["scenarios"]
    lines = [
        "# The live path on AWS, modelled",
        "",
        "Generated by `bench/live_model.py` (`make bench` runs it after `bench/live.py`); method and assumptions in its "
        f"docstring. Service times: {inp['service_times_source']}. MaximumConcurrency {inp['maximum_concurrency']} per "
        f"queue. Every latency includes an assumed {inp['assumed_delivery_s']:g} s of S3 -> EventBridge -> SQS delivery per "
        'hop (3 hops); AWS gives no figure beyond "typically ... in seconds".',
        "",
        "## The choice",
        "",
        f"Objective: {model['objective']} (bound: ${model['bound_usd_per_million']:.2f} per million uploads). "
        f"{model['evaluated']} configurations simulated, {inp['samples']} uploads per scenario each.",
        "",
        f"**Chosen: {model['choice']['label']}** (BatchSize/MaximumBatchingWindowInSeconds); its queues' visibility "
        "timeouts (6 x function timeout + window): "
        + ", ".join(f"{q} {v} s" for q, v in model["visibility_timeout_s"].items())
        + ".",
        "",
        "| scenario | before (10/5s) p50 / p99 s | chosen p50 / p99 s | before $/M uploads | chosen $/M uploads "
        "| invocations per upload, before / chosen |",
        "|---|---|---|---:|---:|---|",
    ]
    for name, c in choice.items():
        b = before[name]
        lines.append(
            f"| {name} | {_f(b['p50_s'])} / {_f(b['p99_s'])} | {_f(c['p50_s'])} / {_f(c['p99_s'])} "
            f"| {_f(b['usd_per_million_total'])} | {_f(c['usd_per_million_total'])} "
            f"| {_f(b['invocations_per_upload'])} / {_f(c['invocations_per_upload'])} |"
        )
    lines += ["", why(model), "", "## Cost per million uploads, by service (chosen; 1/s)", ""]
    first = next(iter(choice.values()))
    lines += [f"- {k}: ${v:.2f}" for k, v in first["usd_per_million"].items()]
    lines += ["", "## The grid: the same setting on all three queues", "",
              "| BatchSize / window | p99 at " + " | p99 at ".join(first_rates(model)) + " | mean p99 | $/M uploads (mean of the rates) |",
              "|---|" + "---:|" * (len(first_rates(model)) + 2)]  # fmt: skip
    for r in model["uniform"]:
        p99s = " | ".join(_f(f["p99_s"]) for f in r["scenarios"].values())
        lines.append(f"| {r['label']} | {p99s} | {_f(r['objective_s'])} | {_f(r['cost_usd_per_million'])} |")
    lines += ["", "## The burst by MaximumConcurrency (chosen batching)", "",
              "| MaximumConcurrency | p50 s | p99 s | drained in s |", "|---:|---:|---:|---:|"]  # fmt: skip
    for c, f in model["burst_by_concurrency"].items():
        lines.append(f"| {c} | {_f(f['p50_s'])} | {_f(f['p99_s'])} | {_f(f['drain_s'])} |")
    keep = model.get("keep_up_by_concurrency") or {}
    if keep:
        any_k = next(iter(keep.values()))
        lines += ["", f"## Keeping up: p99 at {any_k['fast']} over p99 at {any_k['slow']}, by MaximumConcurrency (chosen batching)",
                  "", f"| MaximumConcurrency | p99 at {any_k['slow']} s | p99 at {any_k['fast']} s | ratio (target <= {KEEP_UP_TARGET:g}) "
                  "| database connections at most |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
        for c, k in keep.items():
            lines.append(
                f"| {c} | {_f(k['p99_s_slow'])} | {_f(k['p99_s_fast'])} | {_f(k['ratio'])} | {k['db_connection_bound']} |"
            )
    util = choice[first_rates(model)[-1]].get("utilization", {})
    lines += ["", "Utilization at the highest steady rate (records/s x mean service time / MaximumConcurrency; >= 1 "
              "queues without bound): " + ", ".join(f"{q} {u:.2f}" for q, u in util.items()) + ".", "",
              "## AWS documents behind the constants", ""]  # fmt: skip
    for name, c in model["constants"].items():
        note = f" ({c['note']})" if c["note"] else ""
        lines.append(f"- `{name}` = {c['value']:g}{note}: [{c['doc']}]({c['url']})")
    return "\n".join(lines) + "\n"


def first_rates(model: Mapping[str, Any]) -> list[str]:
    return list(model["uniform"][0]["scenarios"])


def why(model: Mapping[str, Any]) -> str:
    """The reason, in figures the model computed."""
    cmp = model["compared"]
    before, choice = cmp["before (10/5s)"]["scenarios"], cmp["choice"]["scenarios"]
    one = first_rates(model)[0]
    b, c = before[one], choice[one]
    pollers = model["inputs"]["maximum_concurrency"]
    windows = {q: model["choice"]["config"][q]["window_s"] for q in QUEUES}
    extra = c["usd_per_million_total"] - b["usd_per_million_total"]
    text = (
        f"Why: at {one} a 5 s window does not fill a batch of 10 ({b['records_per_invocation']:.1f} records per invocation: "
        f"each of the {pollers} pollers sees about 1/{pollers} of a queue's records), so each hop waits out the window "
        "and then the long poll outstanding at its end, which with so little traffic can take up to 20 s (with-sqs.html): "
        f"p99 {_f(b['p99_s'])} s over the three hops. "
    )
    if all(w == 0 for w in windows.values()):
        text += f"Without a window a record is invoked as soon as a poller has it: p99 {_f(c['p99_s'])} s. "
    else:
        text += f"The chosen windows ({', '.join(f'{q} {w} s' for q, w in windows.items())}): p99 {_f(c['p99_s'])} s. "
    return text + (
        f"The window cut invocations per upload from {_f(c['invocations_per_upload'])} to {_f(b['invocations_per_upload'])} "
        f"(and their SQS deletes); giving that up costs ${extra:+.2f} per million uploads at {one} (total "
        f"${c['usd_per_million_total']:.2f}); over the three rates the choice costs "
        f"${model['choice']['cost_usd_per_million']:.2f}, inside the bound (${model['bound_usd_per_million']:.2f}). Throughput does "
        "not depend on the batch (a handler runs its records one after another): above MaximumConcurrency / service "
        "time a queue grows whatever the batching; only MaximumConcurrency changes that (the burst table), and it also "
        "bounds the database connections."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--samples", type=int, default=SAMPLES, help="uploads simulated per scenario")
    parser.add_argument("--no-write", action="store_true", help="print the choice, leave RESULTS.json and the page alone")
    parser.add_argument("--render", action="store_true", help="only write results/live-model.md from RESULTS.json")
    opts = parser.parse_args()
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    if opts.render:
        MODEL_MD.write_text(markdown(results["live"]["model"]), encoding="utf-8")
        return
    live = results.get("live")
    model = run_model(live, opts.samples)
    c = model["compared"]["choice"]["scenarios"]
    print(f"choice: {model['choice']['label']}; " + "; ".join(f"{n} p99 {_f(f['p99_s'])} s" for n, f in c.items()))
    if opts.no_write:
        return
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}  # read again: merge, never drop keys
    results.setdefault("live", {})["model"] = model
    RESULTS_JSON.write_text(json.dumps(results, indent=1, default=str) + "\n")
    MODEL_MD.parent.mkdir(exist_ok=True)
    MODEL_MD.write_text(markdown(model), encoding="utf-8")
    if "phases" in results["live"]:  # results/live.md's targets include the modelled keep-up ratio
        from live import render

        render(results["live"])


if __name__ == "__main__":
    main()
