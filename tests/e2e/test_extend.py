"""Extensions: the openai SDK's `videos.extend` continues a finished video from its saved state,
exactly as one uninterrupted stream whose prompt changed at that chunk."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import av
import httpx
import numpy as np
import openai
import pytest

from helios_serve.api.videos.fields import VideoCreateRequest
from helios_serve.api.videos.resolve import resolve_spec_fields
from helios_serve.core.spec import StreamRequest
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.service import describe
from helios_serve.engine.streamer import ChunkStreamer
from helios_serve.media.segments import Part, iter_frames, join_segments, write_segment

from .conftest import LiveServer

pytestmark = pytest.mark.slow
MODEL = "BestWishYsh/Helios-Distilled"
FIRST, SECOND = "a red fox runs through snow", "the fox leaps into a frozen river"
THIRD = "the fox sleeps in its den"
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
    5 chunks in all, cut to the 66 + 96 frames asked, encoded and joined as the server does."""
    params = resolve_spec_fields(
        VideoCreateRequest(prompt=FIRST, width=SIZE[0], height=SIZE[1], num_frames=66, seed=21),
        describe(model, MODEL),
    )
    stream = ChunkStreamer(model, StreamRequest(FIRST, SIZE[1], SIZE[0], 21, params.settings))
    chunks = [stream.next_chunk().frames for _ in range(2)]
    stream.set_prompt(SECOND)
    chunks += [stream.next_chunk().frames for _ in range(3)]
    keep = 66 + 96
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
    # seconds: the stitched whole (the source's 2.75 + 4), exactly the frames delivered
    assert done.seconds == "6.75" == f"{float(source.seconds) + 4:g}"
    assert done.model_extra is not None
    assert done.model_extra["num_frames"] == 66 + 96
    assert done.prompt == SECOND
    stitched = sdk.videos.download_content(done.id).read()

    want = expected_mp4(tiny_model("tiny"), tmp_path)
    assert hashlib.sha256(stitched).hexdigest() == hashlib.sha256(want.read_bytes()).hexdigest()
    # ...and it begins with the original: its first chunk is the same packets, so the same frames
    (tmp_path / "original.mp4").write_bytes(original)
    (tmp_path / "stitched.mp4").write_bytes(stitched)
    before = list(iter_frames(tmp_path / "original.mp4"))
    after = list(iter_frames(tmp_path / "stitched.mp4"))
    assert (len(before), len(after)) == (66, 162)
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
    assert done["num_frames"] == 66 + 48


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


def foreign_mp4(frames: np.ndarray, fps: int = 30) -> bytes:
    """An MP4 this server did not make: its own encoder settings, frame rate and size."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "30", "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return out.getvalue()


def decoded(mp4: bytes) -> np.ndarray:
    with av.open(io.BytesIO(mp4)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_sdk_extends_any_decodable_mp4(sdk: openai.OpenAI, distilled_server: LiveServer) -> None:
    """The documented path for a video we did not make (and the only one the SDK can send):
    continued from its frames at its own size; a clip under one chunk is padded."""
    y, x = np.mgrid[0:56, 0:100]
    picture = np.stack([x * 2.5, y * 4.5, np.where(x < 50, 40, 200)], axis=-1)  # a left half
    clip = np.repeat(picture[None].astype(np.uint8), 20, axis=0)  # ...so a shift would show
    upload = foreign_mp4(clip)
    extension = sdk.videos.extend(
        video=("clip.mp4", upload, "video/mp4"), prompt=SECOND, seconds="1"
    )
    assert extension.model_extra is not None
    assert extension.model_extra["extension_mode"] == "v2v"
    assert extension.model_extra["extended_from_video_id"] is None
    done = sdk.videos.poll(extension.id, poll_interval_ms=200)
    assert done.status == "completed", done
    assert (done.size, done.seconds) == ("100x56", "1.833")  # 20 + 24 frames at 24 fps
    assert done.model_extra is not None
    assert (done.model_extra["num_frames"], done.model_extra["generated_size"]) == (44, "128x64")
    frames = decoded(sdk.videos.download_content(done.id).read())
    assert frames.shape == (44, 56, 100, 3)
    assert np.abs(frames[:20].astype(int) - decoded(upload).astype(int)).mean() < 4
    thumbnail = sdk.videos.download_content(done.id, variant="thumbnail").read()
    assert thumbnail[:4] == b"RIFF"  # WebP

    # one of ours re-encoded is not byte for byte ours: continued from its frames as well
    source = sdk.videos.create_and_poll(
        prompt=FIRST, model=MODEL, size="128x64", extra_body={"num_frames": 33, "seed": 4}
    )
    copy = foreign_mp4(decoded(sdk.videos.download_content(source.id).read()), fps=24)
    again = sdk.videos.extend(video=("copy.mp4", copy, "video/mp4"), prompt=SECOND, seconds="1")
    done = sdk.videos.poll(again.id, poll_interval_ms=200)
    assert done.status == "completed", done
    assert done.model_extra is not None
    assert (done.model_extra["num_frames"], done.model_extra["extension_mode"]) == (57, "v2v")

    # what cannot be used is refused with a sentence that names no file of the server's
    with httpx.Client(base_url=distilled_server.url, timeout=30) as http:
        for data in (copy[: len(copy) // 3], b"not a video at all"):
            files = {"video": ("x.mp4", data, "video/mp4")}
            bad = http.post(
                "/v1/videos/extensions", data={"prompt": "p", "seconds": "1"}, files=files
            )
            assert bad.status_code in (400, 422), bad.text
            assert str(distilled_server.data_dir) not in bad.text
            assert "/" not in bad.json()["error"]["message"], bad.text


def test_a_remixed_extension_continues_the_same_video(
    sdk: openai.OpenAI, distilled_server: LiveServer
) -> None:
    """The videos page offers Remix on every finished card, extensions included."""
    source = sdk.videos.create_and_poll(
        prompt=FIRST, model=MODEL, size="128x64", extra_body={"num_frames": 33, "seed": 5}
    )
    with httpx.Client(base_url=distilled_server.url, timeout=30) as http:
        body = {"video": {"id": source.id}, "prompt": SECOND, "seconds": "1"}
        extension = http.post("/v1/videos/extensions", json=body).json()
    assert distilled_server.wait_done(extension["id"])["status"] == "completed"

    remix = sdk.videos.poll(sdk.videos.remix(extension["id"], prompt=THIRD).id)
    assert remix.status == "completed", remix
    assert remix.model_extra is not None
    assert remix.model_extra["extension_mode"] == "state"  # from the source's state again
    assert remix.model_extra["extended_from_video_id"] == source.id
    assert (remix.model_extra["num_frames"], remix.prompt) == (57, THIRD)
    assert remix.remixed_from_video_id == extension["id"]
    first = decoded(sdk.videos.download_content(source.id).read())
    remixed = decoded(sdk.videos.download_content(remix.id).read())
    np.testing.assert_array_equal(remixed[:33], first)  # the same packets open it

    # with the source gone, the extension's own opening frames are what is continued
    sdk.videos.delete(source.id)
    orphan = sdk.videos.poll(sdk.videos.remix(extension["id"], prompt=THIRD).id)
    assert orphan.status == "completed", orphan
    assert orphan.model_extra is not None
    assert orphan.model_extra["extension_mode"] == "v2v"
    assert orphan.model_extra["num_frames"] == 57
