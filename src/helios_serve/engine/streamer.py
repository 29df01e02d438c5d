"""ChunkStreamer: one endless video stream's state, producing the next 33 frames per call.

State is bounded: the last 19 history latents, the anchor latent, prompt embeddings, the
stream's own RNG and scheduler copy (and, with prefetch, one denoised chunk waiting for its
decode). Nothing grows with the number of chunks.

On a GPU, frames are quantised to uint8 on the device (a quarter of the bytes to copy, no host
pass over 24 M floats) with exactly the host rounding of `to_uint8`. With
``next_chunk(prefetch=True)`` the VAE decode of chunk k runs on a second CUDA stream while chunk
k+1 is denoised: the same steps in a harness took a 14B [1,1,1] chunk on an H200 from 1.69 s
to 1.46 s (benchmarks/results/README.md, h200-14b).
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from helios_serve.core.settings import steps_in_chunk
from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import (
    LATENT_FRAMES_PER_CHUNK,
    ChunkResult,
    ChunkTimings,
    StepProgress,
    Variant,
)
from helios_serve.engine import conditioning as cond
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
from helios_serve.errors import InvalidInputError, StreamCancelledError

logger = logging.getLogger(__name__)

HISTORY_SIZES = (16, 2, 1)
"""Long, mid and short history windows in latent frames (19 kept in all)."""

ProgressCallback = Callable[[StepProgress], None]
CancelCheck = Callable[[], bool]


def validate_request(request: StreamRequest) -> None:
    """Reject what diffusers would crash on, with a message that says what to do."""
    if request.height % 16 or request.width % 16 or request.height <= 0 or request.width <= 0:
        raise InvalidInputError(
            f"height and width must be positive multiples of 16, got {request.height}x"
            f"{request.width}",
            param="size",
        )
    if request.image is not None and request.video is not None:
        raise InvalidInputError("give an image (I2V) or a video (V2V), not both", param="image")
    if request.video is not None and len(request.video) < 1:
        raise InvalidInputError("V2V needs a video of at least one frame", param="video")
    s = request.settings
    if s.num_inference_steps < 1 or not s.pyramid_steps or min(s.pyramid_steps) < 1:
        raise InvalidInputError("step counts must be at least 1", param="steps")
    if s.max_sequence_length < 1:
        raise InvalidInputError(
            "max_sequence_length must be at least 1", param="max_sequence_length"
        )


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


FramesFuture = Callable[[], npt.NDArray[np.uint8]]


class ChunkStreamer:
    """Generates one stream chunk by chunk; equal to diffusers' pipelines for the same seed."""

    @torch.no_grad()
    def __init__(
        self,
        model: LoadedModel,
        request: StreamRequest,
        prompt_encoder: cond.PromptEncoding | None = None,
        state: StreamState | None = None,
    ) -> None:
        """A new stream for `request`, or, with `state`, the stream that state was saved from
        (the request's size and settings must match it; its prompt, seed, image and video are
        then already in the state)."""
        validate_request(request)
        self.model = model
        self.request = request
        self.settings = request.settings
        pipe = model.pipe
        self._pipe = pipe
        self._device = model.device
        self._pyramid = model.variant is not Variant.BASE
        self._distilled = model.variant is Variant.DISTILLED
        if self._pyramid and len(self.settings.pyramid_steps) != pipe.scheduler.config.stages:
            raise InvalidInputError(
                f"this checkpoint samples in {pipe.scheduler.config.stages} pyramid stages; "
                f"got steps for {len(self.settings.pyramid_steps)}",
                param="pyramid_steps",
            )
        if self._pyramid:
            multiple = pipe.vae_scale_factor_spatial * 2**pipe.scheduler.config.stages
            if request.height % multiple or request.width % multiple:
                raise InvalidInputError(
                    f"a {pipe.scheduler.config.stages}-stage pyramid needs height and width in "
                    f"multiples of {multiple}, got {request.width}x{request.height} "
                    "(640x384 is the trained size)",
                    param="size",
                )
        self._scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        self._denoiser = Denoiser(pipe.transformer, self.settings)
        self._stats = cond.LatentStats.from_vae(pipe.vae, self._device)
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
        self._decode_stream = (
            torch.cuda.Stream(self._device) if self._device.type == "cuda" else None
        )
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

    # ----------------------------------------------------------------- conditioning
    def _encode(self, prompt: str) -> torch.Tensor:
        return self._prompts.encode(prompt, self.settings.max_sequence_length)

    def _zeros(self, frames: int) -> torch.Tensor:
        return torch.zeros(
            1,
            self._pipe.transformer.config.in_channels,
            frames,
            *self._latent_hw,
            device=self._device,
            dtype=torch.float32,
        )

    def _condition_start(self, request: StreamRequest) -> None:
        s, g = self.settings, self._generator
        if request.image is not None:
            anchor, fake = cond.encode_image(
                self._pipe,
                request.image,
                request.height,
                request.width,
                self._stats,
                g,
                self._device,
            )
            self._anchor = cond.noise_latents(anchor, s.image_noise_sigma, g)
            fake = cond.noise_latents(fake, s.video_noise_sigma, g)
            self._history = torch.cat([self._history[:, :, :-1], fake], dim=2)
        elif request.video is not None:
            anchor, latents = cond.encode_video(
                self._pipe,
                request.video,
                request.height,
                request.width,
                self._stats,
                g,
                self._device,
            )
            self._anchor = cond.noise_latents(anchor, s.image_noise_sigma, g)
            latents = cond.noise_video_latents(latents, s.video_noise_sigma, g)
            self._history = torch.cat([self._history, latents], dim=2)[:, :, -sum(HISTORY_SIZES) :]
            self._history = self._history.contiguous()

    @property
    def prompt(self) -> str:
        return self._blend.prompt

    @torch.no_grad()
    def set_prompt(self, prompt: str, blend_chunks: int = 1) -> None:
        """Switch prompts at the next chunk boundary, faded in over `blend_chunks` chunks."""
        self._blend.switch(prompt, self._encode(prompt), blend_chunks)

    @torch.no_grad()
    def set_image(self, image: cond.ImageInput, *, restart: bool = False) -> None:
        """Re-anchor on `image` from the next chunk; `restart` also resets history (hard cut)."""
        anchor, fake = cond.encode_image(
            self._pipe,
            image,
            self.request.height,
            self.request.width,
            self._stats,
            self._generator,
            self._device,
        )
        self._anchor = cond.noise_latents(anchor, self.settings.image_noise_sigma, self._generator)
        if restart:
            fake = cond.noise_latents(fake, self.settings.video_noise_sigma, self._generator)
            self._history = torch.cat([self._zeros(sum(HISTORY_SIZES) - 1), fake], dim=2)

    def clear_image(self) -> None:
        """Drop the anchor: the next chunk is anchored on its own first latent frame (as T2V)."""
        self._anchor = None

    def set_seed(self, seed: int) -> None:
        """Reseed the stream's generator; draws from the next chunk on use it."""
        self.seed = seed
        self._generator = torch.Generator("cpu").manual_seed(seed)

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
    ) -> ChunkResult:
        """Generate the next 33 frames as uint8 (T, H, W, 3).

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
        frames = self._start_decode(current.latents)
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
            extras={"peak_memory_mb": peak_memory_mb(self._device)},
            checkpoint=saved,
        )

    def _denoise_next(
        self, on_progress: ProgressCallback | None, should_cancel: CancelCheck | None
    ) -> _Denoised:
        if should_cancel is not None and should_cancel():
            raise StreamCancelledError("cancelled before the chunk started")
        start = time.perf_counter()
        index = self.chunk_index
        latents = self._denoise_chunk(self._step_callback(on_progress, should_cancel))
        prompt, seed = self.prompt, self.seed  # what made this chunk (a blend has moved on)
        self._commit_chunk(latents)
        if self._device.type == "cuda":  # this stream only: a decode may run on the other
            torch.cuda.current_stream(self._device).synchronize()
        # references and 5 KB of generator state: cheap enough to take for every chunk
        state = self.snapshot()  # before a prefetch moves the stream on
        return _Denoised(index, latents, prompt, seed, time.perf_counter() - start, state)

    def _start_decode(self, latents: torch.Tensor) -> FramesFuture:
        """Queue the decode of `latents`; the returned callable waits for its uint8 frames."""
        side = self._decode_stream
        if side is None:
            frames = self.decode_uint8(latents).numpy()
            return lambda: frames
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(side):
            latents.record_stream(side)
            on_device = self.decode_uint8_on_device(latents)
            host = torch.empty(on_device.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(on_device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(side)

        def wait() -> npt.NDArray[np.uint8]:
            done.synchronize()
            out: npt.NDArray[np.uint8] = host.numpy()
            return out

        return wait

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

    def _decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-decode one chunk's latents: (1, 3, T, H, W) in [-1, 1], in the VAE's dtype."""
        vae = self._pipe.vae
        scaled = latents.to(vae.dtype) / self._stats.std_inv + self._stats.mean
        video: torch.Tensor = vae.decode(scaled, return_dict=False)[0]
        return video

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> npt.NDArray[np.float32]:
        """VAE-decode one chunk's latents to float frames (T, H, W, 3) in [0, 1]."""
        frames: npt.NDArray[np.float32] = self._pipe.video_processor.postprocess_video(
            self._decode_video(latents), output_type="np"
        )[0]
        return frames

    @torch.no_grad()
    def decode_uint8_on_device(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode and quantise on the model's device: uint8 (T, H, W, 3), equal to
        ``to_uint8(self.decode(latents))``."""
        video = self._decode_video(latents)
        # the pipeline's own [-1, 1] -> [0, 1] mapping, kept on the device ("pt")
        unit = self._pipe.video_processor.postprocess_video(video, output_type="pt")[0]
        return quantize_uint8(unit.float()).permute(0, 2, 3, 1).contiguous()

    def decode_uint8(self, latents: torch.Tensor) -> torch.Tensor:
        """`decode_uint8_on_device`, copied to the host."""
        return self.decode_uint8_on_device(latents).cpu()


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: the GPU allocator's on CUDA, the process' peak RSS on CPU."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device)) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def to_uint8(frames: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """[0, 1] floats to uint8 with rounding (diffusers' export truncates; rounding is closer)."""
    out: npt.NDArray[np.uint8] = np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
    return out


def quantize_uint8(frames: torch.Tensor) -> torch.Tensor:
    """`to_uint8` in torch, bit for bit: float32 multiply, round half to even, clamp."""
    return torch.round(frames.float() * 255.0).clamp_(0, 255).to(torch.uint8)


def trimmed_frame_count(total_frames: int, temporal_factor: int = 4) -> int:
    """diffusers trims its final video to 4k+1 frames; this is how many it keeps."""
    return (total_frames - 1) // temporal_factor * temporal_factor + 1


__all__ = [
    "ChunkStreamer",
    "StreamRequest",
    "quantize_uint8",
    "to_uint8",
    "trimmed_frame_count",
    "validate_request",
]
