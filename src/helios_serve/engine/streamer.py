"""ChunkStreamer: one endless video stream's state, producing the next 33 frames per call.

State is bounded: the last 19 history latents, the anchor latent, prompt embeddings, the
stream's own RNG and scheduler copy (and, with prefetch, one denoised chunk waiting for its
decode). Nothing grows with the number of chunks.

On a GPU, frames are quantised to uint8 on the device (a quarter of the bytes to copy, no host
pass over 24 M floats) with exactly the host rounding of `to_uint8`. With
``next_chunk(prefetch=True)`` the VAE decode of chunk k runs on a second CUDA stream while chunk
k+1 is denoised: the same steps in a harness took a 14B [1,1,1] chunk on an H200 from 1.69 s
to 1.46 s (benchmarks/results/README.md, h200-14b).

What a stream is conditioned on, and the calls that change it, are its base class
(`stream_conditioning.StreamConditioning`); what a request must satisfy is `stream_checks`.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from helios_serve.core.settings import SamplingSettings, steps_in_chunk
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import (
    LATENT_FRAMES_PER_CHUNK,
    ChunkResult,
    ChunkTimings,
    StepProgress,
    Variant,
)
from helios_serve.engine import compact_dit
from helios_serve.engine import conditioning as cond
from helios_serve.engine.chunk_decoding import (
    SESSION_DECODE_GROUPS,
    CancelCheck,
    ChunkDecoding,
    FramesHandler,
    decode_groups_for,
)
from helios_serve.engine.guidance import guidance_passes
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.sampling import (
    ChunkInputs,
    Denoiser,
    history_indices,
    initial_noise,
    sample_base,
    sample_pyramid,
)
from helios_serve.engine.state import BlendState, StreamIdentity, StreamState
from helios_serve.engine.step_cache import ChunkStepCache, chunk_scope, stream_step_cache
from helios_serve.engine.stream_checks import check_fits, validate_request
from helios_serve.engine.stream_conditioning import HISTORY_SIZES, StreamConditioning
from helios_serve.engine.vae_decode import ChunkDecoder, quantize_uint8, to_uint8
from helios_serve.errors import StreamCancelledError

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[StepProgress], None]


@dataclass
class _Denoised:
    """A chunk whose latents are done (and committed to the history) but not yet decoded."""

    index: int
    latents: torch.Tensor
    prompt: str
    seed: int
    denoise_s: float
    state: StreamState
    """The stream right after this chunk."""
    extras: dict[str, float]


class ChunkStreamer(StreamConditioning):
    """Generates one stream chunk by chunk; equal to diffusers' pipelines for the same seed."""

    @torch.no_grad()
    def __init__(
        self,
        model: LoadedModel,
        request: StreamRequest,
        prompt_encoder: cond.PromptEncoding | None = None,
        state: StreamState | None = None,
        decoder: ChunkDecoder | None = None,
        decode_groups: Sequence[int] | None = None,
    ) -> None:
        """A new stream for `request`, or, with `state`, the stream that state was saved from
        (the request's size and settings must match it; its prompt, seed, image and video are
        then already in the state). `decoder`: how chunks decode (default: the model's).
        `decode_groups`: the latent frames after the first that each decoder call takes, for
        every chunk, asked for progressively or not, so both give the same bytes (default: the
        decoder's, frames 1..8 in one call; a partition changes frames by float rounding)."""
        validate_request(request)
        self.model = model
        self.request = request
        self.settings = request.settings
        pipe = model.pipe
        self._pipe = pipe
        self._device = model.device
        self._pyramid = model.variant is not Variant.BASE
        self._distilled = model.variant is Variant.DISTILLED
        check_fits(model, request)
        self._scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        self._denoiser, self._step_cache = _denoiser_for(model, self.settings)
        self._stats = cond.LatentStats.from_vae(pipe.vae, self._device)
        self.decoding = ChunkDecoding(model, self._stats, decoder, decode_groups)
        self._prompts: cond.PromptEncoding = prompt_encoder or cond.PromptEncoder(
            pipe, self._device
        )
        self._indices = {
            k: v.to(self._device)
            for k, v in history_indices(LATENT_FRAMES_PER_CHUNK, HISTORY_SIZES).items()
        }
        self._latent_hw = (
            request.height // pipe.vae_scale_factor_spatial,
            request.width // pipe.vae_scale_factor_spatial,
        )
        self.identity = StreamIdentity.of(
            model.variant.value, request.height, request.width, self.settings
        )
        self._negative = (
            self._encode(self.settings.negative_prompt) if self.settings.uses_cfg else None
        )
        self._ahead: _Denoised | None = None
        self._anchor: torch.Tensor | None = None
        if state is not None:
            self._restore(state)
            return
        self.chunk_index = 0
        self.seed = request.seed
        self._generator = torch.Generator("cpu").manual_seed(request.seed)
        self._blend = cond.PromptBlend(request.prompt, self._encode(request.prompt))
        self._history = self._zeros(sum(HISTORY_SIZES))
        self._condition_start(request)

    def _restore(self, state: StreamState) -> None:
        state.identity.check_continues(self.identity)
        self.chunk_index = state.chunk_index
        self.seed = state.seed
        self._generator = torch.Generator("cpu")
        self._generator.set_state(state.generator_state.cpu())
        self._blend = cond.PromptBlend(state.prompt, self._encode(state.prompt))
        if state.blend is not None:
            self._blend.resume_fade(state.blend.start, state.blend.chunks, state.blend.done)
        self._history = state.history.to(self._device, torch.float32)
        self._anchor = (
            None if state.anchor is None else state.anchor.to(self._device, torch.float32)
        )

    def snapshot(self) -> StreamState:
        """The stream's state now, between chunks (after any prefetched chunk)."""
        fade = self._blend.fade()
        return StreamState(
            identity=self.identity,
            chunk_index=self.chunk_index,
            seed=self.seed,
            prompt=self._blend.prompt,
            history=self._history,
            anchor=self._anchor,
            generator_state=self._generator.get_state(),
            blend=None if fade is None else BlendState(*fade),
        )

    # ----------------------------------------------------------------- generation
    def steps_in_chunk(self, index: int | None = None) -> int:
        chunk = self.chunk_index if index is None else index
        return steps_in_chunk(self.model.variant, self.settings, chunk)

    @property
    def chunks_ahead(self) -> int:
        """Chunks denoised by a prefetch but not yet returned (0 or 1)."""
        return 0 if self._ahead is None else 1

    @torch.no_grad()
    def next_chunk(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        *,
        prefetch: bool = False,
        checkpoint: bool = False,
        on_frames: FramesHandler | None = None,
    ) -> ChunkResult:
        """Generate the next 33 frames as uint8 (T, H, W, 3).

        With `on_frames`, the frames are also handed to it group by group as they are decoded
        (on this thread), and the decode stops between groups once `should_cancel()` holds.

        With `checkpoint`, the result carries the stream's state right after this chunk as
        bytes (`StreamState.to_bytes`): a stream opened from it makes the chunks that follow.

        With `prefetch`, the chunk after this one is denoised while this one decodes (on a
        second CUDA stream on a GPU), and the next call only decodes it. For callers that will
        ask for that chunk anyway (jobs, offline generation): conditioning changes made in
        between (prompt, image, seed) apply from the chunk after the prefetched one, and
        progress callbacks report the prefetched chunk's steps under its own index.
        """
        start = time.perf_counter()
        current = self._ahead or self._denoise_next(on_progress, should_cancel)
        self._ahead = None
        decode_start = time.perf_counter()
        if on_frames is not None:
            result = self.decoding.progressively(
                current.index, current.latents, on_frames, should_cancel
            )
            if prefetch:
                self._ahead = self._denoise_next(on_progress, should_cancel)
        else:
            frames = self.decoding.start(current.latents)
            if prefetch:
                self._ahead = self._denoise_next(on_progress, should_cancel)
            result = frames()
        end = time.perf_counter()
        saved = current.state.to_bytes() if checkpoint else None
        return ChunkResult(
            index=current.index,
            frames=result,
            timings=ChunkTimings(current.denoise_s, end - decode_start, end - start),
            prompt=current.prompt,
            seed=current.seed,
            extras={"peak_memory_mb": peak_memory_mb(self._device), **current.extras},
            checkpoint=saved,
        )

    def _denoise_next(
        self, on_progress: ProgressCallback | None, should_cancel: CancelCheck | None
    ) -> _Denoised:
        if should_cancel is not None and should_cancel():
            raise StreamCancelledError("cancelled before the chunk started")
        start = time.perf_counter()
        index = self.chunk_index
        with chunk_scope(self._step_cache) as cached:  # its state ends with the chunk
            latents = self._denoise_chunk(self._step_callback(on_progress, should_cancel))
        prompt, seed = self.prompt, self.seed  # what made this chunk (a blend has moved on)
        self._commit_chunk(latents)
        if self._device.type == "cuda":  # this stream only: a decode may run on the other
            torch.cuda.current_stream(self._device).synchronize()
        # references and 5 KB of generator state: cheap enough to take for every chunk
        state = self.snapshot()  # before a prefetch moves the stream on
        extras = {} if cached is None else cached.as_extras()
        return _Denoised(index, latents, prompt, seed, time.perf_counter() - start, state, extras)

    @torch.no_grad()
    def next_chunk_float(
        self,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
    ) -> tuple[npt.NDArray[np.float32], ChunkTimings]:
        """Generate the next chunk as float32 frames in [0, 1] (diffusers' `output_type="np"`)."""
        if self._ahead is not None:
            raise RuntimeError("next_chunk_float after a prefetch: use next_chunk")
        start = time.perf_counter()
        current = self._denoise_next(on_progress, should_cancel)
        denoised = time.perf_counter()
        frames = self.decode(current.latents)
        end = time.perf_counter()
        return frames, ChunkTimings(denoised - start, end - denoised, end - start)

    def _step_callback(
        self, on_progress: ProgressCallback | None, should_cancel: CancelCheck | None
    ) -> Callable[[int, int, int], None]:
        index = self.chunk_index

        def on_step(stage: int, step: int, total: int) -> None:
            if on_progress is not None:
                on_progress(StepProgress(index, step, total, stage))
            if should_cancel is not None and step < total and should_cancel():
                raise StreamCancelledError(f"cancelled during chunk {index}")

        return on_step

    def _denoise_chunk(self, on_step: Callable[[int, int, int], None]) -> torch.Tensor:
        long, mid, one = self._history.split(HISTORY_SIZES, dim=2)
        prefix = self._anchor if self._anchor is not None else self._zeros(1)
        inputs = ChunkInputs(
            history_short=torch.cat([prefix, one], dim=2),
            history_mid=mid,
            history_long=long,
            prompt_embeds=self._blend.next_chunk_embeds(),
            negative_embeds=self._negative,
            indices=self._indices,
        )
        channels = self._pipe.transformer.config.in_channels
        noise = initial_noise(
            (1, channels, LATENT_FRAMES_PER_CHUNK, *self._latent_hw), self._generator, self._device
        )
        patch = tuple(self._pipe.transformer.config.patch_size)
        with compact_dit.engaged(self._pipe.transformer):  # the engine's forward, not diffusers'
            return self._sample(noise, inputs, patch, on_step)

    def _sample(
        self,
        noise: torch.Tensor,
        inputs: ChunkInputs,
        patch: tuple[int, ...],
        on_step: Callable[[int, int, int], None],
    ) -> torch.Tensor:
        if not self._pyramid:
            return sample_base(
                self._denoiser, self._scheduler, noise, inputs, self._generator, patch, on_step
            )
        amplify = self.settings.amplify_first_chunk and self.chunk_index == 0
        return sample_pyramid(
            self._denoiser,
            self._scheduler,
            noise,
            inputs,
            self._generator,
            patch,
            distilled=self._distilled,
            amplify=amplify,
            on_step=on_step,
        )

    def _commit_chunk(self, latents: torch.Tensor) -> None:
        if self._anchor is None:
            self._anchor = latents[:, :, 0:1].clone()
        self._history = torch.cat([self._history[:, :, LATENT_FRAMES_PER_CHUNK:], latents], dim=2)
        self.chunk_index += 1

    @property
    def decoder(self) -> ChunkDecoder:
        return self.decoding.decoder

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> npt.NDArray[np.float32]:
        """VAE-decode one chunk's latents to float frames (T, H, W, 3) in [0, 1]."""
        return self.decoding.float_frames(latents)

    @torch.no_grad()
    def decode_uint8(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode and quantise: uint8 (T, H, W, 3) on the host, equal to
        ``to_uint8(self.decode(latents))``."""
        return self.decoding.uint8_on_device(latents).cpu()


def _denoiser_for(
    model: LoadedModel, settings: SamplingSettings
) -> tuple[Denoiser, ChunkStepCache | None]:
    """The stream's denoiser: its guidance passes (on this device, batched, or on the ranks of
    a CFG-parallel layout) and, where the settings ask for one, its step cache."""
    transformer = model.pipe.transformer
    on_ranks = model.parallel.guidance if model.parallel is not None else None
    denoiser = Denoiser(transformer, settings, on_ranks or guidance_passes(model.guidance))
    cache = stream_step_cache(transformer, settings, model.variant, denoiser.guidance)
    if cache is not None:
        denoiser.on_stage = cache.begin_stage
    return denoiser, cache


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: the GPU allocator's on CUDA, the process' peak RSS on CPU."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def trimmed_frame_count(total_frames: int, temporal_factor: int = 4) -> int:
    """diffusers trims its final video to 4k+1 frames; this is how many it keeps."""
    return (total_frames - 1) // temporal_factor * temporal_factor + 1


__all__ = [
    "SESSION_DECODE_GROUPS",
    "CancelCheck",
    "ChunkStreamer",
    "FramesHandler",
    "StreamRequest",
    "decode_groups_for",
    "quantize_uint8",
    "to_uint8",
    "trimmed_frame_count",
    "validate_request",
]
