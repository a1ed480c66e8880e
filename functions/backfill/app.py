"""The backfill state machine's tasks (statemachines/backfill.asl.json), chosen by the event's "action".
See mediacanon.backfill.run_task."""

from functools import cache, partial

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.backfill import run_task
from mediacanon.live import load_settings, traced
from mediacanon.steps import Steps

logger = Logger()
settings = load_settings()  # cold start: read and validate the media map and settings now, not at the first task
s3 = S3Adapter()
db = Database(settings.database_url)


@cache
def steps_for(execution: str) -> Steps:
    # a backfill never waits for a row (owner wait 0); its ledger entries name the execution, for rollback
    ledger = Ledger(db, settings.media_map.schema, execution=execution)
    return Steps(settings.media_map, s3, db, ledger, owner_wait_seconds=0)


@logger.inject_lambda_context
@partial(traced, handler=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    logger.append_keys(action=event.get("action"), execution=event.get("execution"))
    result = run_task(event, steps_for)
    logger.info("backfill task done", extra={"counts": result.get("counts")})
    return result
