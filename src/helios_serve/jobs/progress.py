"""Progress of a running job: per-step callbacks and saved chunks → monotonic 0-99 %."""

from __future__ import annotations

import contextlib

from helios_serve.core.types import ChunkTimings, StepProgress
from helios_serve.errors import HeliosError
from helios_serve.jobs.plan import JobPlan
from helios_serve.jobs.store import JobStore


class ProgressTracker:
    """Each of the job's chunks is an equal share; within a chunk the denoising steps cover
    the part of the chunk's time the previous chunk spent denoising (the rest is VAE decode
    and encoding), so the number moves evenly whether the transformer or the decoder
    dominates. 100 % is only ever written by `complete`, once the MP4 is in place.

    `on_step` runs on the engine's thread; with prefetch its steps may be those of the chunk
    after the one being saved.
    """

    def __init__(
        self, store: JobStore, job_id: str, plan: JobPlan, steps: list[int], chunks_done: int
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._plan = plan
        self._steps = [max(1, s) for s in steps]
        self._done = chunks_done
        self._denoise_share = 0.5  # until a chunk has been timed
        self._frames = plan.frames_through(plan.first_chunk + chunks_done - 1)
        self._last = -1

    def on_step(self, progress: StepProgress) -> None:
        own = progress.chunk_index - self._plan.first_chunk
        index = min(max(own, self._done), self._plan.chunks - 1)
        within = self._denoise_share * progress.step / self._steps[index]
        percent = self._percent(index + within)
        if percent > self._last:
            self._last = percent
            # Deleted or finished under us: progress no longer matters.
            with contextlib.suppress(HeliosError):
                self._store.update_progress(self._job_id, percent, self._frames)

    def chunk_saved(self, index: int, timings: ChunkTimings) -> None:
        """Chunk `index` is on disk with its state: record it (the resume point moves on)."""
        self._done = index + 1 - self._plan.first_chunk
        self._frames = self._plan.frames_through(index)
        if timings.total_s > 0:
            self._denoise_share = min(1.0, timings.transformer_s / timings.total_s)
        self._last = max(self._last, self._percent(self._done))
        self._store.record_chunk(self._job_id, self._done, self._last, self._frames)

    def _percent(self, chunks: float) -> int:
        return min(99, int(chunks * 100 / self._plan.chunks))
