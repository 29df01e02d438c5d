"""One RTCPeerConnection per session: the client's offer in, a complete (non-trickle) answer out.

The client creates a recvonly video transceiver and the `"data"` channel; the server attaches its
track to the transceiver whose mid the client's track mapping names `main_video`, and never opens
a channel of its own (SDK 2.9.0 would replace its channel with it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

logger = logging.getLogger(__name__)

DATA_CHANNEL_LABEL = "data"
MAIN_VIDEO = "main_video"


class NegotiationError(Exception):
    """The offer cannot be answered (no video m-line, bad SDP)."""


@dataclass(frozen=True)
class TrackMapping:
    mid: str
    name: str
    kind: str = "video"
    direction: str = "recvonly"


class PeerLink:
    """Wraps the peer connection; callbacks run on the event loop."""

    def __init__(
        self,
        on_message: Callable[[str | bytes], None],
        on_open: Callable[[], None],
        on_gone: Callable[[str], None],
    ) -> None:
        self._on_message = on_message
        self._on_open = on_open
        self._on_gone = on_gone
        self._pc: Any = None
        self._channel: Any = None
        self.closed = False

    async def negotiate(
        self, offer_sdp: str, mapping: list[TrackMapping], track: MediaStreamTrack
    ) -> str:
        """Apply the offer, attach `track` by mid, and return the answer's SDP with candidates."""
        pc = RTCPeerConnection()
        self._pc = pc
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state_change)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, AssertionError) as exc:
            raise NegotiationError(f"invalid SDP offer: {exc}") from exc
        transceiver = _main_video_transceiver(pc, mapping)
        transceiver.direction = "sendonly"
        transceiver.sender.replaceTrack(track)
        answer = await pc.createAnswer()
        # aiortc gathers every candidate here, so the answer is complete: no trickle needed.
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    def send(self, text: str) -> bool:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return False
        channel.send(text)
        return True

    async def close(self) -> None:
        self.closed = True
        pc, self._pc = self._pc, None
        if pc is not None:
            await pc.close()

    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != DATA_CHANNEL_LABEL:
            logger.info("ignoring data channel %r (only %r is used)", channel.label, "data")
            return
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("close", lambda: self._gone("data channel closed"))
        self._on_open()

    async def _on_state_change(self) -> None:
        pc = self._pc
        if pc is not None and pc.connectionState in ("failed", "closed"):
            self._gone(f"peer connection {pc.connectionState}")

    def _gone(self, why: str) -> None:
        if not self.closed:
            self._on_gone(why)


def _main_video_transceiver(pc: Any, mapping: list[TrackMapping]) -> Any:
    videos = [t for t in pc.getTransceivers() if t.kind == "video"]
    mids = [m.mid for m in mapping if m.name == MAIN_VIDEO]
    for transceiver in videos:
        if transceiver.mid in mids:
            return transceiver
    if not mids and videos:
        return videos[0]  # no mapping for main_video: the offer's only video m-line is it
    raise NegotiationError(
        f"the offer has no video transceiver with the mid mapped to {MAIN_VIDEO} ({mids})"
    )
