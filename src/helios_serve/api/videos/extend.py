"""`POST /v1/videos/extensions`: OpenAI's extension request, read from JSON or a form.

`video` names the completed video to continue: `{"id": "video_..."}` in JSON, `video[id]` in a
form, or an uploaded video file (what the openai SDK's `videos.extend` sends: its current
releases refuse `{"id": ...}` client-side and only send files). An upload that is byte for
byte one of this server's own MP4s is that video; any other is continued from its frames.
`seconds` is the length of the new part; the finished video is the whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import Request
from starlette.datastructures import UploadFile

from helios_serve.api.videos.limits import RequestLimits
from helios_serve.api.videos.sizes import MIN_SIDE, FittedSize, fit_size
from helios_serve.api.videos.upload import FORM_TYPES, media_type, read_form
from helios_serve.core.requests import RequestError, check_prompt, parse_seconds
from helios_serve.core.spec import ModelInfo
from helios_serve.errors import InvalidInputError, TooLargeError, UnprocessableError
from helios_serve.media.decode import load_video
from helios_serve.web.bodies import check_content_length, read_json_body
from helios_serve.web.errors import bad_request, unsupported_media_type

KNOWN = frozenset({"prompt", "seconds", "video", "video[id]"})


@dataclass(frozen=True)
class ExtendRequest:
    prompt: str
    seconds: int
    source_id: str | None = None
    upload: bytes | None = None

    @property
    def upload_sha256(self) -> str | None:
        return None if self.upload is None else hashlib.sha256(self.upload).hexdigest()

    def fingerprint_fields(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "seconds": self.seconds,
            "video": self.source_id,
            "upload_sha256": self.upload_sha256,
        }


def _checked(
    prompt: object, seconds: object, source_id: object, upload: bytes | None
) -> ExtendRequest:
    if not isinstance(prompt, str):
        raise bad_request("prompt must be a string", param="prompt")
    check_prompt(prompt)
    if seconds is None:
        raise bad_request("seconds is required: the length of the new part", param="seconds")
    if (source_id is None) == (upload is None):
        raise bad_request(
            'video is required: {"id": "video_..."} or an uploaded video file', param="video"
        )
    if source_id is not None and not isinstance(source_id, str):
        raise bad_request('video must be {"id": "video_..."}', param="video")
    return ExtendRequest(prompt, parse_seconds(seconds), source_id, upload)


def _unknown(keys: list[str]) -> None:
    unknown = sorted(k for k in keys if k not in KNOWN)
    if unknown:
        raise bad_request(
            f"unknown parameter {unknown[0]!r} (extensions take video, prompt and seconds)",
            param=unknown[0][:100],
            code="unknown_parameter",
        )


async def read_extend_request(request: Request, limits: RequestLimits) -> ExtendRequest:
    check_content_length(request.headers, limits.max_body_bytes)
    kind = media_type(request)
    if kind in FORM_TYPES:
        form = await read_form(request, limits)
        try:
            _unknown(list(form.keys()))
            video = form.get("video")
            upload = None
            source = form.get("video[id]")
            if isinstance(video, UploadFile):
                upload = await video.read()
                if not upload:
                    raise bad_request("the uploaded video is empty", param="video")
            elif isinstance(video, str):
                source = video  # a bare id in a text field
            return _checked(form.get("prompt"), form.get("seconds"), source, upload)
        finally:
            await form.close()
    if kind == "application/json" or kind.endswith("+json"):
        body = await read_json_body(request, limits.max_body_bytes)
        if not isinstance(body, dict):
            raise bad_request("the JSON body must be an object", param=None, code="invalid_body")
        _unknown(list(body))
        video = body.get("video")
        if isinstance(video, dict):
            _unknown_video(video)
            video = video.get("id")
        return _checked(body.get("prompt"), body.get("seconds"), video, None)
    raise unsupported_media_type("send application/json or multipart/form-data")


def _unknown_video(video: dict[str, Any]) -> None:
    extra = sorted(k for k in video if k != "id")
    if extra:
        raise bad_request(
            f"video takes only an id, got {extra[0]!r}", param="video", code="unknown_parameter"
        )


def load_upload(data: bytes, limits: RequestLimits) -> npt.NDArray[np.uint8]:
    """Decode an uploaded video to extend (sniffed and capped like `input_reference`); any
    length from one frame (a clip under a chunk is padded by the engine, like V2V)."""
    if len(data) > limits.media.max_bytes:
        raise TooLargeError(
            f"the video is {len(data)} bytes, over the limit of {limits.media.max_bytes}",
            code="file_too_large",
            param="video",
        )
    try:
        return load_video(data, limits.media, param="video")
    except InvalidInputError as exc:
        raise UnprocessableError(exc.message, param="video") from None


def fitted_upload(
    frames: npt.NDArray[np.uint8], model: ModelInfo, limits: RequestLimits
) -> tuple[npt.NDArray[np.uint8], FittedSize]:
    """An upload's frames at a size the new part can be made at and stitched to: its own,
    with an odd side cut by one pixel (H.264 needs even sides); generated at the nearest size
    the model makes and cut, like any size asked for."""
    _, height, width, _ = frames.shape
    width, height = width - width % 2, height - height % 2
    if min(width, height) < MIN_SIDE or max(width, height) > limits.max_side:
        raise RequestError(
            f"the video is {width}x{height}; videos from {MIN_SIDE} to {limits.max_side} pixels "
            "a side can be extended",
            param="video",
        )
    frames = np.ascontiguousarray(frames[:, :height, :width])
    return frames, fit_size(width, height, model)
