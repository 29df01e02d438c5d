"""Where the server keeps its data; the only place environment variables are read is the CLI."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "HELIOS_DATA_DIR"


def default_data_dir() -> Path:
    """`$HELIOS_DATA_DIR`, else `$XDG_DATA_HOME/helios-serve`, else ~/.local/share/helios-serve."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "helios-serve"
