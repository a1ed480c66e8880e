"""The local emulator: never shipped in the Lambda layer, never imported by production code.

embedded (moto server + PostgreSQL), localrun (the live path's queues fed to the handlers: provision creates the
stack, inprocess runs its functions in this process), sfnlocal (the backfill
state machine on moto's Step Functions), topology (the template's rules and queues on moto), motoserver."""
