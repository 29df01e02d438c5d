"""Body caps: a too-large body is refused without being read, in-process and on a real socket."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from helios_serve.api.videos.limits import RequestLimits
from helios_serve.media.limits import MediaLimits

from .conftest import BASE, make_app, png_bytes
from .test_errors import assert_envelope

pytestmark = pytest.mark.anyio

CAP = 256 * 1024
SMALL = RequestLimits(max_body_bytes=CAP, media=MediaLimits(max_bytes=64 * 1024))
CHUNK = 16 * 1024


FILE_PART = (
    b'--b\r\nContent-Disposition: form-data; name="input_reference"; filename="a.mp4"\r\n'
    b"Content-Type: video/mp4\r\n\r\n"
)
PREFIXES = {
    "multipart/form-data; boundary=b": FILE_PART,
    "application/x-www-form-urlencoded": b"prompt=",
    "application/json": b'{"prompt": "',
}


class EndlessBody:
    """A request body that never ends; counts how much of it was pulled."""

    def __init__(self, prefix: bytes = b"") -> None:
        self.prefix = prefix
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.sent += len(self.prefix)
        yield self.prefix
        while True:
            self.sent += CHUNK
            await anyio.lowlevel.checkpoint()
            yield b"x" * CHUNK


async def test_content_length_over_cap_is_413_before_reading(client_for: Any) -> None:
    body = EndlessBody()
    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": str(10**12)}
    async with client_for(BASE, SMALL) as client:
        with anyio.fail_after(5):
            resp = await client.post("/v1/videos", content=body, headers=headers)
    error = assert_envelope(resp, 413, "request_too_large")
    assert error["type"] == "invalid_request_error"
    assert body.sent == 0  # not one byte of the body was pulled


@pytest.mark.parametrize("content_type", list(PREFIXES))
async def test_chunked_body_is_cut_off_at_the_cap(client_for: Any, content_type: str) -> None:
    body = EndlessBody(PREFIXES[content_type])
    async with client_for(BASE, SMALL) as client:
        with anyio.fail_after(5):
            resp = await client.post(
                "/v1/videos", content=body, headers={"content-type": content_type}
            )
    assert_envelope(resp, 413, "request_too_large")
    assert CAP < body.sent <= CAP + 2 * CHUNK


async def test_reference_over_media_cap_is_413_file_too_large(client_for: Any) -> None:
    files = [
        ("prompt", (None, "p")),
        ("input_reference", ("a.png", b"\x89PNG" + b"\0" * 100_000, "image/png")),
    ]
    async with client_for(BASE, SMALL) as client:
        error = assert_envelope(await client.post("/v1/videos", files=files), 413, "file_too_large")
    assert error["param"] == "input_reference"


async def test_data_url_over_media_cap_is_413(client_for: Any) -> None:
    import base64

    url = "data:image/png;base64," + base64.b64encode(b"\0" * 100_000).decode()
    async with client_for(BASE, SMALL) as client:
        resp = await client.post("/v1/videos", json={"prompt": "p", "input_reference": url})
    assert_envelope(resp, 413, "file_too_large")


async def test_json_body_over_cap_is_413(client_for: Any) -> None:
    async with client_for(BASE, SMALL) as client:
        resp = await client.post("/v1/videos", json={"prompt": "x" * (CAP + 1)})
    assert_envelope(resp, 413, "request_too_large")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml", "image/png"])
async def test_other_content_types_are_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    resp = await client.post("/v1/videos", content=b"prompt=p", headers=headers)
    assert_envelope(resp, 415, "unsupported_media_type")


async def test_json_with_charset_is_accepted(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/videos",
        content=json.dumps({"prompt": "p"}).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize(
    ("limits", "parts"),
    [
        (
            RequestLimits(max_files=1),
            [
                ("input_reference", ("a.png", png_bytes(), "image/png")),
                ("x", ("b.png", b"x", "image/png")),
            ],
        ),
        (RequestLimits(max_fields=3), [(f"f{i}", (None, "v")) for i in range(5)]),
        (RequestLimits(max_part_size=1024), [("prompt", (None, "x" * 2048))]),
    ],
)
async def test_multipart_limits_are_400(
    client_for: Any, limits: RequestLimits, parts: list[Any]
) -> None:
    async with client_for(BASE, limits) as client:
        assert_envelope(await client.post("/v1/videos", files=parts), 400, "invalid_body")


async def test_invalid_utf8_in_a_text_part_is_400(client: httpx.AsyncClient) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n\xff\xfe bad\r\n--b--\r\n'
    resp = await client.post(
        "/v1/videos", content=body, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    error = assert_envelope(resp, 400, "invalid_body")
    assert "UTF-8" in str(error["message"])


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--b\r\nnonsense", "multipart/form-data"),
        (b"\r\n" * 50_000 + b"--b--\r\n", "multipart/form-data; boundary=b"),
        (
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ],
)
async def test_broken_multipart_is_400(
    client: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    with anyio.fail_after(5):
        resp = await client.post("/v1/videos", content=body, headers={"content-type": content_type})
    assert_envelope(resp, 400)


async def test_non_numeric_content_length_is_400() -> None:
    app = make_app(BASE)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/v1/videos",
        "raw_path": b"/v1/videos",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"12abc")],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
        "scheme": "http",
        "root_path": "",
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["code"] == "invalid_body"


# ----------------------------------------------------------------------------- real socket


def _raw_exchange(port: int, head: bytes, trickle: bool) -> tuple[bytes, float]:
    """Send request headers (and, if `trickle`, body bytes until the answer); return the answer."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
        if trickle:
            sock.sendall(b"%x\r\n%s\r\n" % (len(FILE_PART), FILE_PART))
        sock.settimeout(0.05 if trickle else 5)
        data = b""
        while time.monotonic() - start < 5:
            if trickle:
                # The server may close its side after answering: later sends then fail.
                with contextlib.suppress(OSError):
                    sock.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
            try:
                part = sock.recv(65536)
            except TimeoutError:
                continue
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
                break
        return data, time.monotonic() - start


def _status_and_body(data: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.mark.parametrize("expect_continue", [False, True])
def test_live_server_answers_413_without_waiting_for_the_body(
    live_server: Any, expect_continue: bool
) -> None:
    extra = b"Expect: 100-continue\r\n" if expect_continue else b""
    head = (
        b"POST /v1/videos HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 10000000000\r\n" + extra + b"\r\n"
    )
    with live_server(BASE, SMALL) as server:
        data, elapsed = _raw_exchange(server.port, head, trickle=False)
    status, body = _status_and_body(data)
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert b"100 Continue" not in data
    assert elapsed < 2


def test_live_server_cuts_off_a_chunked_upload(live_server: Any) -> None:
    head = (
        b"POST /v1/videos HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with live_server(BASE, SMALL) as server:
        data, elapsed = _raw_exchange(server.port, head, trickle=True)
    status, body = _status_and_body(data)
    assert (status, body["error"]["code"]) == (413, "request_too_large")
    assert elapsed < 3
