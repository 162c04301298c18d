"""The worker: GPU pool, launch, supervision, classification and crash reconciliation."""
