"""The seed's clients, unchanged, against a live server running the request parser.

The scripts are run straight from `shared/seeds/clients/` (beside the checkout in CI), unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helios_serve.core.spec import ModelInfo

from .conftest import BASE, DISTILLED, MID, SEED_CLIENTS, png_bytes

CLIENT = SEED_CLIENTS / "helios_client.py"

needs_curl = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("bash") is None, reason="needs bash and curl"
)
pytestmark = pytest.mark.skipif(
    not SEED_CLIENTS.is_dir(),
    reason=f"the seed's client scripts are not at {SEED_CLIENTS} (shared/ beside the checkout, "
    "or HELIOS_SEED_CLIENTS)",
)


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


@needs_curl
@pytest.mark.parametrize(
    ("script", "model", "expect"),
    [
        (
            "run_helios_t2v.sh",
            BASE,
            {"num_frames": 99, "delivered_frames": 99, "settings.num_inference_steps": 50},
        ),
        (
            "run_helios_mid_stage2.sh",
            MID,
            {"settings.pyramid_steps": [20, 20, 20], "settings.use_cfg_zero_star": True},
        ),
        (
            "run_helios_distilled.sh",
            DISTILLED,
            {"settings.pyramid_steps": [2, 2, 2], "settings.amplify_first_chunk": True},
        ),
    ],
)
def test_seed_shell_scripts_run_unchanged(
    live_server: Any, script: str, model: ModelInfo, expect: dict[str, Any]
) -> None:
    with live_server(model) as server:
        out = run(["bash", str(SEED_CLIENTS / script)], {"API_URL": server.url})
        parsed = server.app.state.parsed
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Video job created: video_test" in out.stdout
    assert "Video generation completed!" in out.stdout
    assert len(parsed) == 1
    req = parsed[0]
    assert (req.prompt, req.model) == (
        "A serene lakeside sunrise with mist over the water.",
        model.name,
    )
    assert (req.width, req.height, req.seed) == (640, 384, 42)
    from .conftest import summary

    body = summary(req, model)
    for dotted, value in expect.items():
        node: Any = body
        for part in dotted.split("."):
            node = node[part]
        assert node == value, dotted


@pytest.mark.parametrize(
    ("preset", "model", "pyramid"),
    [("base", BASE, None), ("mid-stage2", MID, [20, 20, 20]), ("distilled", DISTILLED, [2, 2, 2])],
)
def test_seed_python_client_runs_unchanged(
    live_server: Any, tmp_path: Path, preset: str, model: ModelInfo, pyramid: list[int] | None
) -> None:
    pytest.importorskip("requests")
    image = tmp_path / "image.png"
    image.write_bytes(png_bytes(64, 48))
    args = [sys.executable, str(CLIENT), "--preset", preset, "--model", model.name]
    with live_server(model) as server:
        text_only = run([*args, "--api-url", server.url], {})
        with_image = run([*args, "--api-url", server.url, "--input-image", str(image)], {})
        parsed = server.app.state.parsed
    for out in (text_only, with_image):
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Video ID: video_test" in out.stdout
    t2v, i2v = parsed
    assert (t2v.width, t2v.height, t2v.num_frames, t2v.guidance_scale, t2v.seed) == (
        640,
        384,
        99,
        5.0,
        42,
    )
    assert t2v.reference is None
    assert i2v.reference is not None
    assert i2v.reference.kind == "image"
    assert t2v.extra.pyramid_num_inference_steps_list == pyramid
