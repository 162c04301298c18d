"""Loading the FLF2V models from an official or a diffusers checkpoint (see `components`)."""

from engine.loaders.assign import assign_weights, build_empty
from engine.loaders.components import (
    empty_image_encoder,
    empty_text_encoder,
    empty_transformer,
    empty_vae,
    image_encoder_weights,
    load_image_encoder,
    load_text_encoder,
    load_tokenizer,
    load_transformer,
    load_vae,
    text_encoder_weights,
    transformer_weights,
    vae_weights,
)

__all__ = [
    "assign_weights",
    "build_empty",
    "empty_image_encoder",
    "empty_text_encoder",
    "empty_transformer",
    "empty_vae",
    "image_encoder_weights",
    "load_image_encoder",
    "load_text_encoder",
    "load_tokenizer",
    "load_transformer",
    "load_vae",
    "text_encoder_weights",
    "transformer_weights",
    "vae_weights",
]
