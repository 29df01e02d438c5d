"""Pure session transitions; a rejected command leaves the snapshot byte-identical."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from helios_serve.realtime.reactor import state_machine as sm
from helios_serve.realtime.reactor.protocol import CommandError

IMAGE = sm.ReferenceImage(np.zeros((24, 32, 3), dtype=np.uint8))


def running(*prompts: tuple[int, str]) -> sm.SessionState:
    s = sm.set_prompt(sm.SessionState(), "first")
    for chunk, prompt in prompts:
        s = sm.schedule_prompt(s, prompt, chunk)
    return sm.start(s)


def test_initial_snapshot() -> None:
    assert sm.SessionState().snapshot() == {
        "started": False,
        "running": False,
        "paused": False,
        "image_set": False,
        "current_chunk": 0,
        "current_frame": 0,
        "current_prompt": None,
        "image_strength": 0.5,
        "scheduled_prompts": [],
        "sr_scale": "off",
        "seed": -1,
    }


def test_set_prompt_targets_chunk_zero_then_the_next_unclaimed_chunk() -> None:
    s = running()
    s, plan = sm.claim_chunk(s)
    assert (plan.index, plan.prompt, plan.prompt_changed) == (0, "first", True)
    s = sm.set_prompt(s, "second")
    assert s.snapshot()["scheduled_prompts"] == [{"prompt": "second", "chunk": 1}]
    s, plan = sm.claim_chunk(s)
    assert (plan.index, plan.prompt, plan.prompt_changed) == (1, "second", True)
    s, plan = sm.claim_chunk(s)
    assert (plan.prompt, plan.prompt_changed) == ("second", False)


def test_schedule_prompt_applies_at_its_chunk() -> None:
    s = running((2, "later"))
    prompts = []
    for _ in range(4):
        s, plan = sm.claim_chunk(s)
        s = sm.complete_chunk(s, 33)
        prompts.append(plan.prompt)
    assert prompts == ["first", "first", "later", "later"]
    assert s.snapshot()["current_chunk"] == 4
    assert s.snapshot()["current_frame"] == 132


def test_paused_set_prompt_applies_on_resume() -> None:
    s = running()
    s, _ = sm.claim_chunk(s)
    s = sm.pause(sm.complete_chunk(s, 33))
    s = sm.resume(sm.set_prompt(s, "after pause"))
    _, plan = sm.claim_chunk(s)
    assert (plan.index, plan.prompt) == (1, "after pause")


def test_reset_clears_everything_but_settings() -> None:
    s = sm.set_seed(sm.set_sr_scale(running((5, "x")), 2), 9)
    s = sm.set_image(s, IMAGE)
    s, _ = sm.claim_chunk(s)
    s = sm.reset(sm.complete_chunk(s, 33))
    snap = s.snapshot()
    assert snap["started"] is False
    assert snap["image_set"] is False
    assert (snap["current_chunk"], snap["current_frame"]) == (0, 0)
    assert snap["scheduled_prompts"] == []
    assert (snap["sr_scale"], snap["seed"]) == ("2x", 9)
    assert s.epoch == 1


Rejected = Callable[[sm.SessionState], sm.SessionState]


@pytest.mark.parametrize(
    ("setup", "command"),
    [
        (lambda: sm.SessionState(), sm.start),  # no prompt
        (lambda: sm.schedule_prompt(sm.SessionState(), "p", 3), sm.start),  # none at chunk 0
        (lambda: running(), sm.start),  # already started
        (lambda: sm.SessionState(), sm.pause),
        (lambda: running(), sm.resume),
        (lambda: sm.claim_chunk(running())[0], lambda s: sm.schedule_prompt(s, "late", 0)),
        (lambda: running(), lambda s: sm.set_image_strength(s, 2.0)),
        (lambda: running(), lambda s: sm.set_sr_scale(s, 3)),
    ],
)
def test_rejected_transition_changes_nothing(
    setup: Callable[[], sm.SessionState], command: Rejected
) -> None:
    state = setup()
    before = json.dumps(state.snapshot())
    with pytest.raises(CommandError):
        command(state)
    assert json.dumps(state.snapshot()) == before


def test_fail_chunk_pauses_and_gives_the_index_back() -> None:
    s, _ = sm.claim_chunk(running())
    s = sm.fail_chunk(s)
    assert s.paused
    assert s.next_chunk == 0
