"""Request parsing for the realtime routes: version headers, lenient JSON bodies, field checks.

Every problem is an `ApiError` in the project's envelope, so the routes stay declarative.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from helios_serve.core.requests import check_side
from helios_serve.core.spec import ModelInfo
from helios_serve.errors import NotSupportedError, UpgradeRequiredError
from helios_serve.realtime.reactor.peer import RemoteCandidate, TrackMapping
from helios_serve.realtime.reactor.uploads import UploadTooLargeError
from helios_serve.realtime.steering import LatencyMode
from helios_serve.web.bodies import parse_json_off_loop, read_capped_body
from helios_serve.web.errors import bad_request

API_VERSION = 1
WEBRTC_VERSION = 1
MAX_JSON_BYTES = 1024 * 1024
"""SDP offers are a few KiB; anything near this is not a signalling body."""


def _major(value: str, header: str) -> int:
    try:
        return int(float(value.strip().lower().lstrip("v")))
    except ValueError:
        raise bad_request(f"invalid {header}: {value[:20]!r}", param=header) from None


def _check(header: str, accept_header: str | None, supported: int, request: Request) -> None:
    value = request.headers.get(header)
    if value is None:
        return  # absent headers: a plain client, accepted
    version = _major(value, header)
    if version == supported:
        return
    if version < supported:
        raise UpgradeRequiredError(
            f"{header} {value} is too old; this server speaks {supported}", param=header
        )
    accepted = request.headers.get(accept_header, "") if accept_header else ""
    if any(_major(v, accept_header or header) == supported for v in accepted.split(",") if v):
        return
    raise NotSupportedError(
        f"{header} {value} is newer than this server ({supported})", param=header
    )


async def check_versions(request: Request) -> None:
    """426 when the client is older than this server, 501 when it is newer (and won't accept 1)."""
    _check("reactor-api-version", "reactor-api-accept-version", API_VERSION, request)
    _check("reactor-webrtc-version", None, WEBRTC_VERSION, request)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` (the SDK posts none to some routes).
    Over `MAX_JSON_BYTES` is a 413 before the body is read (declared) or as it streams."""
    raw = await read_capped_body(request, MAX_JSON_BYTES)
    if not raw.strip():
        return {}
    doc = await parse_json_off_loop(raw)
    if not isinstance(doc, dict):
        raise bad_request("the body must be a JSON object", param=None, code="invalid_json")
    return doc


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_request(f"'{name}' must be an integer in {low}..{high}", param=name)
    return value


def stream_overrides(extra_args: Any, info: ModelInfo) -> dict[str, Any]:
    """StreamOptions fields a client may set via `extra_args`; other keys are ignored. Sizes
    follow the served model's rule (the vocabulary's `check_side`), refused at the start.
    `playback_fps` pins the session's playback rate (above the emission rate it plays at that)."""
    if extra_args is None:
        return {}
    if not isinstance(extra_args, dict):
        raise bad_request("'extra_args' must be an object", param="extra_args")
    out: dict[str, Any] = {}
    for side in ("width", "height"):
        if side in extra_args:
            out[side] = check_side(extra_args[side], side, info, f"extra_args.{side}")
    if "prompt_blend_chunks" in extra_args:
        out["prompt_blend_chunks"] = _int(
            extra_args["prompt_blend_chunks"], "extra_args.prompt_blend_chunks", 1, 16
        )
    if "latency" in extra_args:
        modes = [m.value for m in LatencyMode]
        if extra_args["latency"] not in modes:
            raise bad_request(f"'extra_args.latency' must be one of {modes}", param="latency")
        out["latency"] = LatencyMode(extra_args["latency"])
    if "playback_fps" in extra_args:
        fps = extra_args["playback_fps"]
        if isinstance(fps, bool) or not isinstance(fps, int | float) or not 1 <= fps <= 240:
            raise bad_request(
                "'extra_args.playback_fps' must be a number in 1..240", param="playback_fps"
            )
        out["playback_fps"] = float(fps)
    return out


def parse_sdp_params(body: dict[str, Any]) -> tuple[str, list[TrackMapping]]:
    sdp = body.get("sdp_offer", body.get("sdp"))
    if not isinstance(sdp, str) or not sdp.strip():
        raise bad_request("'sdp_offer' must be a non-empty SDP string", param="sdp_offer")
    raw = body.get("track_mapping") or []
    if not isinstance(raw, list):
        raise bad_request("'track_mapping' must be a list", param="track_mapping")
    mapping = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("mid"), str | int):
            raise bad_request("each track_mapping entry needs a 'mid'", param="track_mapping")
        mapping.append(
            TrackMapping(
                mid=str(item["mid"]),
                name=str(item.get("name", "")),
                kind=str(item.get("kind", "video")),
                direction=str(item.get("direction", "recvonly")),
            )
        )
    return sdp, mapping


def parse_upload(body: dict[str, Any]) -> tuple[str, int, str]:
    name, size, mime = body.get("name", "upload"), body.get("size"), body.get("mime_type", "")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise bad_request("'size' must be a non-negative integer (bytes)", param="size")
    if not isinstance(name, str) or not isinstance(mime, str):
        raise bad_request("'name' and 'mime_type' must be strings", param="name")
    return name[:255], size, mime[:255]


async def read_upload_body(request: Request, declared: int, cap: int) -> bytes:
    """Read a PUT body, stopping early past the declared size or the cap."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise UploadTooLargeError(f"over the limit of {cap} bytes")
    data = bytearray()
    async for part in request.stream():
        data.extend(part)
        if len(data) > cap:
            raise UploadTooLargeError(f"over the limit of {cap} bytes")
        if len(data) > declared:
            break  # already a mismatch; no need to read the rest
    return bytes(data)


MAX_CANDIDATES_PER_POST = 64


def parse_ice_candidates(body: dict[str, Any]) -> tuple[list[RemoteCandidate], bool]:
    """`{candidates: [{candidate, sdp_mid?, sdp_mline_index?}], is_final?}` (trickle ICE)."""
    raw = body.get("candidates", [])
    final = body.get("is_final", False)
    if not isinstance(raw, list) or len(raw) > MAX_CANDIDATES_PER_POST:
        raise bad_request(
            f"'candidates' must be a list of at most {MAX_CANDIDATES_PER_POST}", param="candidates"
        )
    if not isinstance(final, bool):
        raise bad_request("'is_final' must be a boolean", param="is_final")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("candidate"), str):
            raise bad_request("each candidate needs a 'candidate' string", param="candidates")
        mid, index = item.get("sdp_mid"), item.get("sdp_mline_index")
        if mid is not None and not isinstance(mid, str):
            raise bad_request("'sdp_mid' must be a string", param="candidates")
        if index is not None:
            index = _int(index, "sdp_mline_index", 0, 1024)
        if item["candidate"].strip():  # an empty candidate is the browser's end-of-candidates
            out.append(RemoteCandidate(item["candidate"][:1024], mid, index))
    return out, final
