"""The seed's clients, unchanged, against a real server on the tiny checkpoints.

The shell scripts ask for 640x384 and 99 frames: three chunks, about 30 s each on CPU (most of it
the VAE decode at that size), with the Base and Mid servers set up as below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.live_server import LiveServer, live_server

from helios_serve.core.types import Variant
from helios_serve.engine.tiny import COARSE_LAYOUT, write_tiny_checkpoint
from helios_serve.media.decode import probe_video

from .conftest import SEED_CLIENTS, needs_seed_clients

pytestmark = [needs_seed_clients, pytest.mark.slow]


FAST_GUIDED = ("--step-cache", "on", "--guidance-passes", "batched")
"""Base and Mid serve the seed's 640x384 scripts with step caching and batched guidance (both
documented options, ~1.6x less CPU on the tiny model)."""


def _coarse_server(
    factory: pytest.TempPathFactory, variant: Variant, *flags: str
) -> Iterator[LiveServer]:
    """A server on a tiny checkpoint directory in the coarse layout: a (1, 4, 4) patch instead of
    the real (1, 2, 2) and one VAE residual block fewer, so 640x384 costs ~20 s a chunk on a CPU
    instead of ~100 s. The scripts check the API, not the frames; every other test serves the
    real layout. Served under the name the seed's clients ask for."""
    directory = factory.mktemp(f"coarse-{variant.value}") / "checkpoint"
    write_tiny_checkpoint(directory, variant, layout=COARSE_LAYOUT)
    served = f"BestWishYsh/Helios-{variant.value.capitalize()}"
    with live_server(
        factory.mktemp("data"), *flags, model=str(directory), served_name=served, graceful=False
    ) as server:
        yield server


@pytest.fixture(scope="module")
def distilled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """This module's own (tests/e2e/conftest.py's serves the real layout)."""
    yield from _coarse_server(tmp_path_factory, Variant.DISTILLED)


@pytest.fixture(scope="module")
def base_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _coarse_server(tmp_path_factory, Variant.BASE, *FAST_GUIDED)


@pytest.fixture(scope="module")
def mid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _coarse_server(tmp_path_factory, Variant.MID, *FAST_GUIDED)


def run_client(cmd: list[str], server: LiveServer) -> str:
    proc = subprocess.run(
        cmd,
        env={**os.environ, "API_URL": server.url},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def newest_video(server: LiveServer) -> dict[str, object]:
    with server.client() as http:
        listing = http.get("/v1/videos", params={"limit": 1}).json()
    video: dict[str, object] = listing["data"][0]
    return video


def assert_downloadable(server: LiveServer, video: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / f"{video['id']}.mp4"
    with server.client() as http:
        response = http.get(f"/v1/videos/{video['id']}/content")
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    out.write_bytes(response.content)
    info = probe_video(out)
    assert info.frames == video["num_frames"]
    assert (info.width, info.height) == (video["width"], video["height"])


@pytest.mark.parametrize(
    ("script", "server_name"),
    [
        ("run_helios_distilled.sh", "distilled_server"),
        ("run_helios_t2v.sh", "base_server"),
        ("run_helios_mid_stage2.sh", "mid_server"),
    ],
)
def test_seed_shell_scripts(
    script: str, server_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: LiveServer = request.getfixturevalue(server_name)
    out = run_client(["bash", str(SEED_CLIENTS / script)], server)
    assert "Video generation completed!" in out
    video = newest_video(server)
    assert video["status"] == "completed"
    assert (video["width"], video["height"], video["num_frames"]) == (640, 384, 99)  # as asked
    assert_downloadable(server, video, tmp_path)


SMALL = ["--width", "128", "--height", "128", "--num-frames", "33"]


@pytest.mark.parametrize(
    ("preset", "server_name", "model"),
    [
        ("base", "base_server", "BestWishYsh/Helios-Base"),
        ("mid-stage2", "mid_server", "BestWishYsh/Helios-Mid"),
        ("distilled", "distilled_server", "BestWishYsh/Helios-Distilled"),
    ],
)
def test_seed_python_client(
    preset: str, server_name: str, model: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: LiveServer = request.getfixturevalue(server_name)
    out = run_client(
        [
            sys.executable,
            str(SEED_CLIENTS / "helios_client.py"),
            "--api-url",
            server.url,
            "--model",
            model,
            "--preset",
            preset,
            *SMALL,
        ],
        server,
    )
    assert "Generation Complete" in out
    video = newest_video(server)
    assert (video["status"], video["num_frames"]) == ("completed", 33)
    assert_downloadable(server, video, tmp_path)


def test_seed_python_client_with_input_image(distilled_server: LiveServer, tmp_path: Path) -> None:
    image = tmp_path / "ref.jpg"
    Image.fromarray(np.full((96, 160, 3), (200, 120, 40), dtype=np.uint8)).save(image)
    out = run_client(
        [
            sys.executable,
            str(SEED_CLIENTS / "helios_client.py"),
            "--api-url",
            distilled_server.url,
            "--model",
            "BestWishYsh/Helios-Distilled",
            "--preset",
            "distilled",
            "--input-image",
            str(image),
            *SMALL,
        ],
        distilled_server,
    )
    assert "Generation Complete" in out
    video = newest_video(distilled_server)
    assert video["status"] == "completed"
    assert_downloadable(distilled_server, video, tmp_path)


def test_models_lists_the_served_name(distilled_server: LiveServer) -> None:
    models = httpx.get(f"{distilled_server.url}/v1/models", timeout=10).json()
    ids = [m["id"] for m in models["data"]]
    assert ids[0] == "BestWishYsh/Helios-Distilled", ids  # first; the checkpoint's own name after
