"""Loading the FLF2V models from an official or a diffusers checkpoint (see `components`)."""

from engine.loaders.assign import assign_weights, build_empty
from engine.loaders.components import (
    COMPONENTS,
    IMAGE_ENCODER,
    TEXT_ENCODER,
    TRANSFORMER,
    VAE,
    Component,
    empty,
    lazy_weights,
    load,
    load_tokenizer,
    weights,
)

__all__ = [
    "COMPONENTS",
    "IMAGE_ENCODER",
    "TEXT_ENCODER",
    "TRANSFORMER",
    "VAE",
    "Component",
    "assign_weights",
    "build_empty",
    "empty",
    "lazy_weights",
    "load",
    "load_tokenizer",
    "weights",
]
