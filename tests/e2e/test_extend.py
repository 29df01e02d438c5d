"""Extensions: the openai SDK's `videos.extend` continues a finished video from its saved state,
exactly as one uninterrupted stream whose prompt changed at that chunk."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from helios_serve.api.videos.fields import VideoCreateRequest
from helios_serve.api.videos.resolve import resolve_spec_fields
from helios_serve.core.spec import StreamRequest, delivered_frames
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.service import describe
from helios_serve.engine.streamer import ChunkStreamer
from helios_serve.media.segments import Part, iter_frames, join_segments, write_segment

from .conftest import LiveServer

pytestmark = pytest.mark.slow
MODEL = "BestWishYsh/Helios-Distilled"
FIRST, SECOND = "a red fox runs through snow", "the fox leaps into a frozen river"
SIZE = (128, 64)


@pytest.fixture(scope="module")
def sdk(distilled_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{distilled_server.url}/v1", api_key="unused", max_retries=0)


def create_source(sdk: openai.OpenAI) -> openai.types.Video:
    video = sdk.videos.create_and_poll(
        prompt=FIRST,
        model=MODEL,
        size=f"{SIZE[0]}x{SIZE[1]}",  # type: ignore[arg-type]
        extra_body={"num_frames": 66, "seed": 21},
        poll_interval_ms=200,
    )
    assert video.status == "completed", video
    return video


def expected_mp4(model: LoadedModel, tmp: Path) -> Path:
    """The stream the extension must equal: 2 chunks of FIRST, then SECOND from chunk 2 on,
    5 chunks in all (66 + 96 frames asked), encoded and joined as the server does."""
    params = resolve_spec_fields(
        VideoCreateRequest(prompt=FIRST, width=SIZE[0], height=SIZE[1], num_frames=66, seed=21),
        describe(model, MODEL),
    )
    stream = ChunkStreamer(model, StreamRequest(FIRST, SIZE[1], SIZE[0], 21, params.settings))
    chunks = [stream.next_chunk().frames for _ in range(2)]
    stream.set_prompt(SECOND)
    chunks += [stream.next_chunk().frames for _ in range(3)]
    keep = delivered_frames(33 * 5)
    parts = []
    for k, frames in enumerate(chunks):
        frames = frames[: keep - 33 * k]
        path = tmp / f"expected-{k}.mp4"
        write_segment(path, frames, fps=24)
        parts.append(Part(path))
    out = tmp / "expected.mp4"
    join_segments(parts, out, fps=24)
    return out


def test_sdk_extend_continues_the_saved_stream_exactly(
    sdk: openai.OpenAI,
    distilled_server: LiveServer,
    tiny_model: Callable[[str], LoadedModel],
    tmp_path: Path,
) -> None:
    source = create_source(sdk)
    original = sdk.videos.download_content(source.id).read()
    # the SDK sends `video` as a file (it refuses {"id": ...}); ours is recognised by its bytes
    extension = sdk.videos.extend(
        video=("source.mp4", original, "video/mp4"), prompt=SECOND, seconds="4"
    )
    assert extension.model_extra is not None
    assert extension.model_extra["extended_from_video_id"] == source.id
    assert extension.model_extra["extension_mode"] == "state"
    done = sdk.videos.poll(extension.id, poll_interval_ms=200)
    assert done.status == "completed", done
    # seconds echo what was asked, for the stitched whole (the source's 2.75 + 4); the frames
    # delivered are whole chunks: 66 + 96 asked -> 165
    assert done.seconds == f"{float(source.seconds) + 4:g}"
    assert done.model_extra is not None
    assert done.model_extra["num_frames"] == 165
    assert done.prompt == SECOND
    stitched = sdk.videos.download_content(done.id).read()

    want = expected_mp4(tiny_model("tiny"), tmp_path)
    assert hashlib.sha256(stitched).hexdigest() == hashlib.sha256(want.read_bytes()).hexdigest()
    # ...and it begins with the original: its first chunk is the same packets, so the same frames
    (tmp_path / "original.mp4").write_bytes(original)
    (tmp_path / "stitched.mp4").write_bytes(stitched)
    before = list(iter_frames(tmp_path / "original.mp4"))
    after = list(iter_frames(tmp_path / "stitched.mp4"))
    assert (len(before), len(after)) == (65, 165)
    for a, b in zip(before[:33], after[:33], strict=True):
        np.testing.assert_array_equal(a, b)

    # the documented JSON form names the video by id: the same request, the same bytes
    with httpx.Client(base_url=distilled_server.url, timeout=30) as http:
        body = {"video": {"id": source.id}, "prompt": SECOND, "seconds": "4"}
        by_id = http.post("/v1/videos/extensions", json=body).json()
    again = distilled_server.wait_done(by_id["id"])
    assert again["extension_mode"] == "state"
    with httpx.Client(base_url=distilled_server.url, timeout=30) as http:
        same = http.get(f"/v1/videos/{by_id['id']}/content").content
    assert same == stitched


def test_a_video_without_its_state_is_extended_from_its_frames(
    sdk: openai.OpenAI, distilled_server: LiveServer
) -> None:
    source = create_source(sdk)
    folder = distilled_server.data_dir / "videos" / source.id
    for name in ("state.safetensors", "tail.mp4"):  # as a video made before states were kept
        (folder / name).unlink()
    with httpx.Client(base_url=distilled_server.url, timeout=30) as http:
        body = {"video": {"id": source.id}, "prompt": SECOND, "seconds": "2"}
        created = http.post("/v1/videos/extensions", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["extension_mode"] == "v2v"
    done = distilled_server.wait_done(created.json()["id"])
    assert done["status"] == "completed", done
    assert done["num_frames"] == 65 + delivered_frames(48)


def test_bad_extensions_are_refused_clearly(distilled_server: LiveServer) -> None:
    with httpx.Client(base_url=distilled_server.url, timeout=30) as http:
        missing = http.post(
            "/v1/videos/extensions",
            json={"video": {"id": "video_" + "0" * 32}, "prompt": "x", "seconds": "4"},
        )
        assert missing.status_code == 404, missing.text
        for body, param in (
            ({"prompt": "x", "seconds": "4"}, "video"),
            ({"video": {"id": "video_x"}, "seconds": "4"}, "prompt"),
            ({"video": {"id": "video_x"}, "prompt": "x"}, "seconds"),
            ({"video": {"id": "video_x"}, "prompt": "x", "seconds": "0"}, "seconds"),
            ({"video": {"id": "video_x"}, "prompt": "x", "seconds": "4", "size": "1x1"}, "size"),
        ):
            response = http.post("/v1/videos/extensions", json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"]["param"] == param
        queued = http.post("/v1/videos", json={"prompt": "slow", "num_frames": 33}).json()
        early = http.post(
            "/v1/videos/extensions",
            json={"video": {"id": queued["id"]}, "prompt": "x", "seconds": "4"},
        )
        assert early.status_code == 409, early.text
