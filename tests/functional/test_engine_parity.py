"""Faithfulness checks of the engine on the tiny model.

- Both checkpoint layouts of the same weights give the same video (this proves the key maps).
- Our sampling loop matches diffusers' own WanImageToVideoPipeline(..., last_image=...) step by step.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline
from PIL import Image

from engine import conditioning as C
from engine.checks import check_checkpoint
from engine.pipeline import FLF2VPipeline, GenerationRequest
from engine.reporting import Reporter
from engine.runtime import Runtime
from engine.sampler import Conditioning, denoise
from engine.schedulers import make_scheduler, official_unipc_sigmas
from engine.tasks import TASKS
from tests.functional.engine_helpers import draw_frame

TASK = TASKS["flf2v-tiny"]


def build_pipeline(ckpt) -> FLF2VPipeline:
    runtime = Runtime(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    pipeline = FLF2VPipeline(TASK, check_checkpoint(ckpt, TASK), runtime, Reporter(runtime, None))
    pipeline.load()
    return pipeline


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> tuple[Image.Image, Image.Image]:
    folder = tmp_path_factory.mktemp("parity-frames")
    first = draw_frame(folder / "a.png", (64, 64), 0.8, 0)
    last = draw_frame(folder / "b.png", (64, 64), 0.2, 60)
    return C.load_rgb(str(first)), C.load_rgb(str(last))


def request(frames: tuple[Image.Image, Image.Image], **overrides) -> GenerationRequest:
    values = dict(
        first_frame=frames[0], last_frame=frames[1], prompt="a small blue bird takes off",
        neg_prompt=TASK.neg_prompt, size="64*64", frame_num=9, steps=4, shift=16.0, guide_scale=5.0,
        solver="unipc", seed=7, offload=False,
    )  # fmt: skip
    values.update(overrides)
    return GenerationRequest(**values)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("solver", ["unipc", "dpm++"])
def test_both_layouts_give_the_same_video(tiny_official_ckpt, tiny_diffusers_ckpt, frames, solver):
    official = build_pipeline(tiny_official_ckpt).generate(request(frames, solver=solver))
    diffusers_layout = build_pipeline(tiny_diffusers_ckpt).generate(request(frames, solver=solver))
    assert official.shape == (3, 9, 64, 64)
    assert relative(official, diffusers_layout) <= 1e-6


class OfficialSigmasUniPC(UniPCMultistepScheduler):
    """diffusers' UniPC, with the official sigma schedule installed whenever the pipeline sets timesteps.

    Difference named: diffusers' default flow sigmas start at 1.0, the official ones at float32(0.999).
    """

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None):
        super().set_timesteps(device=device, sigmas=official_unipc_sigmas(num_inference_steps))


class GivenImageEmbedsPipeline(WanImageToVideoPipeline):
    """Feeds the pipeline the CLIP features our engine computed.

    Difference named: diffusers' CLIPImageProcessor resizes the shortest side with Pillow and center-crops,
    while the official code resizes both sides bicubically in torch without a crop. The pipeline refuses
    `image` and `image_embeds` together, so the features come in through encode_image.
    """

    given_image_embeds: torch.Tensor

    def encode_image(self, image, device=None):
        return self.given_image_embeds


@pytest.mark.parametrize("cfg_batch", [False, True])
def test_sampling_loop_matches_diffusers_pipeline(tiny_diffusers_ckpt, frames, cfg_batch):
    ours = build_pipeline(tiny_diffusers_ckpt)
    m = ours.models
    req = request(frames, steps=5)
    first, last = C.image_to_tensor(req.first_frame), C.image_to_tensor(req.last_frame)
    # The frames are already at the output size, so the official bicubic resize and diffusers' resize are
    # both the identity and the VAE condition is computed from the same pixels by both.
    ctx = C.encode_text(m.tokenizer, m.text_encoder, [req.prompt, req.neg_prompt], TASK.text_len, ours.device)
    pixels = C.clip_pixels([first, last], m.image_encoder.config.image_size)
    image_embeds = m.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    video = C.condition_video(first, last, req.frame_num, 64, 64)
    condition = torch.cat([C.frame_mask(req.frame_num, 8, 8), ours._vae_encode(video)])
    noise = torch.randn(16, C.latent_frames(req.frame_num), 8, 8, generator=torch.Generator().manual_seed(3))

    ours_steps: list[torch.Tensor] = []
    scheduler, timesteps = make_scheduler("unipc", req.steps, req.shift)
    cond = Conditioning(condition, ctx[0:1], ctx[1:2], image_embeds)
    denoise(m.transformer, noise, cond, scheduler, timesteps, req.guide_scale, cfg_batch,
            on_step=lambda i, n, s, lat: ours_steps.append(lat.clone()))  # fmt: skip

    reference = GivenImageEmbedsPipeline(
        tokenizer=m.tokenizer, text_encoder=m.text_encoder, vae=m.vae,
        scheduler=OfficialSigmasUniPC(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=req.shift),
        image_encoder=m.image_encoder, transformer=m.transformer,
    )  # fmt: skip
    reference.given_image_embeds = image_embeds
    reference.set_progress_bar_config(disable=True)
    theirs_steps: list[torch.Tensor] = []

    def record(pipe, i, t, kwargs):
        theirs_steps.append(kwargs["latents"][0].clone())
        return {}

    reference(
        image=req.first_frame, last_image=req.last_frame, prompt_embeds=ctx[0:1], negative_prompt_embeds=ctx[1:2],
        height=64, width=64, num_frames=req.frame_num, num_inference_steps=req.steps,
        guidance_scale=req.guide_scale, latents=noise[None].clone(), output_type="latent",
        callback_on_step_end=record, callback_on_step_end_tensor_inputs=["latents"],
    )  # fmt: skip
    assert len(ours_steps) == len(theirs_steps) == req.steps
    for i, (a, b) in enumerate(zip(ours_steps, theirs_steps, strict=True)):
        assert relative(a, b) <= 1e-4, f"step {i + 1}: relative difference {relative(a, b):.2e}"
