"""The command line in this process: every process shape that serves HTTP takes the same guard
flags, and argv becomes the options the composition root builds from."""

from __future__ import annotations

import argparse

import pytest

from helios_serve.cli import build_parser
from helios_serve.commands import flags
from helios_serve.commands.cluster import upkeep
from helios_serve.errors import InvalidInputError
from helios_serve.web.auth import Access

CLUSTER = ["--database", "postgresql://db", "--storage", "s3://bucket/prefix"]
GUARDS = {"--api-key", "--cors-origin", "--max-connections"}


def _options(parser: argparse.ArgumentParser, command: str) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s for action in sub.choices[command]._actions for s in action.option_strings}


def test_every_shape_that_serves_http_takes_the_same_guards() -> None:
    parser = build_parser()
    for command in ("serve", "gateway", "worker"):
        assert _options(parser, command) >= GUARDS, command


def test_a_workers_flags_become_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(flags.API_KEYS_ENV, raising=False)
    argv = ["worker", *CLUSTER, "--session-port", "9000", "--api-key", "k1", "--api-key", "k2"]
    args = build_parser().parse_args([*argv, "--cors-origin", "https://a.example"])
    assert flags.access(args) == Access(("k1", "k2"), ("https://a.example",))
    assert flags.max_connections(args) == 256
    assert upkeep(args).worker_timeout_s == 30.0
    engine = flags.engine_options(args)
    assert (engine.model, engine.isolation, engine.test_engine) == ("tiny", "process", None)


def test_keys_from_the_environment_join_and_an_empty_one_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(flags.API_KEYS_ENV, "e1, e2")
    args = build_parser().parse_args(["gateway", *CLUSTER, "--api-key", "k"])
    assert flags.api_keys(args) == ("k", "e1", "e2")
    monkeypatch.setenv(flags.API_KEYS_ENV, " ")
    with pytest.raises(InvalidInputError, match="HELIOS_API_KEYS"):
        flags.api_keys(args)
    monkeypatch.delenv(flags.API_KEYS_ENV)
    with pytest.raises(InvalidInputError, match="empty"):
        flags.api_keys(build_parser().parse_args(["serve", "--api-key", ""]))


def test_bad_cluster_numbers_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="--worker-timeout must be positive"):
        upkeep(build_parser().parse_args(["gateway", *CLUSTER, "--worker-timeout", "0"]))
    with pytest.raises(InvalidInputError, match="--max-connections"):
        flags.max_connections(
            build_parser().parse_args(["gateway", *CLUSTER, "--max-connections", "0"])
        )


def test_the_benchmarks_join_through_their_entry_points() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"bench", "bench-realtime", "bench-dispatch", "bench-egress"} <= set(sub.choices)
