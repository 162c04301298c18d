"""The FLF2V pipeline: load the components, build the conditioning, sample, decode.

Mirrors the official WanFLF2V: T5 context for the prompt and the negative prompt, CLIP features of both
frames, a VAE-encoded [first, zeros, last] condition with a frame mask, CFG sampling, VAE decode on rank 0.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from PIL import Image
from torch import nn
from transformers import CLIPVisionModel, PreTrainedTokenizerBase, UMT5EncoderModel

from engine import conditioning as C
from engine import loaders
from engine.attention import SDPA, Kernel, apply_attention
from engine.checks import CheckpointLayout
from engine.cli_args import resolve_dtype
from engine.delay_hook import delay_point
from engine.loaders import IMAGE_ENCODER, TEXT_ENCODER, TRANSFORMER, VAE, Component
from engine.parallel import ParallelPlan, cfg_mesh, cfg_split, fsdp_mesh, ulysses_split
from engine.parallel.cfg import CfgSplit
from engine.parallel.fsdp import reshard_root
from engine.parallel.sharded_load import load_shard
from engine.parallel.ulysses import enable_ulysses
from engine.precision import Precision, keep_fp32_islands
from engine.preview import LatentPreviewer, fit_projection
from engine.regional_compile import compile_blocks
from engine.reporting import Reporter
from engine.runtime import LOAD_TIMEOUT_KNOB, Runtime
from engine.sampler import CfgBatch, Conditioning, denoise
from engine.schedulers import make_scheduler
from engine.tasks import TaskConfig, latent_grid
from engine.time_embedding import use_float64_sinusoid

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

log = logging.getLogger("flf2v.engine")
M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class Models:
    """The pipeline's components, named as diffusers' WanImageToVideoPipeline names them."""

    tokenizer: PreTrainedTokenizerBase
    text_encoder: UMT5EncoderModel
    image_encoder: CLIPVisionModel
    vae: AutoencoderKLWan
    transformer: WanTransformer3DModel


@dataclass
class GenerationRequest:
    first_frame: Image.Image
    last_frame: Image.Image
    prompt: str
    neg_prompt: str
    size: str
    frame_num: int
    steps: int
    shift: float
    guide_scale: float
    solver: str
    seed: int
    offload: bool
    cfg_batch: bool = True  # resolved already (engine.cli_args.resolve_cfg_batch)
    t5_cpu: bool = False
    preview_every: int = 0
    preview_dir: str | None = None


class FLF2VPipeline:
    def __init__(
        self,
        task: TaskConfig,
        layout: CheckpointLayout,
        runtime: Runtime,
        reporter: Reporter,
        plan: ParallelPlan | None = None,
        dtype: str = "auto",
        attention: Kernel | None = None,
        compile_dit: bool = False,
    ) -> None:
        """`attention`: the resolved --attn kernel (engine.attention; default PyTorch's SDPA); `compile_dit`:
        --compile."""
        self.task = task
        self.layout = layout
        self.runtime = runtime
        self.reporter = reporter
        self.device = runtime.device
        self.precision = Precision.of(resolve_dtype(dtype, self.device.type), task)
        self._models: Models | None = None  # set by load()
        self.plan = plan or ParallelPlan(world_size=runtime.world_size, rank=runtime.rank)
        self.sp_size = self.plan.ulysses_size
        self.cfg: CfgBatch | None = None  # set by generate(); says whether CFG fell back to separate forwards
        self.attention = attention or Kernel(SDPA, "native")
        self.compile_dit = compile_dit
        self._cfg_mesh: DeviceMesh | None = None  # CFG-parallel's (cfg, group) mesh, made by load()
        self.cfg_split: CfgSplit | None = None  # this rank's guidance branch under CFG-parallel, made by shard()

    @property
    def models(self) -> Models:
        if self._models is None:
            raise RuntimeError("the pipeline's models are not loaded yet: call load() first")
        return self._models

    # ---- loading -------------------------------------------------------------------------------------
    def load(self, t5_cpu: bool = False, offload: bool = True) -> None:
        """FSDP shards are read straight to the compute device, rank by rank, so no rank ever holds a whole
        sharded model (see engine.parallel). Whole models go to the CPU first under `offload`, as in the official
        code; without it the DiT, and T5 unless `t5_cpu`, are read straight to this rank's device, where they stay
        for the whole run: a rank never holds a whole DiT or T5 in host memory (8 ranks of the 14B model would
        otherwise hold about 350 GB of host RAM until denoising)."""
        stage = self.reporter.stage
        plan, dev, prec = self.plan, self.device, self.precision
        started = time.monotonic()
        mesh = None
        if plan.cfg_size > 1:
            with self.runtime.waiting("creating the CFG-parallel device mesh"):
                self._cfg_mesh = cfg_mesh(dev, plan.world_size, plan.cfg_size)
        if plan.fsdp:
            with self.runtime.waiting("creating the FSDP device mesh"):
                mesh = fsdp_mesh(dev, plan.world_size)
        # T5 is sharded over every rank; under CFG-parallel the DiT over the ranks of this rank's half only.
        dit_mesh = self._cfg_mesh["group"] if self._cfg_mesh is not None else mesh
        with stage("load_text_encoder"):
            tokenizer = loaders.load_tokenizer(self.layout, self.task)
            # The official code builds T5 on the CPU and moves it to the GPU only to encode.
            text_encoder = self._whole_or_shard(
                TEXT_ENCODER, prec.t5, mesh if plan.t5_fsdp else None, on_device=not (offload or t5_cpu)
            )
        with stage("load_image_encoder"):
            image_encoder = loaders.load(IMAGE_ENCODER, self.layout, self.task, prec.clip, dev)
        with stage("load_vae"):
            vae = loaders.load(VAE, self.layout, self.task, prec.vae, dev)
        with stage("load_transformer"):
            log.info(f"Creating WanModel from {self.layout.root}")
            transformer = self._whole_or_shard(TRANSFORMER, prec.dit, dit_mesh if plan.dit_fsdp else None, not offload)
            keep_fp32_islands(transformer)
        self._models = Models(tokenizer, text_encoder, image_encoder, vae, transformer)
        delay_point("load", self.runtime.rank)
        # Ranks finish loading at different times (page cache, disk): they meet here with a limit of its own, so
        # the difference never counts against the first timed collective.
        self.runtime.rendezvous(
            f"waiting for the other ranks to finish loading (this rank took {time.monotonic() - started:.0f} s)",
            self.runtime.load_timeout_s,
            f"{LOAD_TIMEOUT_KNOB} (seconds)",
        )
        with stage("shard"):
            self.shard()
        heads = transformer.config.num_attention_heads
        log.info(f"Loaded the {self.layout.kind}-layout checkpoint (DiT: {heads} heads)")

    def _whole_or_shard(
        self, component: Component[M], dtype: torch.dtype, mesh: DeviceMesh | None, on_device: bool
    ) -> M:
        """This rank's FSDP shard of `component` on the compute device when there is a mesh, else the whole
        model, read tensor by tensor straight to the compute device if `on_device`, else to the CPU."""
        if mesh is not None:
            return load_shard(component, self.layout, self.task, dtype, self.device, mesh)
        return loaders.load(component, self.layout, self.task, dtype, self.device if on_device else torch.device("cpu"))

    def shard(self) -> None:
        """FSDP shards are made while loading; here the DiT becomes sequence- and CFG-parallel, takes its
        attention kernel, the official float64 time sinusoid and, with --compile, its compiled blocks."""
        plan, transformer = self.plan, self.models.transformer
        log.info(f"Parallelism: {plan.describe()}")
        use_float64_sinusoid(transformer)
        if plan.ulysses_size > 1:
            with self.runtime.waiting("creating the Ulysses process groups"):
                split = ulysses_split(plan)
            enable_ulysses(transformer, split)
        if self._cfg_mesh is not None:
            self.cfg_split = cfg_split(self._cfg_mesh)
        apply_attention(transformer, self.attention)
        log.info(f"Attention kernel: {self.attention.describe()}")
        if self.compile_dit:
            compile_blocks(transformer)

    def _waiting_if(self, collective: bool, what: str) -> AbstractContextManager[None]:
        """The peer watch's timed region around work that runs collectives (a sharded or sequence-parallel
        model's forward); nothing around work that does not, however long it takes."""
        return self.runtime.waiting(what) if collective else contextlib.nullcontext()

    # ---- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, req: GenerationRequest) -> torch.Tensor | None:
        """The decoded video [3, F, H, W] in [-1, 1] on rank 0; None on the other ranks.

        Rank 0's tail (the decode here, the save after) is its own: every rank leaves the process group once
        the latent is denoised (Runtime.finish), so no rank waits on the tail in a timed region, however long
        it takes, and none may see it as hung. A caller that keeps the group for more videos calls `sample`
        and `decode` itself, with no rank in a timed wait while rank 0 decodes."""
        latent = self.sample(req)
        self.runtime.finish()
        return self.decode(latent) if self.runtime.is_main else None

    @torch.no_grad()
    def sample(self, req: GenerationRequest) -> torch.Tensor:
        """The denoised latent [16, T, h, w], on every rank (a collective where the DiT or T5 is distributed)."""
        m, dev, stage = self.models, self.device, self.reporter.stage
        first = C.image_to_tensor(req.first_frame)
        last = C.match_last_frame(first, C.image_to_tensor(req.last_frame))
        lat_h, lat_w = latent_grid(self.task, req.size, tuple(first.shape[1:]))
        height, width = lat_h * self.task.vae_stride[1], lat_w * self.task.vae_stride[2]
        log.info(f"Generating {req.frame_num} frames at {width}x{height} (latent {lat_w}x{lat_h})")

        with stage("encode_text"), self._waiting_if(self.plan.t5_fsdp, "encoding the prompt (sharded T5)"):
            text_device = torch.device("cpu") if req.t5_cpu else dev
            m.text_encoder.to(text_device)
            ctx = C.encode_text(
                m.tokenizer, m.text_encoder, [req.prompt, req.neg_prompt], self.task.text_len, text_device
            ).to(dev, self.precision.dit)
            # On NCCL the all-gathers are only queued so far: a hung one must block here, inside the region.
            self.runtime.synchronize()
            reshard_root(m.text_encoder)  # a sharded T5 must not keep its shared embedding whole
            if req.offload and not req.t5_cpu:
                m.text_encoder.to("cpu")
        with stage("encode_image"):
            m.image_encoder.to(dev)
            image_size = m.image_encoder.config.image_size
            pixels = C.clip_pixels([first, last], image_size).to(dev, self.precision.clip)
            hidden = m.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
            # The penultimate block, as the official code; widened to float32 (not rounded to bf16), so the image
            # embedding's float32 LayerNorm sees the fp16 features' own values (see engine.precision).
            image_embeds = hidden[-2].float()
            if req.offload:
                m.image_encoder.to("cpu")
        with stage("encode_condition"):
            video = C.condition_video(first, last, req.frame_num, height, width)
            latent_cond = self._vae_encode(video.to(dev, self.precision.vae))
            condition = torch.cat([C.frame_mask(req.frame_num, lat_h, lat_w).to(dev), latent_cond])
            previewer = self._previewer(req)

        # The noise comes from a generator on the compute device, as in the official code.
        generator = torch.Generator(device=dev).manual_seed(req.seed)
        noise = torch.randn(
            16, C.latent_frames(req.frame_num), lat_h, lat_w, dtype=torch.float32, generator=generator, device=dev
        )
        scheduler, timesteps = make_scheduler(req.solver, req.steps, req.shift, self.task.num_train_timesteps)
        cond = Conditioning(condition, ctx[0:1], ctx[1:2], image_embeds)
        # Under CFG-parallel each rank runs one branch: there is no batch of 2.
        self.cfg = CfgBatch(req.cfg_batch and self.cfg_split is None, can_fall_back=not self.plan.distributed_dit)
        with stage("denoise"):
            m.transformer.to(dev)
            latent = denoise(
                m.transformer,
                noise,
                cond,
                scheduler,
                timesteps,
                req.guide_scale,
                self.cfg,
                autocast_dtype=self.precision.autocast,
                on_step=lambda i, n, s, lat: self._after_step(i, n, s, lat, previewer),
                waiting=self.runtime.waiting if self.plan.distributed_dit else None,
                cfg_split=self.cfg_split,
            )
            reshard_root(m.transformer)
            if previewer is not None:
                previewer.close()
            if req.offload:
                m.transformer.to("cpu")
                gc.collect()
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        return latent

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """The video [3, F, H, W] in [-1, 1] from a denoised latent (rank 0's work: it waits on no other rank)."""
        with self.reporter.stage("decode"):
            delay_point("decode", self.runtime.rank)
            return self._vae_decode(latent)

    def _previewer(self, req: GenerationRequest) -> LatentPreviewer | None:
        """Rank 0 only; the projection is fitted to this checkpoint's VAE once per job (see engine/preview.py)."""
        if not req.preview_every or not req.preview_dir or not self.runtime.is_main:
            return None
        projection = fit_projection(self._vae_encode, self.task.vae_stride[1], self.device)

        def written(step: int, path: Path) -> None:
            self.reporter.emit("preview", step=step, path=str(path))

        return LatentPreviewer(projection, req.preview_every, Path(req.preview_dir), written, self.device)

    def _after_step(
        self, i: int, n: int, seconds: float, latent: torch.Tensor, previewer: LatentPreviewer | None
    ) -> None:
        self.reporter.step(i, n, seconds)
        if previewer is not None:
            previewer(i, n, latent)

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.models.vae.config
        shape = (cfg.z_dim, 1, 1, 1)
        mean = torch.tensor(cfg.latents_mean, dtype=like.dtype, device=like.device).view(shape)
        inv_std = 1.0 / torch.tensor(cfg.latents_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, inv_std

    def _vae_encode(self, video: torch.Tensor) -> torch.Tensor:
        """[3, F, H, W] -> normalised latent mean [16, T, h, w], (mu - mean) * (1 / std) as the official VAE."""
        mu = self.models.vae.encode(video[None]).latent_dist.mode()[0].float()
        mean, inv_std = self._latent_stats(mu)
        return (mu - mean) * inv_std

    def _vae_decode(self, latent: torch.Tensor) -> torch.Tensor:
        vae = self.models.vae
        mean, inv_std = self._latent_stats(latent)
        z = (latent / inv_std + mean).to(self.precision.vae)
        return vae.decode(z[None], return_dict=False)[0][0].float().clamp(-1, 1)
