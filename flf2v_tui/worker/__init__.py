"""The worker: GPU pool, launch, supervision, classification and crash reconciliation."""

# Seconds between SIGTERM and SIGKILL when a render is stopped (Slurm's KillWait default). Here, in a module
# that imports nothing, because the CLI's option defaults need it without loading the worker.
KILL_GRACE_S = 30.0
# `flf2v worker --keep-warm`: minutes an idle warm group stays loaded (0: one process group per job), and the
# most it takes.
KEEP_WARM_MIN = 10.0
MAX_KEEP_WARM_MIN = 7 * 24 * 60
