"""The worker: GPU pool, launch, supervision, classification and crash reconciliation."""

# Seconds between SIGTERM and SIGKILL when a render is stopped (Slurm's KillWait default). Here, in a module
# that imports nothing, because the CLI's option defaults need it without loading the worker.
KILL_GRACE_S = 30.0
