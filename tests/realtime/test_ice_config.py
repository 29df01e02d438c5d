"""The server's peers contact no STUN server unless one is configured (aiortc's default is
Google's public one), and `--ice-server` says which (issue 24, finding 10)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, VideoStreamTrack

from helios_serve import cli
from helios_serve.realtime.reactor.peer import PeerLink, TrackMapping, ice_server_entry


def _stun_server_of(entries: tuple[dict[str, Any], ...]) -> Any:
    """Negotiate a server peer with `entries` against a client offer; the STUN server its ICE
    agent was given (what it would contact while gathering)."""

    async def main() -> Any:
        client = RTCPeerConnection()
        transceiver = client.addTransceiver("video", direction="recvonly")
        client.createDataChannel("data")
        await client.setLocalDescription(await client.createOffer())
        peer = PeerLink(lambda *_: None, lambda _: None, lambda _: None, entries)
        peer.prefer_h264 = False
        try:
            mapping = [TrackMapping(transceiver.mid, "main_video")]
            await peer.negotiate(client.localDescription.sdp, mapping, VideoStreamTrack())
            sender = peer._pc.getTransceivers()[0].sender
            return sender.transport.transport.iceGatherer._connection.stun_server
        finally:
            await peer.close()
            await client.close()

    return asyncio.run(main())


def test_no_stun_server_unless_configured() -> None:
    assert _stun_server_of(()) is None
    assert _stun_server_of((ice_server_entry("stun:stun.example.org:3478"),)) == (
        "stun.example.org",
        3478,
    )


def test_ice_server_urls() -> None:
    assert ice_server_entry("stun:h:3478") == {"uris": ["stun:h:3478"]}
    assert ice_server_entry("turn:me:s3cret@relay.example:3478?transport=udp") == {
        "uris": ["turn:relay.example:3478?transport=udp"],
        "credentials": {"username": "me", "password": "s3cret"},
    }
    for bad in ("http://h", "stun:", "h:3478"):
        with pytest.raises(ValueError, match="STUN/TURN"):
            ice_server_entry(bad)


def test_a_bad_ice_server_flag_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--data-dir", str(tmp_path), "--ice-server", "http://nope"]
    assert cli.main(argv) == 2
    assert "--ice-server" in capsys.readouterr().err
