"""The report: a JSON document, a table for the terminal and a PNG plot, all from one dict.

The table and the plot read only the JSON-ready dict, so both can be regenerated from a saved
``.json`` file.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from statistics import fmean
from typing import Any

import torch

from helios_serve.core.settings import SamplingSettings
from helios_serve.core.types import Variant

from .arch import TransformerDims, transformer_flops_per_chunk
from .measure import MemoryKind
from .runner import ChunkTiming, ConfigResult, SideResult

NOTES = {
    "memory": (
        "cuda_max_allocated: torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), "
        "absolute (weights included; memory_baseline_gb is what was allocated at the start). "
        "cpu_rss_delta: process RSS sampled from /proc/self/statm every ~5 ms, peak minus the "
        "RSS just before the run (after gc.collect() and malloc_trim). Stream: one stream of "
        "max(chunks) chunks, peak read after N chunks, frames dropped after each chunk. "
        "diffusers: one __call__ per N, all frames kept (its output)."
    ),
    "per_chunk": (
        "transformer_s: denoising (transformer calls, scheduler steps, noise); decode_s: VAE "
        "decode (stream: incl. conversion to float frames on the host; diffusers: vae.decode "
        "only); total_s: both; wall_s: host time around the chunk as a consumer sees it (stream: "
        "next_chunk() incl. uint8 frames; diffusers: from the end of the previous chunk's decode "
        "to the end of this one's); dit_s / dit_calls: time in / number of transformer forwards. "
        "GPU timings synchronise before reading the clock."
    ),
    "fps_steady": "33 frames / mean wall_s of the chunks after the first",
    "fps_steady_median": "33 frames / median wall_s of the chunks after the first (robust to "
    "interference from other processes)",
    "fps_end_to_end": "frames delivered / wall time of the whole run (diffusers trims to 4k+1)",
    "first_chunk_s": (
        "stream: from constructing the stream (incl. prompt encoding) to the first ChunkResult; "
        "diffusers: until __call__ returns its first frames, i.e. the whole longest call"
    ),
    "speedup": "stream fps_steady / diffusers fps_steady (like for like, same computation)",
    "speedup_end_to_end": "stream fps_end_to_end / diffusers fps_end_to_end (longest run)",
    "first_frames_speedup": "diffusers first_chunk_s / stream first_chunk_s",
    "tflops": (
        "FLOPs of the transformer calls (helios_bench.arch.transformer_flops_per_chunk: "
        "linear layers + attention, history tokens included) over the chunks after the first, "
        "divided by their dit_s (transformer) or wall_s (chunk)"
    ),
}


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda: {props.name}, {props.total_memory / 1024**3:.0f} GiB"
    return f"cpu: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def steps_per_stage(variant: Variant, settings: SamplingSettings, first: bool) -> list[int]:
    """Transformer steps per sampling stage of one chunk (each x2 with CFG)."""
    if variant is Variant.BASE:
        return [settings.num_inference_steps]
    amplify = first and settings.amplify_first_chunk and variant is Variant.DISTILLED
    return [s * 2 if amplify else s for s in settings.pyramid_steps]


def chunk_flops(result: ConfigResult, first: bool) -> float:
    dims = TransformerDims.from_config(
        result.transformer_config, text_tokens=result.settings.max_sequence_length
    )
    steps = steps_per_stage(result.variant, result.settings, first)
    return transformer_flops_per_chunk(
        dims, result.height, result.width, steps, cfg=result.settings.uses_cfg
    )


def _r(x: float, digits: int = 6) -> float:
    return round(float(x), digits)


def _chunk_dict(c: ChunkTiming) -> dict[str, Any]:
    return {k: (v if isinstance(v, int) else _r(v)) for k, v in asdict(c).items()}


def _steady(per_chunk: Sequence[ChunkTiming]) -> list[tuple[int, ChunkTiming]]:
    indexed = list(enumerate(per_chunk))
    return indexed[1:] or indexed


def side_dict(side: SideResult, flops_first: float, flops_steady: float) -> dict[str, Any]:
    steady = _steady(side.per_chunk)
    flops = sum(flops_first if i == 0 else flops_steady for i, _ in steady)
    dit_s = sum(c.dit_s for _, c in steady)
    wall_s = sum(c.wall_s for _, c in steady)
    out: dict[str, Any] = {
        "fps_steady": _r(side.fps_steady, 3),
        "fps_steady_median": _r(side.fps_steady_median, 3),
        "fps_end_to_end": _r(side.fps_end_to_end, 3),
        "first_chunk_s": _r(side.first_chunk_s),
        "total_s": _r(side.total_s),
        "frames": side.frames,
        "peak_memory_gb": _r(side.peak_memory_gb, 5),
        "memory_baseline_gb": _r(side.memory_baseline_gb, 5),
        "memory_by_chunks": {str(n): _r(gb, 5) for n, gb in sorted(side.memory_by_chunks.items())},
        "mean_steady_chunk": {
            key: _r(fmean(getattr(c, key) for _, c in steady))
            for key in ("transformer_s", "decode_s", "total_s", "wall_s", "dit_s")
        },
        "tflops": {
            "transformer": _r(flops / dit_s / 1e12, 4) if dit_s > 0 else None,
            "chunk": _r(flops / wall_s / 1e12, 4) if wall_s > 0 else None,
        },
        "per_chunk": [_chunk_dict(c) for c in side.per_chunk],
    }
    if side.runs:
        out["runs"] = [
            {k: (int(v) if k in ("chunks", "frames") else _r(v)) for k, v in r.items()}
            for r in side.runs
        ]
    return out


def config_dict(result: ConfigResult) -> dict[str, Any]:
    first, steady = chunk_flops(result, True), chunk_flops(result, False)
    stream = side_dict(result.stream, first, steady)
    out: dict[str, Any] = {
        "name": result.name,
        "model": result.model_name,
        "variant": result.variant.value,
        "width": result.width,
        "height": result.height,
        "sampling": json.loads(json.dumps(asdict(result.settings))),
        "flops": {
            "first_chunk_tflop": _r(first / 1e12),
            "steady_chunk_tflop": _r(steady / 1e12),
            "text_tokens": result.settings.max_sequence_length,
        },
        "stream": stream,
        "diffusers": None,
        "speedup": None,
        "speedup_end_to_end": None,
        "first_frames_speedup": None,
    }
    if result.diffusers is not None:
        d = result.diffusers
        out["diffusers"] = side_dict(d, first, steady)
        out["speedup"] = _r(result.stream.fps_steady / d.fps_steady, 3)
        out["speedup_end_to_end"] = _r(result.stream.fps_end_to_end / d.fps_end_to_end, 3)
        out["first_frames_speedup"] = _r(d.first_chunk_s / result.stream.first_chunk_s, 3)
    return out


def build_report(
    results: Sequence[ConfigResult],
    *,
    device: torch.device,
    arch: str,
    command: str,
    settings: dict[str, Any],
    memory_kind: MemoryKind,
    load_average: list[float] | None = None,
) -> dict[str, Any]:
    """The JSON document; `load_average` is the host's 1/5/15-min load before the run."""
    import diffusers

    try:
        load_after: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load_after = None

    return {
        "tool": "helios bench",
        "command": command,
        "device": device_description(device),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "arch": arch,
        "load_average": {"before": load_average, "after": load_after},
        "memory_kind": memory_kind,
        "settings": settings,
        "notes": NOTES,
        "configs": [config_dict(r) for r in results],
    }


# ---------------------------------------------------------------------------- table


def _fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _rows(s: dict[str, Any], d: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    def pair(key: str, spec: str = ".3f") -> tuple[str, str]:
        return _fmt(s.get(key), spec), _fmt(d.get(key) if d else None, spec)

    ms, md = s["mean_steady_chunk"], (d or {}).get("mean_steady_chunk", {})
    n = len(s["per_chunk"])
    rows = [
        ("time to first frames (s)", *pair("first_chunk_s")),
        ("steady fps (mean chunk)", *pair("fps_steady", ".2f")),
        ("steady fps (median chunk)", *pair("fps_steady_median", ".2f")),
        ("end-to-end fps", *pair("fps_end_to_end", ".2f")),
        (f"mean chunk wall (s), chunks 1..{n - 1}", _fmt(ms["wall_s"]), _fmt(md.get("wall_s"))),
        ("  denoise / transformer (s)", _fmt(ms["transformer_s"]), _fmt(md.get("transformer_s"))),
        ("    in transformer calls (s)", _fmt(ms["dit_s"]), _fmt(md.get("dit_s"))),
        ("  VAE decode (s)", _fmt(ms["decode_s"]), _fmt(md.get("decode_s"))),
        (
            "transformer TFLOP/s",
            _fmt(s["tflops"]["transformer"], ".4g"),
            _fmt((d or {}).get("tflops", {}).get("transformer"), ".4g"),
        ),
    ]
    dm = (d or {}).get("memory_by_chunks", {})
    for key, gb in s["memory_by_chunks"].items():
        rows.append((f"peak memory (GB), {key} chunks", _fmt(gb, ".4f"), _fmt(dm.get(key), ".4f")))
    return rows


def _per_chunk_lines(per_chunk: list[dict[str, Any]]) -> list[str]:
    lines = ["  stream per chunk:  chunk  transformer_s  decode_s  total_s  wall_s  dit_calls"]
    n = len(per_chunk)
    shown = list(range(n)) if n <= 8 else [0, 1, 2, 3, -1, n - 2, n - 1]
    for i in shown:
        if i < 0:
            lines.append(f"{'...':>26s}")
            continue
        c = per_chunk[i]
        lines.append(
            f"{i:26d}  {c['transformer_s']:13.4f}  {c['decode_s']:8.4f}  "
            f"{c['total_s']:7.4f}  {c['wall_s']:6.4f}  {c['dit_calls']:9d}"
        )
    return lines


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"helios bench  {report['device']}",
        f"torch {report['torch']}  diffusers {report['diffusers']}  memory: {report['memory_kind']}"
        f"  load average before: {(report.get('load_average') or {}).get('before')}",
    ]
    for cfg in report["configs"]:
        s, d = cfg["stream"], cfg["diffusers"]
        lines += [
            "",
            f"== {cfg['name']}  ({cfg['flops']['steady_chunk_tflop']:.4g} TFLOP per steady chunk)",
            f"  {'':38s} {'stream':>12s} {'diffusers':>12s}",
        ]
        lines += [f"  {label:38s} {a:>12s} {b:>12s}" for label, a, b in _rows(s, d)]
        if d is not None:
            lines.append(
                f"  speedup: steady fps {cfg['speedup']:.2f}x, end-to-end "
                f"{cfg['speedup_end_to_end']:.2f}x, first frames "
                f"{cfg['first_frames_speedup']:.1f}x sooner"
            )
        lines += _per_chunk_lines(s["per_chunk"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------- files


def plot_if_possible(
    draw: Callable[[dict[str, Any], Path], None], report: dict[str, Any], path: Path
) -> bool:
    """Draw the plot unless matplotlib (the `bench` extra) is missing; says which happened."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    draw(report, path)
    return True


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def write_outputs(
    report: dict[str, Any],
    draw: Callable[[dict[str, Any], Path], None],
    out: str,
    log: Callable[[str], None],
) -> None:
    """`out.json` and, where matplotlib is installed, `out.png`; `log` says what was written."""
    prefix = Path(out)
    json_path = prefix.with_name(prefix.name + ".json")
    png_path = prefix.with_name(prefix.name + ".png")
    write_json(report, json_path)
    if plot_if_possible(draw, report, png_path):
        log(f"wrote {json_path} and {png_path}")
    else:
        extra = "pip install 'helios-serve[bench]'"
        log(f"wrote {json_path}; no plot: matplotlib is an extra ({extra})")


def plot(report: dict[str, Any], path: Path) -> None:
    """Memory vs stream length, per-chunk latency of the first config, and fps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_mem, ax_lat, ax_fps = fig.subplots(1, 3)
    configs = report["configs"]
    _plot_memory(ax_mem, configs, report["memory_kind"])
    _plot_latency(ax_lat, configs[0])
    _plot_fps(ax_fps, configs)
    fig.suptitle(f"helios bench: {report['device']}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _plot_memory(ax: Any, configs: list[dict[str, Any]], kind: str) -> None:
    for i, cfg in enumerate(configs):
        color = f"C{i}"
        for side, style, marker in (("stream", "-", "o"), ("diffusers", "--", "s")):
            data = cfg[side]
            if data is None:
                continue
            xs = [int(k) for k in data["memory_by_chunks"]]
            ys = list(data["memory_by_chunks"].values())
            ax.plot(xs, ys, style, marker=marker, color=color, label=f"{side}: {cfg['name']}")
    ax.set_xscale("log", base=2)
    counts = sorted({int(k) for cfg in configs for k in cfg["stream"]["memory_by_chunks"]})
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("chunks generated (33 frames each)")
    ylabel = (
        "peak GPU memory allocated (GB)"
        if kind == "cuda_max_allocated"
        else "peak RSS above start (GB)"
    )
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title("peak memory vs stream length")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _plot_latency(ax: Any, cfg: dict[str, Any]) -> None:
    chunks = cfg["stream"]["per_chunk"]
    xs = list(range(len(chunks)))
    dens = [c["transformer_s"] for c in chunks]
    decs = [c["decode_s"] for c in chunks]
    ax.bar(xs, dens, label="denoise (transformer)", color="C0")
    ax.bar(xs, decs, bottom=dens, label="VAE decode", color="C1")
    if cfg["diffusers"] is not None:
        ax.plot(
            xs[: len(cfg["diffusers"]["per_chunk"])],
            [c["total_s"] for c in cfg["diffusers"]["per_chunk"]][: len(xs)],
            "k.--",
            label="diffusers per chunk (total)",
        )
    ax.set_xlabel("chunk index")
    ax.set_ylabel("seconds")
    ax.set_title(f"stream latency per chunk\n{cfg['name']}", fontsize=9)
    ax.legend(fontsize=7)


def _plot_fps(ax: Any, configs: list[dict[str, Any]]) -> None:
    bars = (
        ("stream", "fps_steady", "stream, steady state"),
        ("diffusers", "fps_steady", "diffusers, steady state"),
        ("diffusers", "fps_end_to_end", "diffusers, end to end"),
    )
    width = 0.8 / len(bars)
    for j, (side, key, label) in enumerate(bars):
        values = [(cfg[side] or {}).get(key, 0.0) for cfg in configs]
        xs = [i + j * width for i in range(len(configs))]
        ax.bar(xs, values, width=width, label=label, color=f"C{j}")
    ax.set_xticks(
        [i + width for i in range(len(configs))],
        [cfg["name"] for cfg in configs],
        fontsize=7,
    )
    ax.set_ylabel("frames per second")
    ax.set_title("throughput (33 frames per chunk)")
    ax.legend(fontsize=7)
