"""Where a change lands: the first chunk that a new prompt, image or strength applies to.

Chunks already on screen are fixed; every chunk after them can be dropped and made again
from the stream state kept at its boundary. Two policies (`extra_args.latency`):

- `low` (default): the change lands at the first chunk not yet on screen, always. If its
  remake is not ready when the chunk on screen ends, the last frame holds until it is: the
  change shows about one chunk's generation time after the command, at the cost of a brief
  hold when the command came late in a chunk.
- `smooth`: never a hold for a change. It lands at the first chunk not on screen when the
  remake will be ready in time, else at the one after (the chunk due next plays as made).

A paused session changes nothing already made: its commands apply when it resumes, as before.
"""

from __future__ import annotations

from enum import StrEnum


class LatencyMode(StrEnum):
    LOW = "low"
    SMOOTH = "smooth"


def landing_chunk(
    mode: LatencyMode,
    committed: int,
    claimed: int,
    to_boundary: float | None,
    ready_in: float | None,
) -> int:
    """The first chunk a change applies to; chunks from it on that were made are remade.

    `committed`: chunks on screen; `claimed`: chunks made or being made; `to_boundary`:
    seconds until chunk `committed` is due (None: nobody is playing); `ready_in`: seconds a
    remade chunk needs from now (None: not known yet).
    """
    if claimed <= committed:
        return claimed  # nothing made past the screen: the next chunk made takes it
    if mode is LatencyMode.LOW:
        return committed
    if to_boundary is None or ready_in is None or ready_in <= to_boundary:
        return committed  # the remake is ready before it is due: no hold
    return committed + 1
