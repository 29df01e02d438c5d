"""`helios bench`: the stream against diffusers' pipeline, same checkpoint, seed and settings.

Measures per-chunk latency (denoise, VAE decode), steady-state fps, time to the first chunk and
peak memory against stream length, prints a table, and with ``--out PREFIX`` writes
``PREFIX.json`` and ``PREFIX.png``. ``--arch 14b`` runs the real 14B architecture with random
weights on a CUDA GPU (no download) and adds achieved TFLOP/s.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from helios_serve.errors import HeliosError

from .plan import BenchError, make_plan, parse_device, parse_int_list, parse_presets

__all__ = ["add_arguments", "register", "run"]

DEFAULT_CHUNKS = "2,8,32"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--model",
        default="tiny",
        help="checkpoint: tiny, tiny-mid, tiny-base, a directory or a hub id (default: tiny)",
    )
    a(
        "--data-dir",
        type=Path,
        default=None,
        help="where tiny checkpoints are built (default: $HELIOS_DATA_DIR or "
        "~/.local/share/helios-serve)",
    )
    a("--device", type=parse_device, default="auto", help="auto, cpu, cuda or cuda:N")
    a(
        "--threads",
        type=int,
        default=None,
        help="CPU: torch intra-op threads (default: torch's choice)",
    )
    a(
        "--arch",
        choices=("tiny", "14b"),
        default="tiny",
        help="tiny: load --model; 14b: the real Helios 14B architecture with random bf16 weights "
        "built on the GPU (needs CUDA; --model is ignored)",
    )
    a(
        "--preset",
        type=parse_presets,
        default=None,
        metavar="distilled|mid|base[,...]",
        help="sampling preset(s), one measured configuration each (default: the checkpoint's "
        "variant; 14b: distilled). With a tiny --model, picks the tiny checkpoint too",
    )
    a(
        "--pyramid-steps",
        type=parse_int_list,
        default=None,
        metavar="1,1,1",
        help="steps per pyramid stage (distilled, mid)",
    )
    a("--steps", type=int, default=None, help="steps per chunk of the single-stage Base sampler")
    a("--no-amplify", action="store_true", help="no doubled steps on the first distilled chunk")
    a("--width", type=int, default=None, help="default 128 (tiny), 640 (14b)")
    a("--height", type=int, default=None, help="default 128 (tiny), 384 (14b)")
    a(
        "--chunks",
        type=parse_int_list,
        default=parse_int_list(DEFAULT_CHUNKS),
        metavar="2,8,32",
        help=f"stream lengths to measure peak memory at (default {DEFAULT_CHUNKS})",
    )
    a("--warmup", type=int, default=1, help="warm-up chunks before timing (default 1)")
    a("--skip-diffusers", action="store_true", help="measure the stream only")
    a("--compile", action="store_true", help="torch.compile the transformer blocks")
    a(
        "--overlap-decode",
        action="store_true",
        help="stream: decode chunk k on a second CUDA stream while chunk k+1 denoises "
        "(next_chunk(prefetch=True)); no per-call transformer timings then",
    )
    a(
        "--attention-backend",
        default="native",
        help="diffusers attention backend (native, _native_flash, _native_cudnn, ...)",
    )
    a("--vae-dtype", choices=("float32", "bfloat16"), default="float32", help="VAE precision")
    a("--seed", type=int, default=0)
    a("--out", default=None, metavar="PREFIX", help="write PREFIX.json and PREFIX.png")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `bench` sub-command; its handler is `run` (``set_defaults(handler=run)``)."""
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the stream against diffusers' pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed, starting with `helios bench`."""
    argv = getattr(args, "argv", None)
    if argv is not None:
        return shlex.join(["helios", "bench", *argv])
    if Path(sys.argv[0]).name == "helios" and "bench" in sys.argv[1:]:
        return shlex.join(["helios", *sys.argv[1:]])
    return shlex.join(["helios", "bench", *_flags(args)])


def _flags(args: argparse.Namespace) -> list[str]:
    """A canonical argv for `args` (when the real one is not known)."""
    out = []
    for key, value in sorted(vars(args).items()):
        if key in ("handler", "argv", "command") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, tuple):
            out += [flag, ",".join(str(getattr(v, "value", v)) for v in value)]
        else:
            out += [flag, str(value)]
    return out


def _settings(args: argparse.Namespace, width: int, height: int) -> dict[str, Any]:
    return {
        "model": args.model if args.arch == "tiny" else "helios-14b-random",
        "device": args.device,
        "threads": args.threads,
        "presets": [p.value for p in args.preset] if args.preset else None,
        "pyramid_steps": list(args.pyramid_steps) if args.pyramid_steps else None,
        "steps": args.steps,
        "amplify_first_chunk": not args.no_amplify,
        "width": width,
        "height": height,
        "chunks": sorted(set(args.chunks)),
        "warmup": args.warmup,
        "seed": args.seed,
        "compile": args.compile,
        "overlap_decode": args.overlap_decode,
        "attention_backend": args.attention_backend,
        "vae_dtype": args.vae_dtype,
        "skip_diffusers": args.skip_diffusers,
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _log(message: str) -> None:
    print(f"helios bench: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark: 0 on success, 2 (one line on stderr) for unusable flags or models."""
    from .measure import memory_kind
    from .report import build_report, format_table, plot
    from .runner import measure

    load_before = _load_average()
    try:
        plan = make_plan(args)
        results = []
        for cfg in plan.configs():
            results.append(measure(cfg, _log))
            del cfg  # let the next configuration's model load in this one's place
    except (BenchError, HeliosError) as exc:
        message = exc.message if isinstance(exc, HeliosError) else str(exc)
        print(f"helios bench: error: {message}", file=sys.stderr)
        return 2
    report = build_report(
        results,
        device=plan.device,
        arch=args.arch,
        command=command_line(args),
        settings=_settings(args, plan.width, plan.height),
        memory_kind=memory_kind(plan.device),
        load_average=load_before,
    )
    print(format_table(report), flush=True)
    if args.out:
        from .report import write_outputs

        write_outputs(report, plot, args.out, _log)
    return 0
