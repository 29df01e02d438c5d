"""`/v1/videos` routes: thin; parsing lives in `upload`, behaviour in `VideosService`."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from helios_serve.api.videos.extend import read_extend_request
from helios_serve.api.videos.idempotency import read_claim
from helios_serve.api.videos.limits import RequestLimits
from helios_serve.api.videos.protocol import POLL_AFTER_MS
from helios_serve.api.videos.service import VideosService
from helios_serve.api.videos.upload import read_create_request, read_remix_request
from helios_serve.api.videos.wire import (
    ERRORS,
    Video,
    VideoCreateBody,
    VideoDeleted,
    VideoExtendBody,
    VideoList,
    VideoRemixBody,
    json_body,
)
from helios_serve.core.spec import ModelInfo
from helios_serve.errors import NotFoundError
from helios_serve.jobs.models import JobStatus
from helios_serve.web.errors import failed_generation
from helios_serve.web.responses import CompactJSONResponse

PREFIX = "/v1/videos"
POLL_HEADERS = {"openai-poll-after-ms": str(POLL_AFTER_MS)}
Responses = dict[int | str, dict[str, Any]]


def answer(model: type[BaseModel]) -> Responses:
    return {200: {"model": model}}


JOB = answer(Video)
_BINARY = {"schema": {"type": "string", "format": "binary"}}
MP4: Responses = {200: {"description": "the MP4", "content": {"video/mp4": _BINARY}}}
CONTENT: Responses = {
    200: {
        "description": "the MP4, or the thumbnail / spritesheet (WebP, or JPEG by Accept)",
        "content": {"video/mp4": _BINARY, "image/webp": _BINARY, "image/jpeg": _BINARY},
    }
}


def build_router(service: VideosService, model: ModelInfo, limits: RequestLimits) -> APIRouter:
    """The video job routes around one service instance (literal paths before `/{video_id}`:
    a literal path segment must never be read as a video id)."""
    router = APIRouter(tags=["videos"])
    router.include_router(_creating(service, model, limits))
    router.include_router(_reading(service))
    router.include_router(_remixing(service, limits))
    return router


def _creating(service: VideosService, model: ModelInfo, limits: RequestLimits) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    @router.post("", responses=JOB | ERRORS, openapi_extra=json_body(VideoCreateBody))
    async def create_video(request: Request) -> Response:
        body = await read_create_request(request, model, limits)
        video = await service.create(body, read_claim(request.headers, "create", body))
        return CompactJSONResponse(video, headers=POLL_HEADERS)

    # before /{video_id}: a literal path segment must never be read as a video id
    @router.post("/extensions", responses=JOB | ERRORS, openapi_extra=json_body(VideoExtendBody))
    async def extend_video(request: Request) -> Response:
        body = await read_extend_request(request, limits)
        video = await service.extend(body, read_claim(request.headers, "extend", body))
        return CompactJSONResponse(video, headers=POLL_HEADERS)

    @router.post(
        "/sync",
        responses=MP4 | ERRORS | {500: ERRORS[400] | {"description": "generation failed"}},
        openapi_extra=json_body(VideoCreateBody),
    )
    async def create_video_sync(request: Request) -> Response:
        """vLLM-Omni's synchronous create: the MP4 in the answer, and no job left behind."""
        video = await service.create(await read_create_request(request, model, limits))
        job = await service.wait(video["id"])
        if job.status is JobStatus.FAILED:
            await service.discard(job.id)
            raise failed_generation(job.error_code, job.error_message)
        content = await service.content(job.id, "video")
        # read, then gone: once a client has the answer, no list shows the job
        data = await asyncio.to_thread(content.path.read_bytes)
        await service.discard(job.id)
        stats = job.stats or {}
        headers = {
            "x-video-id": job.id,
            "X-Request-Id": f"video_sync-{job.id.removeprefix('video_')}",  # vLLM-Omni's form
            "X-Model": job.model,
            "X-Inference-Time-S": f"{job.inference_time_s or 0.0:.3f}",
            "X-Stage-Durations": json.dumps(stats.get("stage_durations") or {}),
            # a number, as vLLM-Omni sends (0.0: not measured, e.g. on CPU)
            "X-Peak-Memory-MB": str(float(stats.get("peak_memory_mb") or 0.0)),
        }
        disposition = f'attachment; filename="{content.download_name}"'
        return Response(
            data,
            media_type=content.media_type,
            headers=headers | {"Content-Disposition": disposition},
        )

    @router.post("/edits", responses=ERRORS)
    @router.post("/characters", responses=ERRORS)
    async def unsupported(request: Request) -> Response:
        """OpenAI routes this server does not offer: a clear 404, not a 405 from /{id}."""
        raise NotFoundError(
            f"{request.url.path} is not supported by this server (Helios generates, remixes "
            "and extends videos)",
            code="unsupported",
        )

    return router


def _reading(service: VideosService) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    @router.get("", responses=answer(VideoList) | ERRORS)
    async def list_videos(
        after: str | None = None,
        limit: Annotated[int, Query(ge=0, le=100)] = 20,
        order: Literal["asc", "desc"] = "desc",
    ) -> Response:
        return CompactJSONResponse(await service.list(after, limit, order))

    @router.get("/{video_id}", responses=JOB | ERRORS)
    async def retrieve_video(video_id: str) -> Response:
        return CompactJSONResponse(await service.get(video_id), headers=POLL_HEADERS)

    @router.delete("/{video_id}", responses=answer(VideoDeleted) | ERRORS)
    async def delete_video(video_id: str) -> Response:
        return CompactJSONResponse(await service.delete(video_id))

    @router.get("/{video_id}/content", responses=CONTENT | ERRORS)
    async def download_content(request: Request, video_id: str, variant: str = "video") -> Response:
        content = await service.content(video_id, variant, request.headers.get("accept", ""))
        return FileResponse(
            content.path, media_type=content.media_type, filename=content.download_name
        )

    return router


def _remixing(service: VideosService, limits: RequestLimits) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    @router.post(
        "/{video_id}/remix", responses=JOB | ERRORS, openapi_extra=json_body(VideoRemixBody)
    )
    async def remix_video(video_id: str, request: Request) -> Response:
        body = await read_remix_request(request, limits)
        claim = read_claim(request.headers, f"remix:{video_id}", body)
        return CompactJSONResponse(
            await service.remix(video_id, body.get("prompt"), claim), headers=POLL_HEADERS
        )

    return router
