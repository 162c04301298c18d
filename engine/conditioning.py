"""The FLF2V conditioning, computed as the official wan/first_last_frame2video.py does.

Where the official code has a bug we do what it means to do, and say so next to the code.
"""

from __future__ import annotations

import html
import re

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# The normalisation the official CLIP transforms apply (OpenAI's CLIP statistics).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_rgb(path: str) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 [3, H, W] in [-1, 1] (to_tensor, then (x - 0.5) / 0.5)."""
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
    return tensor.sub_(0.5).div_(0.5)


def match_last_frame(first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Resize the last frame to cover the first frame's size, then center-crop to it.

    The official code computes the covering size but never resizes, then calls center_crop with a (w, h)
    list where (h, w) is expected, which pads or crops the unscaled frame. We do the resize and crop it
    describes, so a last frame of another size or aspect ratio keeps its content and scale.
    """
    first_h, first_w = first.shape[1:]
    last_h, last_w = last.shape[1:]
    if (first_h, first_w) == (last_h, last_w):
        return last
    ratio = max(first_w / last_w, first_h / last_h)
    new_h, new_w = max(first_h, round(last_h * ratio)), max(first_w, round(last_w * ratio))
    resized = F.interpolate(last[None], size=(new_h, new_w), mode="bicubic", align_corners=False)[0]
    top, left = (new_h - first_h) // 2, (new_w - first_w) // 2
    return resized[:, top : top + first_h, left : left + first_w]


def clip_pixels(frames: list[torch.Tensor], image_size: int) -> torch.Tensor:
    """[-1, 1] frames -> CLIP pixel values [N, 3, S, S]: bicubic to S x S (no crop, as the official code),
    back to [0, 1], then normalised with the CLIP mean and std."""
    resized = torch.cat(
        [F.interpolate(f[None], size=(image_size, image_size), mode="bicubic", align_corners=False) for f in frames]
    )
    resized = resized.mul(0.5).add(0.5)
    mean = torch.tensor(CLIP_MEAN, dtype=resized.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=resized.dtype).view(1, 3, 1, 1)
    return (resized - mean) / std


def condition_video(first: torch.Tensor, last: torch.Tensor, frame_num: int, height: int, width: int) -> torch.Tensor:
    """The VAE input [3, F, H, W]: the first frame, F - 2 zero frames, the last frame, each resized bicubically."""

    def fit(frame: torch.Tensor) -> torch.Tensor:
        return F.interpolate(frame[None], size=(height, width), mode="bicubic", align_corners=False).transpose(0, 1)

    zeros = torch.zeros(3, frame_num - 2, height, width, dtype=first.dtype)
    return torch.cat([fit(first), zeros, fit(last)], dim=1)


def frame_mask(frame_num: int, lat_h: int, lat_w: int) -> torch.Tensor:
    """[4, T, lat_h, lat_w]: ones over the latent frames that carry the first and last frame.

    The official code builds this mask for 81 frames whatever frame_num is, which breaks every other
    length; we build it for frame_num. For 81 frames the result is identical.
    """
    mask = torch.ones(1, frame_num, lat_h, lat_w)
    mask[:, 1:-1] = 0
    # The first frame occupies a whole latent frame (4 video frames) in the causal VAE.
    mask = torch.cat([torch.repeat_interleave(mask[:, 0:1], repeats=4, dim=1), mask[:, 1:]], dim=1)
    mask = mask.view(1, mask.shape[1] // 4, 4, lat_h, lat_w)
    return mask.transpose(1, 2)[0]


def latent_frames(frame_num: int, temporal_stride: int = 4) -> int:
    return (frame_num - 1) // temporal_stride + 1


def sequence_length(frame_num: int, lat_h: int, lat_w: int, patch: tuple[int, int, int], sp_size: int = 1) -> int:
    """Tokens of one video for the DiT, rounded up to a multiple of the sequence-parallel size."""
    tokens = latent_frames(frame_num) * lat_h * lat_w // (patch[1] * patch[2])
    return -(-tokens // sp_size) * sp_size


def clean_prompt(text: str) -> str:
    """ftfy, double HTML unescape, then collapsed whitespace: the official 'whitespace' cleaning."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


@torch.no_grad()
def encode_text(
    tokenizer: object,
    text_encoder: torch.nn.Module,
    texts: list[str],
    text_len: int,
    device: torch.device,
) -> torch.Tensor:
    """T5 context [B, text_len, C]: each prompt's real tokens, then zeros up to text_len.

    The official code trims the encoder output to each prompt's length and the DiT pads it back with zeros,
    so the padding tokens' encoder outputs never reach the model.
    """
    batch = tokenizer(  # type: ignore[operator]
        [clean_prompt(t) for t in texts],
        padding="max_length",
        truncation=True,
        max_length=text_len,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    hidden = text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    lengths = mask.gt(0).sum(dim=1)
    out = torch.zeros_like(hidden)
    for row, length in enumerate(lengths.tolist()):
        out[row, :length] = hidden[row, :length]
    return out
