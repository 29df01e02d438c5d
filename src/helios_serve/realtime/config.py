"""RealtimeConfig: every knob of the real-time sessions, as one frozen value (no env reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from helios_serve.core.settings import SamplingSettings
from helios_serve.realtime.steering import LatencyMode

MiB = 1024 * 1024


@dataclass(frozen=True)
class RealtimeConfig:
    max_sessions: int = 1
    """Sessions generating at once; more get 503 (local) or wait PENDING (coordinator)."""
    idle_timeout_s: float = 30.0
    """A session whose client is silent this long closes and frees its slot: no channel message
    (the SDKs ping every 5-10 s), no signalling request, no RTCP receiver report (about one a
    second while video flows). A client back sooner keeps it: a peer lost to a network drop
    is re-offered onto the same session. 30 s rides out Wi-Fi roaming and short outages (and
    matches WebRTC's own ICE consent expiry) at the price of a slot held that long for a
    client that never returns without closing."""
    watchdog_interval_s: float = 1.0
    reconnect_grace_s: float = 2.0
    """How long a session whose client closed its peer waits for a re-offer (a reconnect)
    before it closes and frees its slot (a peer lost to the network waits for the idle
    timeout instead); an explicit stop_session / DELETE closes it at once."""
    emission_fps: float = 24.0
    buffer_chunks: int = 2
    """Chunks made ahead of playback at most. While a client plays, chunks are made just in
    time instead (one ready shortly before it is due); this bounds the buffer while nobody
    pulls frames (no peer yet, the track paused)."""
    latency: LatencyMode = LatencyMode.SMOOTH
    """Where a change lands (`steering`); Reactor sessions may choose with extra_args.latency."""
    playback_floor_fps: float = 16.0
    """The slowest a session plays while the engine cannot keep up with `emission_fps`
    (`playback`); a session may pin its rate instead (extra_args.playback_fps)."""
    ws_send_ahead_s: float = 0.5
    """`/v1/realtime/video`: how long before the client will play a chunk it is sent (to
    encode it and carry it); chunks not yet sent can still be remade by an interaction."""
    width: int | None = None
    """Frame size of session streams; None → the model's default size."""
    height: int | None = None
    settings: SamplingSettings | None = None
    """Sampling settings; None → the preset of the served variant."""
    prompt_blend_chunks: int = 1
    max_upload_bytes: int = 20 * MiB
    max_uploads_per_session: int = 32
    max_upload_total_bytes: int = 256 * MiB
    """Upload bytes held by all sessions together (declared sizes of reservations)."""
    max_pending_sessions: int = 16
    """Coordinator sessions waiting for a slot; more are refused with 503 and Retry-After."""
    pending_timeout_s: float = 60.0
    """A PENDING session that nobody polls (`GET /sessions/{id}`) for this long expires."""
    commands_per_second: float = 30.0
    negotiation_timeout_s: float = 30.0
    server_version: str = "helios-serve"
    ice_servers: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """Entries of `{uris:[...], credentials?:{username,password}}`; empty is fine on a LAN."""
