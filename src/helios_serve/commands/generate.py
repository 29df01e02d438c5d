"""`helios generate` (one video offline) and `helios tiny-model` (a tiny random checkpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path

from helios_serve.commands import flags
from helios_serve.core.types import Variant
from helios_serve.errors import InvalidInputError


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


def register(sub: flags.Subparsers) -> None:
    _register_generate(sub)
    p = sub.add_parser("tiny-model", help="write a tiny random checkpoint (diffusers layout)")
    p.add_argument("directory", type=Path)
    p.add_argument("--variant", choices=[v.value for v in Variant], default="distilled")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run_tiny_model)


def _register_generate(sub: flags.Subparsers) -> None:
    p = sub.add_parser("generate", help="generate one video offline")
    flags.add_model_flags(p)
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
    p.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from helios_serve.compose.engine import load
    from helios_serve.core.requests import seed_or_draw
    from helios_serve.generate import GenerateOptions, generate_video
    from helios_serve.media.decode import load_image, load_video

    image = load_image(_existing(args.image, "--image")) if args.image else None
    video = load_video(_existing(args.video, "--video")) if args.video else None
    seed = seed_or_draw(args.seed)
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
    model = load(flags.engine_options(args))
    try:
        summary = generate_video(
            model, opts, image=image, video=video, show_progress=not args.quiet
        )
    finally:
        if model.parallel is not None:
            model.parallel.close()
    print(  # noqa: T201
        f"wrote {args.out}: {summary.frames} frames {summary.width}x{summary.height} "
        f"({summary.seconds_of_video:.2f} s at {args.fps} fps), {summary.chunks} chunks in "
        f"{summary.wall_s:.2f} s ({summary.per_chunk_s:.2f} s per chunk), seed {seed}"
    )
    return 0


def _existing(path: Path, flag: str) -> Path:
    if not path.is_file():
        raise InvalidInputError(f"{flag} {path}: no such file", param=flag)
    return path


def run_tiny_model(args: argparse.Namespace) -> int:
    from helios_serve.engine.tiny import write_tiny_checkpoint

    write_tiny_checkpoint(args.directory, Variant(args.variant), args.seed)
    print(  # noqa: T201
        f"wrote a tiny random {args.variant} checkpoint to {args.directory} "
        "(random weights: its output is noise)"
    )
    return 0
