"""The replicate step on its SQS queue (S3 -> EventBridge -> SQS); the logic is mediacanon.steps.Steps.replicate.

A partial-batch SQS processor: a failed record alone comes back (then reaches the dead-letter queue), the batch's
other records are done. The CDN paths a batch replaces are invalidated at its end
(MEDIACANON_CDN_DISTRIBUTION_ID)."""

from functools import partial
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from mediacanon import wiring
from mediacanon.live import StepRunner, traced

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
runner = StepRunner("replicate", wiring.live_steps, logger, metrics)  # cold start: settings read and checked here


@logger.inject_lambda_context
@partial(traced, handler=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    with runner.batch(context):
        return dict(
            process_partial_response(event=event, record_handler=runner.record_handler, processor=processor, context=context)
        )
