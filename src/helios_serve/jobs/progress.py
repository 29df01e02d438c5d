"""Progress of a running job: per-step callbacks and saved chunks → monotonic 0-99 %."""

from __future__ import annotations

from collections.abc import Callable

from helios_serve.core.types import ChunkTimings, StepProgress
from helios_serve.errors import HeliosError
from helios_serve.jobs.models import JobNotFoundError, StaleAttemptError
from helios_serve.jobs.plan import JobPlan
from helios_serve.jobs.records import JobRecords


class ProgressTracker:
    """Each of the job's chunks is an equal share; within a chunk the denoising steps cover
    the part of the chunk's time the previous chunk spent denoising (the rest is VAE decode
    and encoding), so the number moves evenly whether the transformer or the decoder
    dominates. 100 % is only ever written by `complete`, once the MP4 is in place.

    `on_step` runs on the engine's thread; with prefetch its steps may be those of the chunk
    after the one being saved.
    """

    def __init__(
        self,
        store: JobRecords,
        job_id: str,
        plan: JobPlan,
        steps: list[int],
        chunks_done: int,
        *,
        attempt: int | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        """`on_lost` is called when a write finds the job deleted or taken over elsewhere."""
        self._store = store
        self._attempt = attempt
        self._on_lost = on_lost
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
            try:
                self._store.update_progress(
                    self._job_id, percent, self._frames, attempt=self._attempt
                )
            except (JobNotFoundError, StaleAttemptError):
                if self._on_lost is not None:  # deleted, or another attempt owns it: stop
                    self._on_lost()
            except HeliosError:  # e.g. the database is away for a moment: progress can wait
                pass

    def chunk_saved(self, index: int, timings: ChunkTimings) -> None:
        """Chunk `index` is on disk with its state: record it (the resume point moves on)."""
        self._done = index + 1 - self._plan.first_chunk
        self._frames = self._plan.frames_through(index)
        if timings.total_s > 0:
            self._denoise_share = min(1.0, timings.transformer_s / timings.total_s)
        self._last = max(self._last, self._percent(self._done))
        self._store.record_chunk(
            self._job_id, self._done, self._last, self._frames, attempt=self._attempt
        )

    def _percent(self, chunks: float) -> int:
        return min(99, int(chunks * 100 / self._plan.chunks))
