"""Composition root: a loaded engine model → the HTTP app → uvicorn.

Until the job API lands this serves `/health` and `/v1/models` only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from fastapi import FastAPI

from helios_serve import __version__
from helios_serve.core.types import Variant
from helios_serve.engine.loader import LoadedModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """What the HTTP layer may know about the model: names, never the engine itself."""

    name: str
    variant: Variant
    is_tiny: bool
    device: str
    created: int


def create_app(model: ServedModel) -> FastAPI:
    """Build the app around an already-loaded model (tests inject their own)."""
    app = FastAPI(title="helios-serve", version=__version__)

    @app.get("/health")
    def health() -> dict[str, object]:
        return {
            "status": "ok",
            "model": model.name,
            "variant": model.variant.value,
            "device": model.device,
            "tiny": model.is_tiny,
        }

    @app.get("/v1/models")
    def models() -> dict[str, object]:
        return {
            "object": "list",
            "data": [
                {
                    "id": model.name,
                    "object": "model",
                    "created": model.created,
                    "owned_by": "helios-serve",
                    "variant": model.variant.value,
                }
            ],
        }

    return app


def run_server(loaded: LoadedModel, host: str, port: int, served_model_name: str) -> int:
    """Serve until SIGINT/SIGTERM (uvicorn stops cleanly on both)."""
    import uvicorn

    served = ServedModel(
        name=served_model_name,
        variant=loaded.variant,
        is_tiny=loaded.is_tiny,
        device=str(loaded.device),
        created=int(time.time()),
    )
    config = uvicorn.Config(create_app(served), host=host, port=port, log_level="info")

    class AnnouncingServer(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: object = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                print(
                    f"helios-serve ready: http://{host}:{port} (model {served_model_name}, "
                    f"{loaded.variant.value}{', tiny random weights' if loaded.is_tiny else ''})",
                    flush=True,
                )

        def handle_exit(self, sig: int, frame: object) -> None:
            # A graceful stop is a clean exit (code 0): don't re-raise the signal afterwards.
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    AnnouncingServer(config).run()
    return 0
