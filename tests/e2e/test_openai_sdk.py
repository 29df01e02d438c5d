"""The official `openai` SDK against a live server on the tiny Distilled checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from helios_serve.media.decode import probe_video

from .conftest import LiveServer

pytestmark = pytest.mark.slow
MODEL = "BestWishYsh/Helios-Distilled"
KNOBS = {"pyramid_num_inference_steps_list": [1, 1, 1], "is_amplify_first_chunk": False}


@pytest.fixture(scope="module")
def sdk(distilled_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{distilled_server.url}/v1", api_key="unused", max_retries=0)


def test_create_and_poll_then_download(sdk: openai.OpenAI, tmp_path: Path) -> None:
    video = sdk.videos.create_and_poll(
        prompt="a red fox runs through snow",
        model=MODEL,
        size="128x128",  # type: ignore[arg-type]
        extra_body={"num_frames": 33, "seed": 3, "extra_params": KNOBS},
        poll_interval_ms=200,
    )
    assert video.status == "completed"
    assert video.progress == 100
    assert video.size == "128x128"
    content = sdk.videos.download_content(video.id)
    out = tmp_path / "fox.mp4"
    content.write_to_file(out)
    assert probe_video(out).frames == 33
    thumb = sdk.videos.download_content(video.id, variant="thumbnail")
    assert thumb.read()[8:12] == b"WEBP"  # OpenAI documents image/webp


def test_extra_params_as_json_string_and_retrieve_list_delete(sdk: openai.OpenAI) -> None:
    created = sdk.videos.create(
        prompt="waves",
        model=MODEL,
        size="128x128",  # type: ignore[arg-type]
        extra_body={"num_frames": 33, "extra_params": json.dumps(KNOBS)},
    )
    assert created.status in ("queued", "in_progress")
    assert sdk.videos.retrieve(created.id).id == created.id
    assert created.id in [v.id for v in sdk.videos.list(limit=100).data]
    deleted = sdk.videos.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(created.id)


def test_bad_request_raises_with_the_param(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.videos.create(prompt="x", model=MODEL, extra_body={"extra_params": {"no_such_knob": 1}})
    assert "no_such_knob" in str(info.value)
