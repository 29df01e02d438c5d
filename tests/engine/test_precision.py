"""Fast mode's plumbing: refused with one clear line where FP8 cannot run, the right layers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from helios_serve.cli import main
from helios_serve.engine import child
from helios_serve.engine.loader import LoadOptions, load_model
from helios_serve.engine.precision import (
    FastModeUnavailableError,
    Precision,
    check_fast_supported,
    fp8_layer_filter,
    fuse_self_attention,
    parse_precision,
    torchao_version,
)
from helios_serve.errors import InvalidInputError


def test_fast_mode_is_refused_on_the_cpu_before_loading(data_dir: Path) -> None:
    with pytest.raises(FastModeUnavailableError, match="FP8 matmuls need an NVIDIA GPU") as err:
        load_model("tiny", data_dir, LoadOptions(device="cpu", precision=Precision.FAST))
    assert "\n" not in err.value.message
    assert err.value.param == "precision"


def test_engine_process_spec_carries_the_precision(data_dir: Path) -> None:
    spec = child.ChildSpec(
        model="tiny", data_dir=data_dir, served_name="tiny", device="cpu", precision="fast"
    )
    with pytest.raises(FastModeUnavailableError, match="use --precision exact"):
        child.load_model_of(spec)


def test_cli_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--model", "tiny", "--device", "cpu", "--precision", "fast"]
    argv += ["--data-dir", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "x.mp4")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "helios generate: error: --precision fast is unavailable here: FP8 matmuls need an "
        "NVIDIA GPU of compute capability 8.9+ (e.g. H100), and the engine runs on cpu "
        "(use --precision exact)"
    ]
    assert not (tmp_path / "models").exists()  # refused before the checkpoint was built


def test_missing_torchao_is_named_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao -> ImportError
    with pytest.raises(FastModeUnavailableError, match=r"pip install 'helios-serve\[fast\]'"):
        torchao_version()


def test_precision_names() -> None:
    assert parse_precision("fast") is Precision.FAST
    with pytest.raises(InvalidInputError, match="exact or fast"):
        parse_precision("fp8")
    with pytest.raises(FastModeUnavailableError, match="runs on meta"):
        check_fast_supported(torch.device("meta"))


def _toy(layers: int) -> Any:
    from diffusers import HeliosTransformer3DModel

    return HeliosTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        text_dim=16,
        ffn_dim=32,
        num_layers=layers,
        rope_dim=(4, 6, 6),
    )


def test_fp8_layers_are_the_blocks_linears_but_cross_attention_text_kv() -> None:
    model = _toy(4)
    fuse_self_attention(model)
    assert model.blocks[0].attn1.to_qkv is not None
    assert model.blocks[0].attn1.to_q is None  # not kept twice
    keep = fp8_layer_filter(4, edge_blocks=1)
    chosen = [name for name, module in model.named_modules() if keep(module, name)]
    per_block = [
        "attn1.to_qkv",
        "attn1.to_out.0",
        "attn2.to_q",
        "attn2.to_out.0",
        "ffn.net.0.proj",
        "ffn.net.2",
    ]
    assert sorted(chosen) == sorted(f"blocks.{i}.{name}" for i in (1, 2) for name in per_block)
    everything = fp8_layer_filter(4)
    assert sum(everything(m, n) for n, m in model.named_modules()) == 4 * len(per_block)
    with pytest.raises(InvalidInputError, match="must leave some"):
        fp8_layer_filter(4, edge_blocks=2)
