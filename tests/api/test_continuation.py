"""How extensions and remixed extensions continue a video, and the `seconds` they report."""

from __future__ import annotations

from dataclasses import replace

from helios_serve.api.videos.continuation import continue_frames, continue_video
from helios_serve.api.videos.protocol import seconds_of
from helios_serve.core.settings import SamplingSettings
from helios_serve.jobs.models import GenerationSpec, Job, JobStatus
from helios_serve.jobs.plan import plan_for


def finished(num_frames: int, delivered: int | None = None, **spec: object) -> Job:
    fields: dict[str, object] = {
        "prompt": "p",
        "negative_prompt": "",
        "width": 64,
        "height": 64,
        "num_frames": num_frames,
        "fps": 24,
        "seed": 1,
        "settings": SamplingSettings(),
    }
    job = Job.new("m", GenerationSpec(**(fields | spec)))  # type: ignore[arg-type]
    return replace(job, status=JobStatus.COMPLETED, num_frames_delivered=delivered or num_frames)


def test_a_state_extension_adds_exactly_what_was_asked() -> None:
    source = finished(96)  # 4 s: chunks 0-2, the last one cut to 30 frames
    plan = continue_video(source, 8 * 24, from_state=True)
    # opens with the source's chunks whole (its tail's 3 cut frames too), then new chunks
    assert (plan.extension.mode, plan.extension.base_frames, plan.extension.base_chunks) == (
        "state",
        99,
        3,
    )
    assert plan.num_frames == 96 + 192  # the whole is the source plus 8 s: "12" seconds
    job = Job.new("m", replace(source.spec, num_frames=plan.num_frames, extension=plan.extension))
    steps = plan_for(job.spec)
    assert (steps.first_chunk, steps.end_chunk, steps.own_frames) == (3, 9, 189)
    assert seconds_of(job) == "12"


def test_a_video_made_when_lengths_were_trimmed_to_4k_plus_1_is_continued_whole() -> None:
    legacy = finished(99, delivered=97)  # 3 chunks; its MP4 kept 97 frames
    plan = continue_video(legacy, 48, from_state=True)
    assert plan.extension.base_frames == 99  # chunks 0-1 from its video, chunk 2 from its tail
    assert plan.num_frames == 97 + 48


def test_an_extension_smaller_than_the_cut_tail_still_makes_a_frame() -> None:
    source = finished(34)  # chunk 1 keeps 1 frame of 33: the base has 32 more than the video
    plan = continue_video(source, 24, from_state=True)
    assert plan.extension.base_frames == 66
    assert plan.num_frames == 67


def test_frames_extensions_and_uploads_open_with_every_delivered_frame() -> None:
    plan = continue_video(finished(50), 24, from_state=False)
    assert (plan.extension.mode, plan.extension.base_frames, plan.num_frames) == ("v2v", 50, 74)
    upload = continue_frames(3, 48)  # a 3-frame clip: padded by the engine, kept as it is
    assert (upload.extension.source_id, upload.extension.base_frames, upload.num_frames) == (
        None,
        3,
        51,
    )


def test_seconds_are_the_delivered_length_or_the_literal_asked() -> None:
    assert seconds_of(finished(99)) == "4.125"  # a bare create: 99 frames at 24 fps
    assert seconds_of(finished(96, requested_seconds="4")) == "4"
    assert seconds_of(finished(24, fps=12, requested_seconds="2")) == "2"
    # a row made when 99 asked gave 97: the literal is not echoed, the real length is
    assert seconds_of(finished(96, delivered=97, requested_seconds="4")) == "4.042"
