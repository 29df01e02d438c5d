"""Job vocabulary: statuses, the transition table, ids and the spec's JSON form."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import delivered_frames
from helios_serve.errors import HeliosError
from helios_serve.jobs.models import (
    TRANSITIONS,
    GenerationSpec,
    InvalidTransitionError,
    Job,
    JobNotFoundError,
    JobStatus,
    check_transition,
    is_valid_job_id,
    new_job_id,
)

S = JobStatus
LEGAL = {
    (S.QUEUED, S.IN_PROGRESS),
    (S.QUEUED, S.FAILED),
    (S.IN_PROGRESS, S.COMPLETED),
    (S.IN_PROGRESS, S.FAILED),
    (S.IN_PROGRESS, S.QUEUED),
}


def test_status_values_are_openai_wire_strings() -> None:
    assert [s.value for s in JobStatus] == ["queued", "in_progress", "completed", "failed"]
    assert [s.is_terminal for s in JobStatus] == [False, False, True, True]


def test_transition_table_is_exactly_the_legal_set() -> None:
    table = {(old, new) for old, targets in TRANSITIONS.items() for new in targets}
    assert table == LEGAL


@pytest.mark.parametrize(("old", "new"), sorted(LEGAL))
def test_legal_transitions_pass(old: JobStatus, new: JobStatus) -> None:
    check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"), [p for p in itertools.product(JobStatus, repeat=2) if p not in LEGAL]
)
def test_illegal_transitions_raise(old: JobStatus, new: JobStatus) -> None:
    with pytest.raises(InvalidTransitionError) as info:
        check_transition(old, new)
    assert info.value.code == "invalid_state"
    assert isinstance(info.value, HeliosError)


def test_error_codes() -> None:
    assert JobNotFoundError("x").code == "video_not_found"
    assert issubclass(JobNotFoundError, HeliosError)


def test_new_job_ids_are_valid_and_unique() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_valid_job_id(i) and len(i) == 38 for i in ids)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "video_",
        "video_" + "a" * 31,
        "video_" + "a" * 33,
        "video_" + "A" * 32,
        "video_" + "a" * 32 + "\n",
        "VIDEO_" + "a" * 32,
        "../etc/passwd",
        "video_../../x",
        "/etc/passwd",
        "video_" + "a" * 30 + "/.",
        "video_" + "g" * 32,
        None,
        123,
    ],
)
def test_malformed_ids_are_rejected(text: object) -> None:
    assert not is_valid_job_id(text)


def test_spec_json_round_trip_keeps_tuples(make_spec: Callable[..., GenerationSpec]) -> None:
    spec = make_spec(
        settings=SamplingSettings(
            pyramid_steps=(2, 3, 4),
            image_noise_sigma=(0.1, 0.2),
            video_noise_sigma=(0.3, 0.4),
            guidance_scale=1.0,
            amplify_first_chunk=True,
        ),
        reference_file="reference.png",
        reference_kind="image",
    )
    text = json.dumps(spec.to_json(), allow_nan=False)
    back = GenerationSpec.from_json(json.loads(text))
    assert back == spec
    assert isinstance(back.settings.pyramid_steps, tuple)
    assert isinstance(back.settings.image_noise_sigma, tuple)


def test_spec_rejects_impossible_values(make_spec: Callable[..., GenerationSpec]) -> None:
    with pytest.raises(ValueError, match="width"):
        make_spec(width=0)
    with pytest.raises(ValueError, match="together"):
        make_spec(reference_file="reference.png")
    data = make_spec().to_json() | {"reference_kind": "audio", "reference_file": "x"}
    with pytest.raises(ValueError, match="reference_kind"):
        GenerationSpec.from_json(data)


def test_new_job_defaults(make_spec: Callable[..., GenerationSpec]) -> None:
    spec = make_spec(num_frames=40)
    job = Job.new("helios", spec, created_at=123, remixed_from_video_id=new_job_id())
    assert job.status is JobStatus.QUEUED
    assert (job.progress, job.attempts, job.frames_done, job.created_at) == (0, 0, 0, 123)
    assert job.num_frames_delivered == delivered_frames(40) == 40  # exactly those asked
    assert job.remixed_from_video_id is not None


def test_job_rejects_malformed_id_and_progress(make_spec: Callable[..., GenerationSpec]) -> None:
    job = Job.new("helios", make_spec())
    with pytest.raises(ValueError, match="id"):
        Job.new("helios", make_spec(), job_id="video_../../x")
    with pytest.raises(ValueError, match="progress"):
        replace(job, progress=101)
