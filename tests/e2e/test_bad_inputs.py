"""The issue's bad-input battery against a live server: a 4xx with a message every time."""

from __future__ import annotations

import io
import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from helios_serve.media.encode import Mp4Writer

from .conftest import LiveServer

pytestmark = pytest.mark.slow
OK = {"prompt": "x", "size": "128x128", "num_frames": "33"}


def png(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "green").save(out, format="PNG")
    return out.getvalue()


def bomb_png() -> bytes:
    data = bytearray(png(1, 1))
    ihdr = struct.pack(">II", 40000, 40000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def mp4(tmp_path_factory: pytest.TempPathFactory, frames: int) -> bytes:
    path = tmp_path_factory.mktemp("mp4") / "clip.mp4"
    with Mp4Writer(path, 64, 64) as writer:
        writer.write(np.zeros((frames, 64, 64, 3), dtype=np.uint8))
    return path.read_bytes()


CASES = [
    ("malformed extra_params", {"extra_params": "{not json"}, None, 400, "extra_params"),
    ("unknown extra key", {"extra_params": '{"warp_speed": 9}'}, None, 400, "warp_speed"),
    ("wrong type", {"width": "wide"}, None, 400, "width"),
    ("wrong extra type", {"extra_params": '{"zero_steps": "two"}'}, None, 400, "zero_steps"),
    ("negative size", {"size": "-64x64"}, None, 400, "size"),
    ("huge size", {"size": "100000x64"}, None, 400, "size"),
    ("an odd side", {"size": "101x100"}, None, 400, "size"),
    ("negative frames", {"num_frames": "-5"}, None, 400, "num_frames"),
    ("huge frames", {"num_frames": "99999999"}, None, 400, "num_frames"),
    ("blank prompt", {"prompt": "   "}, None, 400, "prompt"),
    ("wrong model", {"model": "sora-2"}, None, 400, "model"),
]


@pytest.mark.parametrize(
    ("name", "fields", "upload", "status", "mention"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_fields(
    distilled_server: LiveServer,
    name: str,
    fields: dict[str, str],
    upload: bytes | None,
    status: int,
    mention: str,
) -> None:
    with distilled_server.client() as http:
        response = http.post("/v1/videos", data={**OK, **fields})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert mention in (error["message"] + str(error["param"]))
    assert error["code"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    good_mp4 = mp4(tmp_path_factory, 40)
    return {
        "truncated png": png()[:60],
        "bomb png": bomb_png(),
        "truncated mp4": good_mp4[: len(good_mp4) // 3],
        "text file": b"hello, I am not an image\n" * 10,
        "hls playlist": b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n",
    }


@pytest.mark.parametrize(
    "name",
    ["truncated png", "bomb png", "truncated mp4", "text file", "hls playlist"],
)
def test_bad_references(distilled_server: LiveServer, media: dict[str, bytes], name: str) -> None:
    with distilled_server.client() as http:
        response = http.post(
            "/v1/videos", data=OK, files={"input_reference": ("ref.png", media[name])}
        )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["param"] == "input_reference"


def test_oversized_upload_is_refused_without_reading_it(distilled_server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", distilled_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/videos HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 10000000000\r\n\r\n--b\r\n"
        )
        reply = sock.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply


@pytest.mark.parametrize("video_id", ["..%2F..%2Fetc%2Fpasswd", "video_%2E%2E", "video_abc"])
def test_path_like_ids_are_404(distilled_server: LiveServer, video_id: str) -> None:
    with distilled_server.client() as http:
        assert http.get(f"/v1/videos/{video_id}").status_code == 404
        assert http.get(f"/v1/videos/{video_id}/content").status_code == 404
        assert http.delete(f"/v1/videos/{video_id}").status_code == 404


def test_server_still_serves_after_the_battery(distilled_server: LiveServer) -> None:
    with distilled_server.client() as http:
        assert http.get("/health").status_code == 200
        video_id = http.post("/v1/videos", data=OK).json()["id"]
    assert distilled_server.wait_done(video_id)["status"] == "completed"
    assert not any("Traceback" in line for line in distilled_server.log)
