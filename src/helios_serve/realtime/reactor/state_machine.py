"""Pure session state: every transition returns a new state or raises `CommandError`.

No I/O and no mutation, so a rejected command leaves the state (and its `state` snapshot)
exactly as it was. The generation loop drives the chunk side through `claim_chunk` (the moment a
chunk's prompt is fixed), `complete_chunk` and `chunk_shown`; commands drive the rest.

A claim is kept until its chunk is on screen, with what it consumed, so `rewind` can undo the
claims of chunks made but not yet shown: a change then lands on them as if they had never been
made (the session drops and remakes them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from helios_serve.realtime.reactor.protocol import CommandError

DEFAULT_IMAGE_STRENGTH = 0.5
SR_LABELS = {1: "off", 2: "2x", 4: "4x"}


@dataclass(frozen=True, eq=False)
class ReferenceImage:
    """A decoded reference image (uint8 H×W×3)."""

    pixels: npt.NDArray[np.uint8]

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class ChunkPlan:
    """What the loop must apply before generating chunk `index`."""

    index: int
    prompt: str
    prompt_changed: bool
    epoch: int
    sr_scale: int


@dataclass(frozen=True)
class Claim:
    """What `claim_chunk` changed for chunk `index`, so that `rewind` can undo it."""

    index: int
    consumed: tuple[tuple[int, str], ...]
    previous_prompt: str | None
    completed: int
    frames: int


@dataclass(frozen=True)
class SessionState:
    started: bool = False
    paused: bool = False
    prompts: tuple[tuple[int, str], ...] = ()
    """Scheduled prompts not yet claimed, sorted by chunk."""
    current_prompt: str | None = None
    image: ReferenceImage | None = None
    image_version: int = 0
    """Bumped by every image change so the loop knows to re-anchor the stream."""
    image_strength: float = DEFAULT_IMAGE_STRENGTH
    sr_scale: int = 1
    seed: int = -1
    next_chunk: int = 0
    """Chunks claimed by the loop (their prompts are fixed); prompts may go at this index on."""
    completed: int = 0
    frames: int = 0
    epoch: int = 0
    """Bumped by reset: results of an older epoch are stale and dropped."""
    shown: int = 0
    """Chunks whose first frame went to the client: they can no longer change."""
    claims: tuple[Claim, ...] = ()
    """Claims of chunks not yet shown, oldest first."""

    @property
    def running(self) -> bool:
        return self.started and not self.paused

    @property
    def has_prompt(self) -> bool:
        return self.current_prompt is not None or any(c <= self.next_chunk for c, _ in self.prompts)

    def snapshot(self) -> dict[str, Any]:
        """The `state` event payload."""
        return {
            "started": self.started,
            "running": self.running,
            "paused": self.paused,
            "image_set": self.image is not None,
            "current_chunk": self.completed,
            "current_frame": self.frames,
            "current_prompt": self.current_prompt if self.started else None,
            "image_strength": self.image_strength,
            "scheduled_prompts": [{"prompt": p, "chunk": c} for c, p in self.prompts],
            "sr_scale": SR_LABELS[self.sr_scale],
            "seed": self.seed,
        }


def _with_prompt(state: SessionState, chunk: int, prompt: str) -> SessionState:
    kept = [(c, p) for c, p in state.prompts if c != chunk]
    return replace(state, prompts=tuple(sorted([*kept, (chunk, prompt)])))


def set_prompt(state: SessionState, prompt: str) -> SessionState:
    """Before start → chunk 0; paused → the chunk resume generates; running → the next one."""
    return _with_prompt(state, state.next_chunk, prompt)


def first_changeable(state: SessionState) -> int:
    """The first chunk a command may still change: running, anything not on screen (made
    chunks are remade); paused or failed, the next chunk to be made."""
    return state.shown if state.running else state.next_chunk


def check_schedulable(state: SessionState, chunk: int) -> None:
    """Refuse a prompt scheduled on a chunk that can no longer change."""
    free = first_changeable(state)
    if state.started and chunk < free:
        raise CommandError(
            "schedule_prompt",
            f"chunk_already_generated: chunk {chunk} is generated; the next free is {free}",
        )


def schedule_prompt(state: SessionState, prompt: str, chunk: int) -> SessionState:
    """Queue `prompt` at `chunk` (not yet claimed: `rewind` to it first if it was)."""
    if state.started and chunk < state.next_chunk:
        raise CommandError(
            "schedule_prompt",
            f"chunk_already_generated: chunk {chunk} is generated; the next free is "
            f"{state.next_chunk}",
        )
    return _with_prompt(state, chunk, prompt)


def set_image(state: SessionState, image: ReferenceImage) -> SessionState:
    return replace(state, image=image, image_version=state.image_version + 1)


def clear_image(state: SessionState) -> SessionState:
    if state.image is None:
        return state
    return replace(state, image=None, image_version=state.image_version + 1)


def set_conditioning(state: SessionState, prompt: str, image: ReferenceImage) -> SessionState:
    return set_image(set_prompt(state, prompt), image)


def set_image_strength(state: SessionState, strength: float) -> SessionState:
    if not 0.0 <= strength <= 1.0:
        raise CommandError("set_image_strength", "invalid_field: 'image_strength' must be in 0..1")
    return replace(state, image_strength=strength)


def set_sr_scale(state: SessionState, scale: int) -> SessionState:
    if scale not in SR_LABELS:
        raise CommandError("set_sr_scale", "invalid_field: 'sr_scale' must be 'off', '2x' or '4x'")
    return replace(state, sr_scale=scale)


def set_seed(state: SessionState, seed: int) -> SessionState:
    return replace(state, seed=seed)


def first_prompt(state: SessionState) -> str | None:
    """The prompt chunk 0 would use (None when start must be refused)."""
    return next((p for c, p in state.prompts if c == 0), None)


def start(state: SessionState) -> SessionState:
    if state.started:
        raise CommandError("start", "already_started: send reset first, or resume if paused")
    if first_prompt(state) is None:
        raise CommandError("start", "no_prompt: set a prompt (or schedule one at chunk 0) first")
    return replace(state, started=True, paused=False)


def pause(state: SessionState) -> SessionState:
    if not state.running:
        raise CommandError("pause", "not_running")
    return replace(state, paused=True)


def resume(state: SessionState) -> SessionState:
    if not (state.started and state.paused):
        raise CommandError("resume", "not_paused")
    return replace(state, paused=False)


def reset(state: SessionState) -> SessionState:
    """Initial state; the settings (seed, strength, SR scale) stay as the client chose them."""
    return SessionState(
        image_strength=state.image_strength,
        sr_scale=state.sr_scale,
        seed=state.seed,
        image_version=state.image_version + 1,
        epoch=state.epoch + 1,
    )


def claim_chunk(state: SessionState) -> tuple[SessionState, ChunkPlan]:
    """Fix chunk `next_chunk`'s prompt: the latest scheduled at or before it takes over."""
    index = state.next_chunk
    due = [(c, p) for c, p in state.prompts if c <= index]
    prompt = due[-1][1] if due else state.current_prompt
    if prompt is None:
        raise CommandError("start", "no_prompt")
    changed = prompt != state.current_prompt
    claim = Claim(index, tuple(due), state.current_prompt, state.completed, state.frames)
    new = replace(
        state,
        prompts=tuple((c, p) for c, p in state.prompts if c > index),
        current_prompt=prompt,
        next_chunk=index + 1,
        claims=(*state.claims, claim),
    )
    return new, ChunkPlan(index, prompt, changed, state.epoch, state.sr_scale)


def complete_chunk(state: SessionState, frames: int) -> SessionState:
    return replace(state, completed=state.completed + 1, frames=state.frames + frames)


def chunk_shown(state: SessionState, index: int) -> SessionState:
    """Chunk `index` started playing: it and every chunk before it are fixed."""
    shown = max(state.shown, index + 1)
    return replace(state, shown=shown, claims=tuple(c for c in state.claims if c.index >= shown))


def rewind(state: SessionState, chunk: int) -> SessionState:
    """Undo the claims of chunks from `chunk` on (not on screen): the next chunk is `chunk`
    again, with the prompts those claims consumed scheduled as they were."""
    undone = [c for c in state.claims if c.index >= chunk]
    if not undone:
        return state
    prompts = dict(state.prompts)
    for claim in undone:
        prompts.update(claim.consumed)
    first = undone[0]
    return replace(
        state,
        prompts=tuple(sorted(prompts.items())),
        current_prompt=first.previous_prompt,
        next_chunk=first.index,
        completed=first.completed,
        frames=first.frames,
        claims=tuple(c for c in state.claims if c.index < chunk),
    )


def fail_chunk(state: SessionState) -> SessionState:
    """A chunk that failed to generate: give its index back and pause, so resume retries it."""
    return replace(rewind(state, state.completed), next_chunk=state.completed, paused=True)
