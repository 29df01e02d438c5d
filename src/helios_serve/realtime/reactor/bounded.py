"""Teardown that may hold up its caller for a bounded time only (a `stop_session`, a reset).

Past the bound the work goes on in the background, referenced here until it finishes, and the
caller carries on: a close that never returns (aiortc's `RTCPeerConnection.close()` has been
seen to, aiortc issue 283's class) must not hang the API or keep a session slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

_late: set[asyncio.Future[Any]] = set()
"""Work that outlived its bound, kept referenced until it finishes."""


async def finish_within(work: Awaitable[Any], timeout_s: float) -> bool:
    """Await `work` for up to `timeout_s`: True when it finished (its exception, if any, is
    raised here); False when it goes on in the background."""
    future = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({future}, timeout=timeout_s)
    if done:
        future.result()
        return True
    _late.add(future)
    future.add_done_callback(_late.discard)
    return False
