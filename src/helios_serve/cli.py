"""The `helios` command: serve, generate, tiny-model, worker, gateway, db, and the commands of
installed plugins (the benchmarks'). Each command's flags and options live in
`helios_serve.commands`; what it builds, in `helios_serve.compose`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from helios_serve.commands import cluster, generate, serve
from helios_serve.core.requests import RequestError
from helios_serve.errors import HeliosError

if TYPE_CHECKING:
    from helios_serve.engine.child import StepHook

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
COMMANDS_GROUP = "helios_serve.commands"
"""Entry points that add sub-commands (`register(subparsers)`): the benchmarks live in their
own package (`helios_bench`), which the runtime never imports."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helios", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.register(sub)
    generate.register(sub)
    cluster.register(sub)
    for plugin in entry_points(group=COMMANDS_GROUP):  # e.g. helios_bench's commands
        plugin.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, step_hook: StepHook | None = None) -> int:
    """`step_hook`: the engine process's fault-injection seam, for tests (`ChildSpec`)."""
    args = build_parser().parse_args(argv)
    args.step_hook = step_hook
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
        print(f"helios {args.command}: error: {where}{exc.message}{_cause(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"helios {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


def _cause(exc: BaseException) -> str:
    """The first line of what caused `exc` (a driver's words: why a database is unreachable)."""
    lines = str(exc.__cause__ or "").strip().splitlines()
    return f" ({lines[0][:200]})" if lines else ""


if __name__ == "__main__":
    sys.exit(main())
