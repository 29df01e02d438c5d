"""Flags shared by several commands, and the options they become."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from helios_serve.config import default_data_dir
from helios_serve.core.settings import GUIDANCE_MODES
from helios_serve.core.step_cache import parse_step_cache_flag
from helios_serve.errors import InvalidInputError

if TYPE_CHECKING:
    from helios_serve.compose.engine import EngineOptions
    from helios_serve.engine.parallel.layout import ParallelLayout
    from helios_serve.web.auth import Access

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

API_KEYS_ENV = "HELIOS_API_KEYS"
DATABASE_ENV = "HELIOS_DATABASE"
STORAGE_ENV = "HELIOS_STORAGE"


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="tiny",
        help="checkpoint directory, hub id, or tiny / tiny-base / tiny-mid "
        "(a random test model built offline; its output is noise)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where models, jobs and outputs live (default: $HELIOS_DATA_DIR or "
        "~/.local/share/helios-serve)",
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: auto)")
    parser.add_argument(
        "--attention-backend",
        default="native",
        help="diffusers attention backend (default: native = PyTorch SDPA)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the transformer blocks (regional compilation)",
    )
    parser.add_argument(
        "--vae-dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="VAE precision (bf16 decodes faster at a small error)",
    )
    parser.add_argument(
        "--precision",
        choices=["exact", "fast"],
        default="exact",
        help="exact: diffusers' bf16 math (default); fast: FP8 linear layers in the transformer "
        "blocks (needs an FP8 GPU such as H100 and helios-serve[fast]; refuses to start elsewhere)",
    )
    parser.add_argument(
        "--compile-vae",
        action="store_true",
        help="torch.compile the VAE decoder (one graph per decode group size)",
    )
    parser.add_argument(
        "--guidance-passes",
        choices=GUIDANCE_MODES,
        default="sequential",
        help="how the two guidance passes run: sequential (default, bit-equal to diffusers) "
        "or batched (one forward of batch 2; equal within rounding)",
    )
    parser.add_argument(
        "--step-cache",
        type=_step_cache_flag,
        default=None,
        metavar="off|on|JSON",
        help="step caching (cache-dit DBCache) for requests that do not choose, on Base and "
        "Mid: off (default), on (vLLM-Omni's defaults) or a JSON object of its keys, e.g. "
        "'{\"residual_diff_threshold\": 0.12}'; requests choose with extra_params.step_cache",
    )
    add_parallel_flags(parser)


def add_parallel_flags(parser: argparse.ArgumentParser) -> None:
    """One stream over several GPUs (engine/parallel): the same flags for every command."""
    parser.add_argument(
        "--gpus",
        default=None,
        metavar="0,1,...",
        help="the GPUs this engine owns (one engine, one worker); rank 0 runs on the first",
    )
    parser.add_argument(
        "--parallel",
        default=None,
        metavar="ulysses=N|ring=N|cfg=2",
        help="how the transformer spreads over them: ulysses=N or ring=N (each forward's "
        "sequence split over N GPUs), cfg=2 (Base/Mid: the two guidance passes on two GPUs); "
        "combine with commas, e.g. ulysses=2,cfg=2",
    )
    parser.add_argument(
        "--decode-device",
        default=None,
        metavar="GPU",
        help="decode on this GPU (index, cuda:N or cpu) in a rank of its own while the next "
        "chunk denoises on the others",
    )


def _step_cache_flag(text: str) -> object:
    try:
        return parse_step_cache_flag(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine-isolation",
        choices=["process", "thread"],
        default="process",
        help="process (default): the model runs in a supervised child process, restarted if "
        "it dies or stalls; thread: in the server process (no restart)",
    )
    p.add_argument(
        "--engine-stall-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="restart the engine process when a call in flight reports no progress for this "
        "long (default 300: room for a compiled 14B model's first chunk)",
    )
    p.add_argument(
        "--engine",
        default=None,
        metavar="paced:SECONDS[,decode=SHARE]",
        help="TEST ONLY: instead of a model, the paced test engine: every chunk takes SECONDS "
        "(SHARE of it in the decode, 0.35 by default) and its frames carry their chunk index "
        "and prompt in pixels (engine/paced.py); --model is then not loaded",
    )


def add_listen_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)


def add_guard_flags(p: argparse.ArgumentParser) -> None:
    """Who may call, and how many at once: the same flags on every process that serves HTTP
    (`helios serve`, a gateway, a worker's session port)."""
    p.add_argument(
        "--api-key",
        action="append",
        default=None,
        help=f"require 'Authorization: Bearer KEY' (repeatable; also ${API_KEYS_ENV}, "
        "comma-separated); off by default",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="a web origin (https://app.example.com) allowed to call /v1/videos and /metrics "
        "from a browser (repeatable); by default only the real-time routes take cross-origin "
        "calls, as Reactor's SDK needs",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=256,
        help="open connections and requests at once; more get 503 (default 256)",
    )


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        required=not os.environ.get(DATABASE_ENV),
        metavar="URL",
        help=f"the cluster's PostgreSQL, postgresql://user@host:port/db (also ${DATABASE_ENV})",
        default=os.environ.get(DATABASE_ENV) or None,
    )
    p.add_argument(
        "--storage",
        required=not os.environ.get(STORAGE_ENV),
        metavar="URL",
        help="s3://bucket/prefix (endpoint and credentials the standard AWS way: "
        f"AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) or a shared folder (also ${STORAGE_ENV})",
        default=os.environ.get(STORAGE_ENV) or None,
    )
    p.add_argument(
        "--worker-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a worker silent this long has lost its job: another one resumes it (default 30)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="attempts a job gets across lost workers before it fails with worker_lost",
    )


# -- flags → options ----------------------------------------------------------------------


def data_dir(args: argparse.Namespace) -> Path:
    return args.data_dir if args.data_dir is not None else default_data_dir()


def api_keys(args: argparse.Namespace) -> tuple[str, ...]:
    """The keys from --api-key and $HELIOS_API_KEYS; an empty one (an unset variable in a
    shell command) would let anyone in, so it stops the start."""
    keys = list(args.api_key or [])
    if any(not k.strip() for k in keys):
        raise InvalidInputError(
            "--api-key is empty (an unset variable?): refusing to start with auth that any "
            "empty token passes",
            param="api_key",
        )
    env = os.environ.get(API_KEYS_ENV)
    if env is not None:
        from_env = [k.strip() for k in env.split(",")]
        if not any(from_env) or any(not k for k in from_env):
            raise InvalidInputError(
                f"${API_KEYS_ENV} is set but holds an empty key: unset it, or give real keys",
                param="api_key",
            )
        keys += from_env
    return tuple(k.strip() for k in keys)


def access(args: argparse.Namespace) -> Access:
    from helios_serve.web.auth import Access

    return Access(api_keys(args), tuple(args.cors_origin or ()))


def max_connections(args: argparse.Namespace) -> int:
    if args.max_connections < 1:
        raise InvalidInputError("--max-connections must be at least 1", param="max_connections")
    return int(args.max_connections)


def _layout(args: argparse.Namespace) -> ParallelLayout | None:
    from helios_serve.engine.parallel.layout import layout_from_flags

    return layout_from_flags(args.gpus, args.parallel, args.decode_device, args.device)


def engine_options(args: argparse.Namespace) -> EngineOptions:
    from helios_serve.compose.engine import EngineOptions

    return EngineOptions(
        data_dir=data_dir(args),
        model=args.model,
        served_name=getattr(args, "served_model_name", None),
        device=args.device,
        vae_dtype=args.vae_dtype,
        attention_backend=args.attention_backend,
        compile=args.compile,
        guidance=args.guidance_passes,
        step_cache=args.step_cache,
        precision=args.precision,
        compile_vae=args.compile_vae,
        layout=_layout(args),
        isolation=getattr(args, "engine_isolation", "thread"),
        stall_timeout_s=getattr(args, "engine_stall_timeout", 300.0),
        test_engine=getattr(args, "engine", None),
        log_level=logging.DEBUG if args.verbose else logging.INFO,
        step_hook=getattr(args, "step_hook", None),
    )
