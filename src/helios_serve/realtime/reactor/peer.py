"""One RTCPeerConnection per client connection: the offer in, a complete answer out.

The client creates a recvonly video transceiver and its channels: `"data"` (every client) and
`"control"` (the newer clients); the server attaches its track to the transceiver whose mid the
client's track mapping names `main_video`, and never opens a channel of its own (SDK 2.9.0 would
replace its channel with it). The answer carries all server candidates (no server→client
trickle). The newer clients trickle theirs (`add_candidates`), some before the offer: they wait
here until the offer is applied. A trickled candidate names the ICE username fragment of the
offer it belongs to (`ufrag`): one for another offer (a reconnecting client gathers anew before
it re-offers) is not this peer's (`takes`).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from helios_serve.realtime.reactor import encoders
from helios_serve.realtime.reactor.bounded import finish_within

logger = logging.getLogger(__name__)

DATA_CHANNEL_LABEL = "data"
CONTROL_CHANNEL_LABEL = "control"
CHANNEL_LABELS = (DATA_CHANNEL_LABEL, CONTROL_CHANNEL_LABEL)
MAIN_VIDEO = "main_video"
MAX_REMOTE_CANDIDATES = 64
"""Trickled candidates kept per peer; a browser sends a handful."""
PEER_CLOSE_TIMEOUT_S = 5.0
"""How long closing a peer may hold up whoever closes it (`bounded.finish_within`)."""
_UFRAG = re.compile(r"(?:^|\s)ufrag\s+(\S+)")
_SDP_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


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

    @property
    def ufrag(self) -> str | None:
        """The ICE username fragment of the offer it was gathered for (libwebrtc and browsers
        write it in the candidate line), if named."""
        match = _UFRAG.search(self.candidate)
        return match.group(1) if match else None


class PeerLink:
    """Wraps the peer connection; callbacks run on the event loop."""

    def __init__(
        self,
        on_message: Callable[[str, str | bytes], None],
        on_open: Callable[[str], None],
        on_gone: Callable[[str], None],
        ice_servers: tuple[dict[str, Any], ...] = (),
    ) -> None:
        """`ice_servers`: Reactor-shaped entries (`{uris, credentials?}`); none by default, so
        the server contacts no STUN server of anyone's (aiortc would ask Google's)."""
        self._on_message = on_message
        self._ice_servers = [_ice_server(entry) for entry in ice_servers]
        self._on_open = on_open
        self._on_gone = on_gone
        self._pc: Any = None
        self._channels: dict[str, Any] = {}
        self._early: list[RemoteCandidate] = []
        self._early_final = False
        self._remote_set = False
        self._remote_ufrag: str | None = None
        self._added = 0
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
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
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
        found = _SDP_UFRAG.search(offer_sdp)
        self._remote_ufrag = found.group(1) if found else None
        early, self._early = [c for c in self._early if self.takes(c)], []
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

    def takes(self, candidate: RemoteCandidate) -> bool:
        """Whether `candidate` may be this peer's: it names no offer, or this peer's offer (or
        this peer has no offer yet)."""
        ufrag = candidate.ufrag
        return ufrag is None or self._remote_ufrag is None or ufrag == self._remote_ufrag

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
                self._added += 1
            except Exception as exc:  # one bad candidate must not end the others
                logger.info("ignoring ICE candidate %r: %s", item.candidate[:120], exc)
        if final and not self._added:
            # The end of none: ICE would fail at once. The client's checks still reach us
            # (peer-reflexive candidates), so keep listening for them instead.
            logger.info("end of ICE candidates before any candidate: not applied")
        elif final:
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
        if pc is None:
            return
        try:
            closed = await finish_within(pc.close(), PEER_CLOSE_TIMEOUT_S)
        except Exception as exc:
            logger.warning("closing a peer connection failed: %s", exc)
            return
        if not closed:
            logger.warning(
                "a peer connection did not close within %.0f s; it goes on closing in the "
                "background",
                PEER_CLOSE_TIMEOUT_S,
            )

    def _on_datachannel(self, channel: Any) -> None:
        label = channel.label
        if label not in CHANNEL_LABELS:
            logger.info("ignoring data channel %r (only %s are used)", label, CHANNEL_LABELS)
            return
        self._channels[label] = channel
        channel.on("message", lambda message: self._deliver(label, message))
        if label == DATA_CHANNEL_LABEL:
            channel.on("close", lambda: self._gone("data channel closed"))
        self._on_open(label)

    def _deliver(self, label: str, message: str | bytes) -> None:
        # Nothing a client sends may escape into aiortc's receive loop: that would end the
        # connection (and the session with it). Handlers answer what they can; this logs the rest.
        try:
            self._on_message(label, message)
        except Exception:
            logger.exception("a %r channel message could not be handled; ignored", label)

    async def _on_state_change(self) -> None:
        pc = self._pc
        if pc is not None and pc.connectionState in ("failed", "closed"):
            self._gone(f"peer connection {pc.connectionState}")

    async def heard_ago(self) -> float | None:
        """Seconds since the client's last RTCP receiver report (about one a second while it
        receives video), or None if none came: the transport's sign of life, finer than the
        channels' pings."""
        pc = self._pc
        if pc is None:
            return None
        reports: list[datetime.datetime] = []
        for transceiver in pc.getTransceivers():
            try:
                stats = await transceiver.sender.getStats()
            except Exception:  # a sender without a transport (never negotiated) has none
                continue
            reports += [s.timestamp for s in stats.values() if s.type == "remote-inbound-rtp"]
        if not reports:
            return None
        return (datetime.datetime.now(datetime.UTC) - max(reports)).total_seconds()

    @property
    def network_failed(self) -> bool:
        """ICE failed (consent expired: nothing from the client for about 30 s), as opposed to
        a client that closed its side."""
        pc = self._pc
        return pc is not None and pc.iceConnectionState == "failed"

    @property
    def usable(self) -> bool:
        return not self.closed and self.gone is None

    def _gone(self, why: str) -> None:
        if not self.closed and self.gone is None:
            self.gone = why
            self._on_gone(why)


def _ice_server(entry: dict[str, Any]) -> RTCIceServer:
    credentials = entry.get("credentials") or {}
    return RTCIceServer(
        urls=list(entry["uris"]),
        username=credentials.get("username"),
        credential=credentials.get("password"),
    )


def ice_server_entry(url: str) -> dict[str, Any]:
    """`--ice-server` → Reactor's entry: `stun:host:port`, or `turn:user:password@host:port`
    (TURN's credentials ride in front of the host, as in a URL)."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ("stun", "stuns", "turn", "turns") or not rest:
        raise ValueError(f"not a STUN/TURN URL: {url!r}")
    user, at, host = rest.rpartition("@")
    if not at:
        return {"uris": [url]}
    username, _, password = user.partition(":")
    return {
        "uris": [f"{scheme}:{host}"],
        "credentials": {"username": username, "password": password},
    }


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
