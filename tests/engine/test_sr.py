"""Super-resolution: the default resampler, and a real SR network through spandrel."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from helios_serve.engine.sr import SpandrelUpscaler, TorchResampler
from helios_serve.errors import CheckpointError, InvalidInputError


def smooth_frames(t: int = 3, h: int = 24, w: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = (np.stack([x * 6, y * 10, x * 3 + y * 4], axis=-1) % 256).astype(np.uint8)
    return np.repeat(base[None], t, axis=0)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_resampler_scales_and_keeps_content(scale: int) -> None:
    frames = smooth_frames()
    out = TorchResampler("cpu")(frames, scale)
    assert out.shape == (3, 24 * scale, 40 * scale, 3)
    assert out.dtype == np.uint8
    back = out[:, ::scale, ::scale].astype(int)
    assert np.abs(back - frames.astype(int)).mean() < 12


def test_resampler_rejects_bad_scale() -> None:
    with pytest.raises(InvalidInputError, match="sr scale"):
        TorchResampler("cpu")(smooth_frames(), 3)


def _import_spandrel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Import spandrel; where torchvision is absent, stand in for the three names it imports.

    There is no CPU torchvision wheel for this CPU torch. spandrel imports
    `torchvision.transforms.functional` only for its LaMa and RestoreFormer architectures, at
    registry load; the Compact network under test never calls them. A real deployment brings
    a matching torchvision (`pip install 'helios-serve[sr]'`).
    """
    try:
        import torchvision  # noqa: F401
    except Exception:
        functional = types.ModuleType("torchvision.transforms.functional")
        for name in ("InterpolationMode", "rotate", "normalize"):
            setattr(functional, name, _unavailable)
        transforms = types.ModuleType("torchvision.transforms")
        transforms.functional = functional  # type: ignore[attr-defined]
        root = types.ModuleType("torchvision")
        root.transforms = transforms  # type: ignore[attr-defined]
        for name, module in (
            ("torchvision", root),
            ("torchvision.transforms", transforms),
            ("torchvision.transforms.functional", functional),
        ):
            monkeypatch.setitem(sys.modules, name, module)
    try:
        import spandrel  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"spandrel is not installed ({exc})")


def _unavailable(*args: object, **kwargs: object) -> None:
    raise AssertionError("torchvision stand-in called: the test must not reach LaMa/RestoreFormer")


def test_spandrel_upscaler_with_a_random_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _import_spandrel(monkeypatch)
    import torch
    from spandrel.architectures.Compact.__arch.SRVGG import (  # type: ignore[import-not-found]
        SRVGGNetCompact,
    )

    network = SRVGGNetCompact(num_feat=16, num_conv=2, upscale=2)  # randomly initialised
    weights = tmp_path / "sr.pth"
    torch.save(network.state_dict(), weights)
    upscaler = SpandrelUpscaler(weights, "cpu")
    assert upscaler.native_scale == 2
    frames = smooth_frames(2)
    out = upscaler(frames, 4)
    assert out.shape == (2, 96, 160, 3)
    assert out.dtype == np.uint8
    # The network really ran: its output differs from plain bicubic resampling.
    assert np.abs(out.astype(int) - TorchResampler("cpu")(frames, 4).astype(int)).mean() > 1


def test_spandrel_upscaler_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        SpandrelUpscaler(tmp_path / "missing.pth", "cpu")
