"""`helios bench` on the tiny checkpoint on CPU, plus the 14B FLOP arithmetic and the shims."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helios_bench import register
from helios_bench.__main__ import main
from helios_bench.arch import (
    HELIOS_14B_TRANSFORMER,
    WAN21_VAE,
    RandomModelSpec,
    RandomPromptEncoder,
    TransformerDims,
    build_random_components,
    history_token_counts,
    random_model,
    stage_noisy_tokens,
    transformer_flops_per_chunk,
)
from helios_bench.measure import CallLog, PeakMemory, TimingShims
from helios_bench.plan import settings_for
from helios_bench.report import format_table
from helios_bench.runner import PROMPT, BenchConfig, measure, pipeline_kwargs, split_chunks
from helios_serve.core.settings import PRESETS
from helios_serve.core.types import Variant
from helios_serve.engine.loader import LoadedModel
from helios_serve.engine.streamer import ChunkStreamer, StreamRequest

SIDE_KEYS = {"fps_steady", "first_chunk_s", "peak_memory_gb", "per_chunk", "memory_by_chunks"}


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.fixture(scope="module")
def report(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "tiny"
    argv = [
        "--model",
        "tiny",
        "--data-dir",
        str(data_dir),
        "--device",
        "cpu",
        "--width",
        "64",
        "--height",
        "64",
        "--pyramid-steps",
        "1,1,1",
        "--no-amplify",
        "--chunks",
        "1,2",
        "--warmup",
        "0",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert out.with_name("tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data: dict[str, Any] = json.loads(out.with_name("tiny.json").read_text())
    return data


def test_report_top_level(report: dict[str, Any]) -> None:
    for key in ("device", "command", "torch", "diffusers", "date", "arch", "settings", "configs"):
        assert report[key], key
    assert report["command"].startswith("helios bench ")
    assert "--chunks 1,2" in report["command"]
    assert report["device"].startswith("cpu: ")
    assert report["arch"] == "tiny"
    assert report["memory_kind"] == "cpu_rss_delta"
    assert report["settings"]["chunks"] == [1, 2]


def test_report_config_numbers(report: dict[str, Any]) -> None:
    (cfg,) = report["configs"]
    assert cfg["name"]
    assert cfg["variant"] == "distilled"
    for side in ("stream", "diffusers"):
        data = cfg[side]
        assert data.keys() >= SIDE_KEYS
        assert _positive(data["fps_steady"])
        assert _positive(data["first_chunk_s"])
        assert set(data["memory_by_chunks"]) == {"1", "2"}
        assert all(gb >= 0 for gb in data["memory_by_chunks"].values())
        assert len(data["per_chunk"]) == 2
        for chunk in data["per_chunk"]:
            assert all(_positive(chunk[k]) for k in ("transformer_s", "decode_s", "total_s"))
            assert chunk["dit_calls"] == 3  # [1,1,1], no CFG
    assert cfg["stream"]["frames"] == 66
    assert cfg["diffusers"]["frames"] == 65  # diffusers trims to 4k+1 frames
    assert _positive(cfg["speedup"])
    assert [r["chunks"] for r in cfg["diffusers"]["runs"]] == [1, 2]


def test_table_renders_from_json(report: dict[str, Any]) -> None:
    table = format_table(report)
    assert "steady fps" in table
    assert "peak memory (GB), 2 chunks" in table


def test_register_adds_bench_with_run_handler() -> None:
    parser = argparse.ArgumentParser(prog="helios")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--chunks", "4,1", "--preset", "distilled,base"])
    assert args.handler.__name__ == "run"
    assert args.chunks == (4, 1)
    assert args.preset == (Variant.DISTILLED, Variant.BASE)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--chunks", "0"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_14b_without_cuda_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--arch", "14b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "CUDA" in err[0]
    assert "14b" in err[0]


def test_14b_flops_match_the_spec_arithmetic() -> None:
    dims = TransformerDims.from_config(HELIOS_14B_TRANSFORMER)
    assert history_token_counts(48, 80, dims.patch) == (1920, 240, 240)
    assert stage_noisy_tokens(384, 640, 3, dims.patch) == [540, 2160, 8640]
    one = transformer_flops_per_chunk(dims, 384, 640, [1, 1, 1], cfg=False)
    assert 530e12 < one < 560e12  # spec: ≈ 540 TFLOP per [1,1,1] chunk
    assert transformer_flops_per_chunk(dims, 384, 640, [1, 1, 1], cfg=True) == 2 * one


def test_random_model_path_runs_on_cpu() -> None:
    """The --arch 14b code path (random weights, prompt embeddings) on a small config."""
    small = dict(
        HELIOS_14B_TRANSFORMER,
        num_attention_heads=2,
        attention_head_dim=12,
        text_dim=32,
        ffn_dim=32,
        num_layers=1,
        rope_dim=(4, 4, 4),
    )
    vae = dict(WAN21_VAE, base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    spec = RandomModelSpec(small, vae, torch.device("cpu"), dtype=torch.bfloat16, name="rand")
    components = build_random_components(spec)
    assert components[0].dtype == torch.bfloat16
    model = random_model(spec, Variant.DISTILLED, components)
    settings = PRESETS[Variant.DISTILLED].with_overrides(
        pyramid_steps=(1, 1, 1), max_sequence_length=8
    )
    encoder = RandomPromptEncoder(32, spec.device, spec.dtype)
    cfg = BenchConfig("rand", model, settings, 64, 64, 0, (1, 2), warmup=0, prompt_encoder=encoder)
    result = measure(cfg)
    assert result.diffusers is not None
    assert [c.dit_calls for c in result.stream.per_chunk] == [6, 3]  # amplified first chunk
    assert [c.dit_calls for c in result.diffusers.per_chunk] == [6, 3]


def test_timing_shims_record_and_restore() -> None:
    class Part:
        def forward(self, x: int) -> int:
            return x + 1

        def decode(self, x: int) -> int:
            return x * 2

    pipe = argparse.Namespace(transformer=Part(), vae=Part())
    with TimingShims(pipe, torch.device("cpu")) as shims:
        assert pipe.transformer.forward(1) == 2
        assert pipe.vae.decode(3) == 6
    assert "forward" not in vars(pipe.transformer)
    assert "decode" not in vars(pipe.vae)
    assert len(shims.log.transformer) == 1
    assert len(shims.log.decode) == 1


def test_split_chunks_attributes_calls_between_decodes() -> None:
    log = CallLog(transformer=[(1.0, 2.0), (2.0, 3.0), (5.0, 5.5)], decode=[(3.0, 4.0), (6.0, 7.0)])
    first, second = split_chunks(log, start=0.5)
    assert (first.transformer_s, first.decode_s, first.total_s) == (2.5, 1.0, 3.5)
    assert (first.dit_s, first.dit_calls) == (2.0, 2)
    assert (second.transformer_s, second.decode_s, second.total_s) == (2.0, 1.0, 3.0)
    assert (second.dit_s, second.dit_calls) == (0.5, 1)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_cpu_peak_memory_sees_an_allocation() -> None:
    with PeakMemory(torch.device("cpu")) as mem:
        block = np.ones(64 * 1024**2 // 8)  # 64 MiB, touched
        peak = mem.peak_gb()
        del block
    assert mem.kind == "cpu_rss_delta"
    assert peak > 0.05


@pytest.mark.parametrize(
    ("name", "variant"), [("tiny", Variant.DISTILLED), ("tiny-base", Variant.BASE)]
)
def test_diffusers_arguments_reproduce_the_stream(
    tiny_model: Callable[[str], LoadedModel], name: str, variant: Variant
) -> None:
    """Both sides of the comparison compute the same video (so the timings are comparable)."""
    model = tiny_model(name)
    flags = argparse.Namespace(pyramid_steps=(1, 1, 1), steps=2, no_amplify=False)
    settings = settings_for(variant, model, flags)
    cfg = BenchConfig("eq", model, settings, 64, 64, 3, (2,), warmup=0)
    streamer = ChunkStreamer(model, StreamRequest(PROMPT, 64, 64, 3, settings))
    stream = np.concatenate([streamer.next_chunk_float()[0] for _ in range(2)])
    frames = model.pipe(num_frames=66, **pipeline_kwargs(cfg)).frames[0]
    # the engine decodes latent frames 1..8 in one call (engine/vae_decode.py): float32 rounding
    # apart from diffusers' frame-by-frame decode, as in tests/engine/test_equivalence.py
    np.testing.assert_allclose(frames, stream[: len(frames)], rtol=0, atol=1e-6)
