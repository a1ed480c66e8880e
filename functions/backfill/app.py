"""The backfill state machine's tasks (statemachines/backfill.asl.json), chosen by the event's "action" from the
dispatch table mediacanon.backfill.tasks.TASKS."""

from functools import cache, partial
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from mediacanon import wiring
from mediacanon.backfill import run_task
from mediacanon.live import traced
from mediacanon.steps import Steps

logger = Logger()
settings = wiring.load_settings()  # cold start: read and validate the media map and settings now, not at the first task
stores = wiring.connect(settings.media_map, settings.database_url)


@cache
def steps_for(execution: str) -> Steps:
    # a backfill never waits for a row (owner wait 0); its ledger entries name the execution, for rollback
    return stores.for_execution(execution).steps(owner_wait_seconds=0)


@logger.inject_lambda_context
@partial(traced, handler=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(action=event.get("action"), execution=event.get("execution"))
    result = run_task(event, steps_for)
    logger.info("backfill task done", extra={"counts": result.get("counts")})
    return result
