"""The GPU check's table (markdown), rebuilt from its JSON after every phase.

Print it again from a saved run:
``python -m helios_bench.gpu_check_report benchmarks/results/NAME.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SPEED_ROWS = (
    ("diffusers_eager", None, "diffusers, stock: eager, SDPA, VAE fp32"),
    ("diffusers_compiled", None, "diffusers on the same compiled blocks, VAE bf16"),
    ("stream_exact", "serial", "stream, exact, serial (live sessions)"),
    ("stream_exact", "overlapped", "stream, exact, decode overlapped (jobs)"),
    ("stream_fast", "serial", "stream, fast (FP8), serial"),
    ("stream_fast", "overlapped", "stream, fast (FP8), decode overlapped"),
)


def _f(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _run(results: dict[str, Any], phase: str, part: str | None) -> dict[str, Any] | None:
    got = results.get(phase)
    if not isinstance(got, dict) or "fps_steady" not in (got.get(part, {}) if part else got):
        return None
    run: dict[str, Any] = got[part] if part else got
    return run


def _speed(results: dict[str, Any]) -> list[str]:
    lines = [
        "| configuration | steady fps (mean / median) | per steady chunk: transformer, "
        "decode, wall (s) | first chunk (s) | peak GB |",
        "|---|---|---|---|---|",
    ]
    for phase, part, label in SPEED_ROWS:
        run = _run(results, phase, part)
        if run is None:
            status = results.get(phase, {})
            why = status.get("error") or status.get("skipped") or "not run"
            lines.append(f"| {label} | {why} | | | |")
            continue
        lines.append(
            f"| {label} | {_f(run['fps_steady'], '.2f')} / {_f(run['fps_steady_median'], '.2f')} "
            f"| {_f(run['mean_transformer_s'])}, {_f(run['mean_decode_s'])}, "
            f"{_f(run['mean_wall_s'])} | {_f(run['first_chunk_s'], '.2f')} "
            f"| {_f(run['peak_memory_gb'], '.2f')} |"
        )
    return lines


def _ratios(results: dict[str, Any]) -> list[str]:
    stock = _run(results, "diffusers_eager", None)
    same = _run(results, "diffusers_compiled", None)
    lines = []
    for phase, label in (("stream_exact", "exact"), ("stream_fast", "fast")):
        for part in ("overlapped", "serial"):
            run = _run(results, phase, part)
            if run is None:
                continue
            parts = [
                f"{name} {run['fps_steady'] / base['fps_steady']:.2f}x"
                for name, base in (("stock diffusers", stock), ("compiled diffusers", same))
                if base is not None
            ]
            if parts:
                lines.append(f"- {label}, {part}: " + ", ".join(parts))
    return lines


def _quality(results: dict[str, Any]) -> list[str]:
    q = results.get("quality")
    if not isinstance(q, dict) or "latents" not in q:
        return []
    lines = [
        "",
        "Fast against exact, per chunk (chunk 0 amplified):",
        "",
        "| chunk | latent max rel | latent mean rel | cosine | frame PSNR (dB) | frame max abs |",
        "|---|---|---|---|---|---|",
    ]
    for i, (lat, fr) in enumerate(zip(q["latents"], q["frames"], strict=False)):
        lines.append(
            f"| {i} | {lat['max_rel']:.4f} | {lat['mean_rel']:.4f} | {lat['cosine']:.6f} "
            f"| {fr['psnr_db']:.2f} | {fr['max_abs']:.4f} |"
        )
    return lines


def _decode(results: dict[str, Any]) -> list[str]:
    d = results.get("decode")
    if not isinstance(d, dict) or "variants" not in d:
        return []
    lines = [
        "",
        "Decode variants, each alone (one steady chunk; errors against the stock fp32 decode):",
        "",
        "| variant | s per chunk | warm-up calls s | PSNR (dB) | max abs |",
        "|---|---|---|---|---|",
    ]
    for row in d["variants"]:
        if "skipped" in row:
            lines.append(f"| {row['variant']} | skipped: {row['skipped']} | | | |")
            continue
        lines.append(
            f"| {row['variant']} | {_f(row.get('seconds'), '.4f')} "
            f"| {_f(row.get('first_calls_s'), '.2f')} | {_f(row.get('psnr_db'), '.2f')} "
            f"| {_f(row.get('max_abs'), '.4f')} |"
        )
    return lines


def format_markdown(results: dict[str, Any]) -> str:
    head = [
        f"# GPU check: {results.get('arch', '?')}",
        "",
        f"`{results.get('command', '')}`",
        "",
        f"{results.get('device', '?')}; torch {results.get('torch')}, diffusers "
        f"{results.get('diffusers')}, torchao {results.get('torchao')}; {results.get('date')}; "
        f"load average before {results.get('load_average_before')}, after "
        f"{results.get('load_average_after')}",
        "",
        "Distilled [1,1,1], first chunk amplified; steady = chunks after the first (overlapped: "
        "and before the last, which only decodes). 33 frames per chunk.",
        "",
    ]
    fast = results.get("stream_fast", {})
    notes = ["", f"Fast mode: {fast['fp8']}."] if isinstance(fast, dict) and "fp8" in fast else []
    body = [*head, *_speed(results), "", *_ratios(results), *notes]
    return "\n".join([*body, *_quality(results), *_decode(results)]) + "\n"


if __name__ == "__main__":
    print(format_markdown(json.loads(Path(sys.argv[1]).read_text())), end="")
