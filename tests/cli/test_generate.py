"""`helios generate` end to end on the tiny checkpoint, and its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helios_serve.cli import main
from helios_serve.media.decode import probe_video


def run(*args: str, data_dir: Path) -> int:
    return main(["generate", "--data-dir", str(data_dir), "--quiet", *args])


def test_generate_writes_an_mp4_pyav_decodes(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clip.mp4"
    code = run(
        "--model",
        "tiny",
        "--prompt",
        "a fox",
        "--num-frames",
        "66",
        "--width",
        "128",
        "--height",
        "64",
        "--pyramid-steps",
        "1,1,1",
        "--seed",
        "1",
        "--out",
        str(out),
        data_dir=data_dir,
    )
    assert code == 0
    info = probe_video(out)
    assert (info.frames, info.width, info.height) == (65, 128, 64)  # diffusers' 4k+1 trim
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert "65 frames 128x64" in capsys.readouterr().out


def test_generate_npy_equals_the_diffusers_pipeline(
    data_dir: Path, tmp_path: Path, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "clip.npy"
    assert (
        run(
            "--model",
            "tiny",
            "--prompt",
            "a fox",
            "--num-frames",
            "33",
            "--width",
            "64",
            "--height",
            "64",
            "--seed",
            "5",
            "--out",
            str(out),
            data_dir=data_dir,
        )
        == 0
    )
    frames = np.load(out)
    pipe = tiny_model("tiny").pipe
    expected = pipe(
        prompt="a fox",
        height=64,
        width=64,
        num_frames=33,
        pyramid_num_inference_steps_list=[2, 2, 2],
        guidance_scale=1.0,
        is_amplify_first_chunk=True,
        max_sequence_length=16,
        generator=torch.Generator("cpu").manual_seed(5),
    ).frames[0]
    assert frames.shape == (33, 64, 64, 3)
    assert frames.dtype == np.uint8
    assert np.abs(frames.astype(np.float32) - np.rint(expected * 255)).max() <= 1


def test_generate_i2v_from_an_image_file(data_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "ref.png"
    Image.fromarray(np.full((64, 64, 3), 120, dtype=np.uint8)).save(image)
    out = tmp_path / "i2v.npy"
    assert (
        run(
            "--prompt",
            "x",
            "--image",
            str(image),
            "--width",
            "64",
            "--height",
            "64",
            "--pyramid-steps",
            "1,1,1",
            "--out",
            str(out),
            data_dir=data_dir,
        )
        == 0
    )
    assert np.load(out).shape == (33, 64, 64, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--width", "100"], "multiples of"),
        (["--preset", "base"], "preset 'base' needs a single-stage"),
        (["--steps", "4"], "--steps: num_inference_steps sets single-stage (Base) sampling"),
        (["--out", "clip.gif"], "supported"),
        (["--model", "/nonexistent/ckpt"], "not a directory"),
    ],
)
def test_bad_input_is_one_line_error(
    data_dir: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    full = ["--prompt", "x", "--out", str(tmp_path / "o.npy"), *args]
    if "--out" in args:
        full = ["--prompt", "x", *[a if a != "clip.gif" else str(tmp_path / a) for a in args]]
    assert run(*full, data_dir=data_dir) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_corrupt_image_and_video_are_one_line_errors(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from helios_serve.media.encode import Mp4Writer

    bad = tmp_path / "bad.png"
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), "red").save(good)
    bad.write_bytes(good.read_bytes()[:40])
    assert (
        run(
            "--prompt",
            "x",
            "--image",
            str(bad),
            "--out",
            str(tmp_path / "o.npy"),
            data_dir=data_dir,
        )
        == 2
    )
    assert "image" in capsys.readouterr().err
    short = tmp_path / "short.mp4"  # cut inside its first frame: nothing decodes
    with Mp4Writer(short, 64, 64) as writer:
        writer.write(np.zeros((10, 64, 64, 3), dtype=np.uint8))
    short.write_bytes(short.read_bytes()[:64])
    assert (
        run(
            "--prompt",
            "x",
            "--video",
            str(short),
            "--width",
            "64",
            "--height",
            "64",
            "--out",
            str(tmp_path / "o.npy"),
            data_dir=data_dir,
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "video" in err
    assert len(err.splitlines()) == 1


def test_unknown_variant_is_an_argparse_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "helios_serve.cli",
            "tiny-model",
            str(tmp_path / "t"),
            "--variant",
            "huge",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "invalid choice: 'huge'" in proc.stderr
    assert "Traceback" not in proc.stderr
