"""vLLM-Omni's `WS /v1/realtime/video` through a gateway: relayed to a worker with a free slot.

The gateway reads the client's `session.start`, offers it to the alive session workers in turn
(a worker whose slots are taken answers `error` `busy`; the next one is tried), then copies
messages both ways until either side closes. The stream itself (fragmented MP4) is the
worker's; a gateway holds no engine state, so any gateway can take the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from helios_serve.cluster.registry import SessionHost, WorkerRegistry

logger = logging.getLogger(__name__)
PATH = "/v1/realtime/video"
START_TIMEOUT_S = 10.0


async def _offer(host: SessionHost, start: str) -> tuple[ClientConnection, str] | None:
    """Open the worker's socket (with the worker's own credential: the client's key was
    checked here and goes no further) and send `start`; None when it is busy or
    unreachable."""
    url = host.url.replace("http://", "ws://").replace("https://", "wss://") + PATH
    credentials = {"Authorization": f"Bearer {host.token}"} if host.token else {}
    try:
        upstream = await connect(
            url, max_size=None, open_timeout=10, additional_headers=credentials
        )
    except (OSError, WebSocketException):
        return None
    await upstream.send(start)
    try:
        first = await asyncio.wait_for(upstream.recv(), 60)
    except (TimeoutError, WebSocketException):
        await upstream.close()
        return None
    reply = first if isinstance(first, str) else first.decode()
    with contextlib.suppress(ValueError, AttributeError):
        if json.loads(reply).get("code") == "busy":
            await upstream.close()
            return None
    return upstream, reply


async def _pipe(client: WebSocket, upstream: ClientConnection) -> None:
    async def down() -> None:
        async for message in upstream:
            if isinstance(message, bytes):
                await client.send_bytes(message)
            else:
                await client.send_text(message)

    async def up() -> None:
        while True:
            received = await client.receive()
            if received["type"] == "websocket.disconnect":
                return
            if received.get("text") is not None:
                await upstream.send(received["text"])
            elif received.get("bytes") is not None:
                await upstream.send(received["bytes"])

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def build_ws_relay(registry: WorkerRegistry, worker_timeout_s: float) -> APIRouter:
    router = APIRouter()

    @router.websocket(PATH)
    async def relay(client: WebSocket) -> None:
        await client.accept()
        try:
            start = await asyncio.wait_for(client.receive_text(), START_TIMEOUT_S)
        except (TimeoutError, WebSocketDisconnect, KeyError):
            with contextlib.suppress(RuntimeError):
                await client.close(1008)
            return
        hosts = await asyncio.to_thread(registry.session_hosts, worker_timeout_s)
        for host in hosts:
            offered = await _offer(host, start)
            if offered is None:
                continue
            upstream, reply = offered
            try:
                await client.send_text(reply)
                await _pipe(client, upstream)
            except (WebSocketDisconnect, WebSocketException) as exc:
                logger.info("realtime video relay to %s ended: %s", host.worker, exc)
            finally:
                await upstream.close()
                with contextlib.suppress(RuntimeError):
                    await client.close()
            return
        busy = {"type": "error", "code": "busy", "message": "every worker's slots are taken"}
        await client.send_text(json.dumps(busy))
        await client.close(1013)

    return router
