"""The `/v1/videos` wire models: what `/openapi.json` documents and what every answer is built
from, so the description and the answers cannot drift apart.

Requests are parsed by `params`/`extend`/`upload` (they accept a form as well as JSON, and three
spellings of `extra_params`); the request models here describe their JSON shape for clients and
for schemathesis, which fuzzes the server against this description in the test suite.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_DOC = ConfigDict(extra="forbid")


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    """OpenAI's `Video` plus vLLM-Omni's fields and Helios' own (frames, chunks, extension)."""

    model_config = _DOC
    id: str
    object: Literal["video"]
    model: str
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    created_at: int
    completed_at: int | None
    expires_at: int | None
    prompt: str | None
    remixed_from_video_id: str | None
    seconds: str
    """As asked; for an extension, the stitched total."""
    size: str
    error: VideoError | None
    file_name: str | None
    media_type: Literal["video/mp4"]
    inference_time_s: float | None
    stage_durations: dict[str, float] | None
    peak_memory_mb: float | None
    num_frames: int
    frames_done: int
    fps: int
    width: int
    height: int
    generated_size: str
    seed: int
    extended_from_video_id: str | None
    extension_mode: Literal["state", "v2v"] | None
    chunks_done: int
    resumed_from_chunk: int | None
    step_cache: dict[str, Any] | None = None
    """The step cache (cache-dit DBCache settings) the video is made with; null: none."""


class VideoList(BaseModel):
    model_config = _DOC
    object: Literal["list"]
    data: list[Video]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    model_config = _DOC
    id: str
    object: Literal["video.deleted"]
    deleted: bool


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's envelope, plus `detail` (the message) for clients of vLLM-Omni's errors."""

    model_config = _DOC
    error: ErrorDetail
    detail: str


class ImageUrl(BaseModel):
    image_url: str = Field(description="a data: URL (other URLs are not fetched)")


class VideoCreateBody(BaseModel):
    """`POST /v1/videos` as JSON (a multipart form takes the same fields, `input_reference`
    as a file)."""

    prompt: str = Field(max_length=32_000)
    model: str | None = None
    size: str | None = Field(default=None, examples=["640x384", "1280x720"])
    seconds: str | None = Field(default=None, examples=["4"])
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: int | None = None
    seed: int | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    negative_prompt: str | None = None
    input_reference: str | ImageUrl | None = None
    image_reference: ImageUrl | None = None
    video_reference: dict[str, str] | None = None
    extra_params: dict[str, Any] | str | None = None


class VideoRef(BaseModel):
    id: str


class VideoExtendBody(BaseModel):
    video: VideoRef
    prompt: str
    seconds: str = Field(examples=["4", "8"])


class VideoRemixBody(BaseModel):
    prompt: str


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in {
        400: "a bad field (`param` names it)",
        401: "a missing or wrong API key",
        404: "no such video, or an unsupported route",
        409: "the video is not in a state that allows it",
        413: "a body or upload over the cap",
        415: "neither JSON nor a form",
        422: "media that cannot be used",
        429: "the queue is full (`Retry-After`)",
        503: "the engine is not available",
    }.items()
}
"""Every error answer of these routes, in the one envelope."""


def json_body(model: type[BaseModel], *, form: bool = True) -> dict[str, Any]:
    """`openapi_extra` describing a JSON body (and the same fields as a form)."""
    schema = _inline(model.model_json_schema())
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if form:
        content["multipart/form-data"] = {"schema": _as_form(schema)}
    return {"requestBody": {"required": True, "content": content}}


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `$defs` written in place (refs into it would not resolve from the
    root of an OpenAPI document)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _as_form(schema: dict[str, Any]) -> dict[str, Any]:
    """The form variant: every field is text (a form carries strings), files as binary."""
    properties = {
        name: {"type": "string", "format": "binary"}
        if name in ("input_reference", "video")
        else {"type": "string"}
        for name in schema.get("properties", {})
    }
    return {"type": "object", "properties": properties, "required": schema.get("required", [])}


def video_answer(value: dict[str, Any]) -> dict[str, Any]:
    """A video object checked against its model (an answer that drifted would fail here)."""
    return Video.model_validate(value).model_dump()
