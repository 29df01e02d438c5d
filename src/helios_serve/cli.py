"""The `helios` command: serve, generate, tiny-model, bench. Argv and env become config here."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from helios_serve.config import default_data_dir
from helios_serve.core.requests import RequestError
from helios_serve.core.types import Variant
from helios_serve.errors import HeliosError, InvalidInputError

if TYPE_CHECKING:
    from helios_serve.cluster.maintenance import Upkeep
    from helios_serve.core.protocols import Engine
    from helios_serve.engine.loader import LoadedModel

logger = logging.getLogger("helios_serve")

FLAGS = {
    "prompt": "--prompt",
    "negative_prompt": "--negative-prompt",
    "num_inference_steps": "--steps",
    "pyramid_num_inference_steps_list": "--pyramid-steps",
    "guidance_scale": "--guidance",
    "is_amplify_first_chunk": "--amplify-first-chunk",
    "preset": "--preset",
    "width": "--width",
    "height": "--height",
    "num_frames": "--num-frames",
    "seconds": "--seconds",
    "fps": "--fps",
    "seed": "--seed",
}
"""The request vocabulary's names (`core.requests`) as `helios generate` spells them."""
API_KEYS_ENV = "HELIOS_API_KEYS"
DATABASE_ENV = "HELIOS_DATABASE"
STORAGE_ENV = "HELIOS_STORAGE"


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"every value must be at least 1, got {text!r}")
    return values


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
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


def _add_generate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("generate", help="generate one video offline")
    _add_model_flags(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--image", type=Path, default=None, help="reference image (I2V)")
    p.add_argument("--video", type=Path, default=None, help="video to continue (V2V, >= 33 frames)")
    p.add_argument(
        "--preset",
        choices=[v.value for v in Variant],
        default=None,
        help="sampling preset (default: the checkpoint's own variant)",
    )
    p.add_argument("--steps", type=int, default=None, help="denoising steps (single stage)")
    p.add_argument(
        "--pyramid-steps",
        type=_positive_ints,
        default=None,
        help="steps per pyramid stage, e.g. 2,2,2",
    )
    p.add_argument("--guidance", type=float, default=None, help="guidance scale")
    p.add_argument(
        "--amplify-first-chunk",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Distilled: double the first chunk's steps",
    )
    p.add_argument(
        "--cfg-zero-star",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Mid: CFG-Zero* guidance",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--num-frames", type=int, default=None)
    length.add_argument("--seconds", type=int, default=None, help="whole seconds at --fps")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="torch.Generator('cpu').manual_seed(S), as diffusers (default: random)",
    )
    p.add_argument("--max-sequence-length", type=int, default=None)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("helios_output.mp4"),
        help=".mp4 (H.264) or .npy (raw uint8 frames)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_generate)


def _add_tiny_model(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("tiny-model", help="write a tiny random checkpoint (diffusers layout)")
    p.add_argument("directory", type=Path)
    p.add_argument("--variant", choices=[v.value for v in Variant], default="distilled")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=_run_tiny_model)


def _add_serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="start the HTTP server")
    _add_model_flags(p)
    p.add_argument(
        "--served-model-name",
        default=None,
        help="the model id clients send and see (default: --model); --model stays "
        "accepted as an alias",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--max-queue", type=int, default=64, help="queued jobs before POST /v1/videos answers 429"
    )
    p.add_argument(
        "--api-key",
        action="append",
        default=None,
        help=f"require 'Authorization: Bearer KEY' (repeatable; also ${API_KEYS_ENV}, "
        "comma-separated); off by default",
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=1,
        help="real-time sessions at once (more get 503 or wait PENDING)",
    )
    p.add_argument(
        "--emission-fps", type=float, default=24.0, help="frame rate real-time sessions play at"
    )
    p.add_argument(
        "--session-idle-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a real-time session whose client is silent this long (no message, no signalling, "
        "no RTCP) ends and frees its slot; a client back sooner (reconnect()) keeps it "
        "(default 30)",
    )
    p.add_argument(
        "--sr-weights",
        type=Path,
        default=None,
        help="an SR network (spandrel-loadable) for set_sr_scale 2x/4x; "
        "default: bicubic resampling on the model's device",
    )
    _add_engine_flags(p)
    p.set_defaults(handler=_run_serve)


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
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
        metavar="paced:SECONDS",
        help="TEST ONLY: instead of a model, the paced test engine: every chunk takes SECONDS "
        "and its frames carry their chunk index and prompt in pixels (engine/paced.py); "
        "--model is then not loaded",
    )


def _add_cluster_flags(p: argparse.ArgumentParser) -> None:
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


def _add_worker(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("worker", help="cluster mode: run jobs from the queue on this GPU")
    _add_model_flags(p)
    _add_cluster_flags(p)
    _add_engine_flags(p)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--name", default=None, help="this worker's name (default: host-pid)")
    p.add_argument(
        "--session-port",
        type=int,
        default=None,
        help="serve real-time sessions on this port (gateways place sessions here and relay "
        "their signalling; the media flows between this worker and the client); off by default",
    )
    p.add_argument(
        "--session-host",
        default="127.0.0.1",
        help="the address gateways reach the session port at (bound too; default 127.0.0.1)",
    )
    p.add_argument("--max-sessions", type=int, default=1, help="real-time sessions at once")
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often the worker and its running job report in (default 2)",
    )
    p.set_defaults(handler=_run_worker)


def _add_gateway(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("gateway", help="cluster mode: the HTTP API, no model")
    _add_cluster_flags(p)
    p.add_argument("--data-dir", type=Path, default=None, help="a local cache of job files")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument("--api-key", action="append", default=None)
    p.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        help="an origin allowed to call /v1/videos and /metrics from a browser (repeatable)",
    )
    p.set_defaults(handler=_run_gateway)


def _add_db(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("db", help="cluster mode: the PostgreSQL schema")
    p.add_argument("action", choices=["upgrade"], help="upgrade: migrate to this version")
    p.add_argument("--database", required=True, metavar="URL")
    p.set_defaults(handler=_run_db)


def build_parser() -> argparse.ArgumentParser:
    from helios_serve.bench import register as register_bench
    from helios_serve.bench.dispatch_cli import register_dispatch
    from helios_serve.bench.egress import register_egress
    from helios_serve.bench.realtime import register_realtime

    parser = argparse.ArgumentParser(prog="helios", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_generate(sub)
    _add_tiny_model(sub)
    _add_worker(sub)
    _add_gateway(sub)
    _add_db(sub)
    register_bench(sub)
    register_realtime(sub)
    register_dispatch(sub)
    register_egress(sub)
    return parser


def _data_dir(args: argparse.Namespace) -> Path:
    return args.data_dir if args.data_dir is not None else default_data_dir()


def _load(args: argparse.Namespace) -> LoadedModel:
    import torch

    from helios_serve.engine.loader import LoadOptions, load_model

    vae_dtype = torch.bfloat16 if args.vae_dtype == "bfloat16" else torch.float32
    options = LoadOptions(
        device=args.device,
        vae_dtype=vae_dtype,
        attention_backend=args.attention_backend,
        compile=args.compile,
    )
    return load_model(args.model, _data_dir(args), options)


def _run_generate(args: argparse.Namespace) -> int:
    from helios_serve.generate import GenerateOptions, generate_video
    from helios_serve.media.decode import load_image, load_video

    image = load_image(_existing(args.image, "--image")) if args.image else None
    video = load_video(_existing(args.video, "--video")) if args.video else None
    from helios_serve.core.requests import check_seed, draw_seed

    seed = check_seed(args.seed)
    seed = draw_seed() if seed is None else seed
    opts = GenerateOptions(
        prompt=args.prompt,
        out=args.out,
        negative_prompt=args.negative_prompt,
        preset=Variant(args.preset) if args.preset else None,
        steps=args.steps,
        pyramid_steps=args.pyramid_steps,
        guidance=args.guidance,
        amplify_first_chunk=args.amplify_first_chunk,
        use_cfg_zero_star=args.cfg_zero_star,
        num_frames=args.num_frames,
        seconds=args.seconds,
        width=args.width,
        height=args.height,
        fps=args.fps,
        seed=seed,
        max_sequence_length=args.max_sequence_length,
    )
    model = _load(args)
    summary = generate_video(model, opts, image=image, video=video, show_progress=not args.quiet)
    print(
        f"wrote {args.out}: {summary.frames} frames {summary.width}x{summary.height} "
        f"({summary.seconds_of_video:.2f} s at {args.fps} fps), {summary.chunks} chunks in "
        f"{summary.wall_s:.2f} s ({summary.per_chunk_s:.2f} s per chunk), seed {seed}"
    )
    return 0


def _existing(path: Path, flag: str) -> Path:
    if not path.is_file():
        raise InvalidInputError(f"{flag} {path}: no such file", param=flag)
    return path


def _run_tiny_model(args: argparse.Namespace) -> int:
    from helios_serve.engine.tiny import write_tiny_checkpoint

    write_tiny_checkpoint(args.directory, Variant(args.variant), args.seed)
    print(
        f"wrote a tiny random {args.variant} checkpoint to {args.directory} "
        "(random weights: its output is noise)"
    )
    return 0


def _upkeep(args: argparse.Namespace) -> Upkeep:
    from helios_serve.cluster.maintenance import Upkeep

    if args.worker_timeout <= 0 or args.max_attempts < 1:
        raise InvalidInputError(
            "--worker-timeout must be positive and --max-attempts at least 1", param="cluster"
        )
    return Upkeep(
        worker_timeout_s=args.worker_timeout,
        max_attempts=args.max_attempts,
        interval_s=min(2.0, args.worker_timeout / 4),
    )


def _run_worker(args: argparse.Namespace) -> int:
    import socket

    from helios_serve.cluster.worker import WorkerOptions
    from helios_serve.serve import run_worker

    options = WorkerOptions(
        name=args.name or f"{socket.gethostname()}-{os.getpid()}",
        database=args.database,
        storage=args.storage,
        data_dir=_data_dir(args),
        upkeep=_upkeep(args),
        heartbeat_s=args.heartbeat_interval,
        session_host=args.session_host,
        session_port=args.session_port,
        max_sessions=args.max_sessions,
    )
    from helios_serve.jobs.datadir import DataDirLock

    with DataDirLock(options.data_dir):  # its scratch folder is emptied at start: one owner
        return run_worker(_engine(args), options)


def _run_gateway(args: argparse.Namespace) -> int:
    from helios_serve.cluster.gateway import GatewayOptions, run_gateway

    options = GatewayOptions(
        database=args.database,
        storage=args.storage,
        data_dir=_data_dir(args),
        host=args.host,
        port=args.port,
        api_keys=tuple(_api_keys(args)),
        max_queue=args.max_queue,
        cors_origins=tuple(args.cors_origin or ()),
        upkeep=_upkeep(args),
    )
    from helios_serve.jobs.datadir import DataDirLock

    with DataDirLock(options.data_dir):
        return run_gateway(options)


def _run_db(args: argparse.Namespace) -> int:
    from helios_serve.cluster.pg_schema import SCHEMA_VERSION
    from helios_serve.cluster.pg_store import PostgresJobStore

    PostgresJobStore(args.database).close()  # opening migrates
    print(f"the database is at schema version {SCHEMA_VERSION}")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    from helios_serve.jobs.datadir import DataDirLock
    from helios_serve.serve import ServerOptions, prepare_store, run_server

    keys = _api_keys(args)
    if args.max_queue < 1 or args.max_sessions < 1 or args.emission_fps <= 0:
        raise InvalidInputError(
            "--max-queue and --max-sessions must be at least 1, --emission-fps positive",
            param="serve",
        )
    if not 1 <= args.session_idle_timeout <= 3600:
        raise InvalidInputError("--session-idle-timeout must be 1..3600 seconds", param="serve")
    options = ServerOptions(
        host=args.host,
        port=args.port,
        data_dir=_data_dir(args),
        served_model_name=args.served_model_name,
        api_keys=tuple(keys),
        max_queue=args.max_queue,
        max_sessions=args.max_sessions,
        emission_fps=args.emission_fps,
        sr_weights=args.sr_weights,
        cors_origins=tuple(args.cors_origin or ()),
        max_connections=args.max_connections,
        session_idle_timeout_s=args.session_idle_timeout,
    )
    # before the model loads: a second server on this folder, or an unusable database, must
    # stop at once
    with DataDirLock(options.data_dir):
        store = prepare_store(options.data_dir)
        try:
            engine = _engine(args)
        except BaseException:
            store.close()
            raise
        return run_server(engine, options, store)


def _api_keys(args: argparse.Namespace) -> list[str]:
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
    return [k.strip() for k in keys]


def _engine(args: argparse.Namespace) -> Engine:
    """The engine `helios serve` runs: a supervised process, or in this process."""
    from helios_serve.engine.child import ChildSpec
    from helios_serve.engine.process import ProcessEngine
    from helios_serve.engine.service import LocalEngine, describe

    if args.engine is not None:
        from helios_serve.engine.paced import PacedEngine, paced_info, parse_engine_spec

        timing = parse_engine_spec(args.engine)
        logger.warning("serving the paced TEST engine (%.3g s per chunk): no model", timing.chunk_s)
        return PacedEngine(timing, paced_info(args.served_model_name or "paced"))
    served = args.served_model_name or args.model
    if args.engine_isolation == "thread":
        loaded = _load(args)
        aliases = tuple(a for a in {loaded.name} if a != served)
        return LocalEngine(loaded, describe(loaded, served, aliases))
    if args.engine_stall_timeout <= 0:
        raise InvalidInputError("--engine-stall-timeout must be positive", param="serve")
    spec = ChildSpec(
        model=args.model,
        data_dir=_data_dir(args),
        served_name=served,
        device=args.device,
        vae_dtype=args.vae_dtype,
        attention_backend=args.attention_backend,
        compile=args.compile,
        log_level=logging.DEBUG if args.verbose else logging.INFO,
    )
    engine = ProcessEngine(spec, stall_timeout_s=args.engine_stall_timeout)
    engine.launch()
    return engine


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from helios_serve.engine.loader import quiet_libraries

    quiet_libraries()
    try:
        code: int = args.handler(args)
    except HeliosError as exc:
        flag = FLAGS.get(exc.param or "") if isinstance(exc, RequestError) else None
        where = f"{flag}: " if flag else ""
        print(f"helios {args.command}: error: {where}{exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"helios {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
