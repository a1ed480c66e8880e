"""The normalize step on its SQS queue (S3 -> EventBridge -> SQS); the logic is mediacanon.steps.Steps.normalize."""

from mediacanon.live import lambda_handler_for

lambda_handler = lambda_handler_for("normalize")
