"""The flf2v engine: what runs under torchrun.

The app (flf2v_tui and storage) imports only the modules of APP_MODULES, which import no torch (`mp4` needs
numpy; of `tiny`, its top level only: its writer imports torch when it runs). Everything else pulls in torch.
The import contracts in pyproject.toml hold both to this list (`lint-imports`).
"""

__version__ = "0.1.0"

APP_MODULES = (
    "checks",
    "cli_args",
    "diskspace",
    "errors",
    "flags",
    "limits",
    "mp4",
    "recipe",
    "tasks",
    "telemetry",
    "tiny",
    "warm_protocol",
)
