"""`/v1/videos` routes: thin; parsing lives in `upload`, behaviour in `VideosService`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from helios_serve.api.videos.extend import read_extend_request
from helios_serve.api.videos.idempotency import read_claim
from helios_serve.api.videos.limits import RequestLimits
from helios_serve.api.videos.protocol import POLL_AFTER_MS
from helios_serve.api.videos.service import VideosService
from helios_serve.api.videos.upload import read_create_request, read_remix_request
from helios_serve.core.spec import ModelInfo
from helios_serve.jobs.models import JobStatus
from helios_serve.web.errors import ApiError
from helios_serve.web.responses import CompactJSONResponse

POLL_HEADERS = {"openai-poll-after-ms": str(POLL_AFTER_MS)}


def build_router(service: VideosService, model: ModelInfo, limits: RequestLimits) -> APIRouter:
    """The video job routes around one service instance."""
    router = APIRouter(prefix="/v1/videos", tags=["videos"])

    @router.post("")
    async def create_video(request: Request) -> Response:
        body = await read_create_request(request, model, limits)
        video = await service.create(body, read_claim(request.headers, "create", body))
        return CompactJSONResponse(video, headers=POLL_HEADERS)

    # before /{video_id}: a literal path segment must never be read as a video id
    @router.post("/extensions")
    async def extend_video(request: Request) -> Response:
        body = await read_extend_request(request, limits)
        video = await service.extend(body, read_claim(request.headers, "extend", body))
        return CompactJSONResponse(video, headers=POLL_HEADERS)

    @router.post("/sync")
    async def create_video_sync(request: Request) -> Response:
        video = await service.create(await read_create_request(request, model, limits))
        job = await service.wait(video["id"])
        if job.status is JobStatus.FAILED:
            raise ApiError(
                500 if job.error_code == "internal_error" else 422,
                job.error_message or "generation failed",
                code=job.error_code or "generation_failed",
            )
        content = await service.content(job.id, "video")
        return FileResponse(
            content.path,
            media_type=content.media_type,
            filename=content.download_name,
            headers={"x-video-id": job.id},
        )

    @router.get("")
    async def list_videos(
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        order: Literal["asc", "desc"] = "desc",
    ) -> Response:
        return CompactJSONResponse(await service.list(after, limit, order))

    @router.get("/{video_id}")
    async def retrieve_video(video_id: str) -> Response:
        return CompactJSONResponse(await service.get(video_id), headers=POLL_HEADERS)

    @router.delete("/{video_id}")
    async def delete_video(video_id: str) -> Response:
        return CompactJSONResponse(await service.delete(video_id))

    @router.get("/{video_id}/content")
    async def download_content(video_id: str, variant: str = "video") -> Response:
        content = await service.content(video_id, variant)
        return FileResponse(
            content.path, media_type=content.media_type, filename=content.download_name
        )

    @router.post("/{video_id}/remix")
    async def remix_video(video_id: str, request: Request) -> Response:
        body = await read_remix_request(request, limits)
        claim = read_claim(request.headers, f"remix:{video_id}", body)
        return CompactJSONResponse(
            await service.remix(video_id, body.get("prompt"), claim), headers=POLL_HEADERS
        )

    return router
