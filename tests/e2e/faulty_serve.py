"""`helios serve` with a fault injected into its engine process (test-only launcher).

`python -c '…main()' HANG_FILE serve ARGS…` runs the real CLI with a step hook that blocks the
engine forever inside chunk 2 or later of a stream, as a deadlock in native code would, while
HANG_FILE exists. The file holds how many hangs are left (empty: one); each hang counts one down
and the last removes it, so a restarted engine runs normally. The hook reaches the engine
through `ChildSpec.step_hook`, the seam production leaves empty.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from helios_serve import cli
from helios_serve.core.types import StepProgress

HANG_FROM_CHUNK = 2
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HangWhileFileExists:
    """The step hook (pickled into the engine process, so a module-level class)."""

    path: Path

    def __call__(self, progress: StepProgress) -> None:
        if progress.chunk_index >= HANG_FROM_CHUNK and take_one(self.path):
            logger.warning("test fault %s: blocking the engine inside a chunk", self.path)
            threading.Event().wait()


def take_one(path: Path) -> bool:
    """Count one hang down from the file; False when none is left."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return False
    left = int(text) if text.isdigit() else 1
    if left > 1:
        path.write_text(str(left - 1))
    else:
        path.unlink(missing_ok=True)
    return True


def main() -> None:
    hang_file, *argv = sys.argv[1:]
    sys.exit(cli.main(argv, step_hook=HangWhileFileExists(Path(hang_file))))


if __name__ == "__main__":
    main()
