"""`python -m helios_bench ...`: the `helios bench` sub-command on its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import register


def _quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="helios")
    register(parser.add_subparsers(dest="command", required=True))
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(["bench", *args_list])
    args.argv = args_list
    _quiet_libraries()
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
