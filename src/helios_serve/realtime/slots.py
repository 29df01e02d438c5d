"""How many streams generate at once, whichever protocol runs them.

Reactor's sessions (`realtime.reactor.registry`) and vLLM-Omni's WebSocket streams
(`realtime.ws`) draw from one `SlotPool`; a slot given back is offered at once to whoever
waits for one (Reactor's PENDING sessions). `StreamHost` is what any real-time protocol needs
to run streams here: the engine, the knobs, the upscaler and the pool.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from helios_serve.core.protocols import Engine, Upscaler
from helios_serve.core.requests import step_cache_for
from helios_serve.core.settings import PRESETS
from helios_serve.errors import UnavailableError
from helios_serve.realtime.config import RealtimeConfig
from helios_serve.realtime.driver import StreamOptions


class SessionLimitError(UnavailableError):
    """Every slot is taken (503 with Retry-After; a WebSocket stream is told `busy`)."""

    code = "session_limit_reached"


class SlotPool:
    """`capacity` slots, each held by one generating stream under an opaque token."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._taken: set[str] = set()
        self._on_free: list[Callable[[], None]] = []

    @property
    def in_use(self) -> int:
        return len(self._taken)

    @property
    def full(self) -> bool:
        return self.in_use >= self.capacity

    def take(self) -> str:
        """A slot's token; `SessionLimitError` when every slot is taken (never waits)."""
        if self.full:
            raise SessionLimitError(
                f"all {self.capacity} session slots are in use; try again later"
            )
        token = uuid.uuid4().hex
        self._taken.add(token)
        return token

    def give_back(self, token: str) -> None:
        """Free the slot (safe twice) and tell whoever waits for one."""
        if token in self._taken:
            self._taken.discard(token)
            for listener in self._on_free:
                listener()

    def when_free(self, listener: Callable[[], None]) -> None:
        """Call `listener` (synchronously) each time a slot is given back."""
        self._on_free.append(listener)


@dataclass(frozen=True)
class StreamHost:
    """The engine, the knobs, the session upscaler and the slots of this server's streams."""

    engine: Engine
    config: RealtimeConfig
    upscale: Upscaler
    slots: SlotPool

    @classmethod
    def build(cls, engine: Engine, config: RealtimeConfig, upscale: Upscaler) -> StreamHost:
        return cls(engine, config, upscale, SlotPool(config.max_sessions))

    def default_options(self) -> StreamOptions:
        """The stream a session opens unless it asks otherwise: the served variant's preset at
        the model's default size (or the configured ones)."""
        info = self.engine.info
        settings = self.config.settings or PRESETS[info.variant].with_overrides(
            max_sequence_length=info.default_max_sequence_length,
            step_cache=step_cache_for(info, None),  # the server's --step-cache
        )
        return StreamOptions(
            width=self.config.width or info.default_width,
            height=self.config.height or info.default_height,
            settings=settings,
            prompt_blend_chunks=self.config.prompt_blend_chunks,
        )
