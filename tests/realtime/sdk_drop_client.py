"""Reactor's Python client (`reactor-sdk` 1.13, unmodified) for the network-drop test, run as its
own process inside a network namespace (`netns.py`) so the test can cut its network.

    python -m tests.realtime.sdk_drop_client URL

Prints one JSON object per line on stdout: `{"event": ...}`. Reads commands on stdin, one per
line: `reconnect` (the client's `reconnect()`; prints `reconnected` or `reconnect_failed`),
`quit` (disconnect and exit). Everything the SDK hands its callbacks is reported: `status`,
`error`, `message` (`state`, `chunk_complete`, ...) and, every 10 frames, `frames` with the count.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any

import numpy as np
from reactor_sdk import Reactor

PROMPT = "a lighthouse on a rocky coast at dusk, waves breaking below, wide shot"


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


async def commands() -> asyncio.Queue[str]:
    """stdin lines, read on a thread (the loop must not block)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.strip())
        loop.call_soon_threadsafe(queue.put_nowait, "quit")

    threading.Thread(target=pump, daemon=True).start()
    return queue


async def main(url: str) -> None:
    client = Reactor("helios", local=True, api_url=url)
    frames = 0

    def on_frame(frame: np.ndarray[Any, Any]) -> None:
        nonlocal frames
        frames += 1
        if frames % 10 == 0:
            say("frames", count=frames, shape=list(frame.shape))

    client.on_message(lambda msg: say("message", type=msg.get("type"), data=msg.get("data")))
    client.on_status(lambda status: say("status", status=str(status)))
    client.on_error(lambda error: say("error", error=str(error)))
    queue = await commands()
    await client.connect()
    client.track("main_video").on_frame(on_frame)
    say("connected", session_id=client.session_id)
    reply = await client.send_command("set_prompt", {"prompt": PROMPT})
    say("reply", reply=reply)
    reply = await client.send_command("start", {})
    say("reply", reply=reply)
    while (command := await queue.get()) != "quit":
        if command == "reconnect":
            try:
                await client.reconnect()
            except Exception as exc:  # reported: the test decides whether it should have failed
                say("reconnect_failed", error=f"{type(exc).__name__}: {exc}")
            else:
                say("reconnected", session_id=client.session_id, status=str(client.status))
    try:
        await asyncio.wait_for(client.disconnect(), 10)
    finally:
        client.close()
        say("closed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
