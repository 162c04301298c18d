"""The flf2v engine: what runs under torchrun.

Only the torch-free modules (`tasks`, `telemetry`, `cli_args`, `checks`, `errors`, `limits`, `recipe`,
`diskspace`, `mp4` (which needs numpy), and the top level of `tiny`) may be imported by the app; everything
else pulls in torch.
"""

__version__ = "0.1.0"
