"""The engine pipe's messages: they survive pickling, and errors cross it as the caller needs."""

from __future__ import annotations

import pickle

import pytest

from helios_serve.core.protocols import Priority
from helios_serve.engine.messages import Call, Failure, NextChunk, Open, Opened, Result
from helios_serve.errors import (
    EngineFailedError,
    InvalidInputError,
    StreamCancelledError,
)


def test_messages_round_trip_through_pickle() -> None:
    for message in (
        Call(3, NextChunk(1, prefetch=True, checkpoint=True), Priority.JOB),
        Result(4, Opened(2, 5)),
    ):
        assert pickle.loads(pickle.dumps(message)) == message
    assert isinstance(Open.__match_args__, tuple)


@pytest.mark.parametrize(
    ("raised", "expected", "code"),
    [
        (StreamCancelledError("stop", param="x"), StreamCancelledError, "cancelled"),
        (InvalidInputError("bad size", param="size"), InvalidInputError, "invalid_input"),
        (MemoryError(), EngineFailedError, "out_of_memory"),
        (RuntimeError("CUDA error: out of memory"), EngineFailedError, "out_of_memory"),
        (KeyError("x"), EngineFailedError, "internal_error"),
    ],
)
def test_failures_become_the_errors_the_caller_acts_on(
    raised: BaseException, expected: type[Exception], code: str
) -> None:
    failure = pickle.loads(pickle.dumps(Failure.of(7, raised)))
    error = failure.error()
    assert type(error) is expected
    assert error.code == code
    if isinstance(raised, InvalidInputError | StreamCancelledError):
        assert (error.message, error.param) == (raised.message, raised.param)
