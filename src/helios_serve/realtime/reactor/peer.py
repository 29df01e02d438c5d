"""One RTCPeerConnection per client connection: the offer in, a complete answer out.

The client creates a recvonly video transceiver and its channels: `"data"` (every client) and
`"control"` (the newer clients); the server attaches its track to the transceiver whose mid the
client's track mapping names `main_video`, and never opens a channel of its own (SDK 2.9.0 would
replace its channel with it). The answer carries all server candidates (no server→client
trickle). The newer clients trickle theirs (`add_candidates`), some before the offer: they wait
here until the offer is applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from helios_serve.realtime.reactor import encoders

logger = logging.getLogger(__name__)

DATA_CHANNEL_LABEL = "data"
CONTROL_CHANNEL_LABEL = "control"
CHANNEL_LABELS = (DATA_CHANNEL_LABEL, CONTROL_CHANNEL_LABEL)
MAIN_VIDEO = "main_video"
MAX_REMOTE_CANDIDATES = 64
"""Trickled candidates kept per peer; a browser sends a handful."""


class NegotiationError(Exception):
    """The offer cannot be answered (no video m-line, bad SDP)."""


@dataclass(frozen=True)
class TrackMapping:
    mid: str
    name: str
    kind: str = "video"
    direction: str = "recvonly"


@dataclass(frozen=True)
class RemoteCandidate:
    """One trickled ICE candidate as the client posted it."""

    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


class PeerLink:
    """Wraps the peer connection; callbacks run on the event loop."""

    def __init__(
        self,
        on_message: Callable[[str, str | bytes], None],
        on_open: Callable[[str], None],
        on_gone: Callable[[str], None],
    ) -> None:
        self._on_message = on_message
        self._on_open = on_open
        self._on_gone = on_gone
        self._pc: Any = None
        self._channels: dict[str, Any] = {}
        self._early: list[RemoteCandidate] = []
        self._early_final = False
        self._remote_set = False
        self._candidates_ended = False
        self.closed = False
        """Closed by the server (replaced, or the session ended)."""
        self.gone: str | None = None
        """Why the client's side went away, if it did (a reconnect may follow)."""
        self.prefer_h264 = True
        self.codec: str | None = None
        """The negotiated video codec (mime type), once negotiated."""
        self.encoder: str | None = None

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
        # H.264 first when offered: it encodes faster than VP8 (encoders.py); the sender uses
        # the first codec of this list, which is also the answer's order.
        if self.prefer_h264:
            transceiver._codecs = encoders.prefer_codec(transceiver._codecs, encoders.H264)
        if transceiver._codecs:
            self.codec = transceiver._codecs[0].mimeType
            self.encoder = encoders.install_encoder(transceiver.sender, self.codec)
        self._remote_set = True
        early, self._early = self._early, []
        await self._add(early, self._early_final)
        answer = await pc.createAnswer()
        # aiortc gathers every candidate here, so the answer is complete: no trickle needed.
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    async def add_candidates(self, candidates: list[RemoteCandidate], final: bool) -> None:
        """Trickled client candidates; kept until the offer is applied, `final` ends gathering."""
        if not self._remote_set:
            room = MAX_REMOTE_CANDIDATES - len(self._early)
            self._early.extend(candidates[: max(0, room)])
            self._early_final = self._early_final or final
            return
        await self._add(candidates, final)

    async def _add(self, candidates: list[RemoteCandidate], final: bool) -> None:
        pc = self._pc
        if pc is None or self._candidates_ended:
            return
        for item in candidates[:MAX_REMOTE_CANDIDATES]:
            try:
                candidate = candidate_from_sdp(item.candidate.removeprefix("candidate:"))
                candidate.sdpMid = item.sdp_mid
                # aiortc needs one of the two; the first m-line carries the bundle.
                candidate.sdpMLineIndex = (
                    item.sdp_mline_index
                    if item.sdp_mline_index is not None or item.sdp_mid is not None
                    else 0
                )
                await pc.addIceCandidate(candidate)
            except Exception as exc:  # one bad candidate must not end the others
                logger.info("ignoring ICE candidate %r: %s", item.candidate[:120], exc)
        if final:
            self._candidates_ended = True
            try:
                await pc.addIceCandidate(None)
            except Exception as exc:
                logger.info("end of ICE candidates not applied: %s", exc)

    def send(self, label: str, frame: str | bytes) -> bool:
        channel = self._channels.get(label)
        if channel is None or channel.readyState != "open":
            return False
        channel.send(frame)
        return True

    async def close(self) -> None:
        self.closed = True
        pc, self._pc = self._pc, None
        if pc is not None:
            await pc.close()

    def _on_datachannel(self, channel: Any) -> None:
        label = channel.label
        if label not in CHANNEL_LABELS:
            logger.info("ignoring data channel %r (only %s are used)", label, CHANNEL_LABELS)
            return
        self._channels[label] = channel
        channel.on("message", lambda message: self._on_message(label, message))
        if label == DATA_CHANNEL_LABEL:
            channel.on("close", lambda: self._gone("data channel closed"))
        self._on_open(label)

    async def _on_state_change(self) -> None:
        pc = self._pc
        if pc is not None and pc.connectionState in ("failed", "closed"):
            self._gone(f"peer connection {pc.connectionState}")

    @property
    def usable(self) -> bool:
        return not self.closed and self.gone is None

    def _gone(self, why: str) -> None:
        if not self.closed and self.gone is None:
            self.gone = why
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
