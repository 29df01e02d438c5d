"""The GPU check's decode phase: each change to the VAE decode measured alone, same latents.

Every variant decodes one steady chunk of the exact stream (its latents, recorded in
`stream_exact`) with a fresh bf16 copy of the same VAE, so no variant inherits another's layout;
`cudnn.benchmark` is set explicitly for each. Times are the median of `--decode-repeats` calls
after a warm-up; errors are against diffusers' stock fp32 `vae.decode` of the same latents.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from statistics import median
from typing import TYPE_CHECKING, Any

import torch

from helios_serve.engine.conditioning import LatentStats
from helios_serve.engine.vae_decode import DecodeOptions, VaeDecoder

from .measure import synchronize
from .quality import frame_errors

if TYPE_CHECKING:
    from .gpu_check import Check

Decode = Callable[[torch.Tensor], torch.Tensor]


def _time(decode: Decode, z: torch.Tensor, repeats: int, warmups: int) -> tuple[Any, float]:
    with torch.no_grad():
        for _ in range(warmups):
            decode(z)
        times = []
        video = None
        for _ in range(max(1, repeats)):
            synchronize(z.device)
            start = time.perf_counter()
            video = decode(z)
            synchronize(z.device)
            times.append(time.perf_counter() - start)
    return video, median(times)


def _diffusers(vae: Any) -> Decode:
    return lambda z: vae.decode(z, return_dict=False)[0]


def _ours(vae: Any, options: DecodeOptions, groups: list[int] | None = None) -> Decode:
    decoder = VaeDecoder(vae, options)
    return lambda z: decoder.video(z, groups)


def _variants(check: Check) -> list[tuple[str, bool, Callable[[Any], Decode]]]:
    """(name, cudnn.benchmark, decode factory over a fresh VAE copy)."""
    per_frame_cl = DecodeOptions(batched=False, channels_last=True, cudnn_benchmark=False)
    batched = DecodeOptions(channels_last=False, cudnn_benchmark=False)
    default = DecodeOptions(channels_last=True, cudnn_benchmark=True)
    out: list[tuple[str, bool, Callable[[Any], Decode]]] = [
        ("diffusers vae.decode bf16", False, _diffusers),
        ("+ cudnn.benchmark", True, _diffusers),
        ("+ channels-last 3-D (one frame per call)", False, lambda v: _ours(v, per_frame_cl)),
        ("+ frames 1..8 in one call", False, lambda v: _ours(v, batched)),
        ("engine default (all three)", True, lambda v: _ours(v, default)),
        ("engine default, groups [2,2,2,2]", True, lambda v: _ours(v, default, [2, 2, 2, 2])),
        ("engine default, groups [1]*8", True, lambda v: _ours(v, default, [1] * 8)),
    ]
    if check.args.compile_backend != "none":
        compiled = DecodeOptions(
            channels_last=True,
            cudnn_benchmark=True,
            compile=True,
            compile_backend=check.args.compile_backend,
            compile_mode=None if check.args.compile_mode == "default" else check.args.compile_mode,
        )
        out.append(("engine default + compiled decoder", True, lambda v: _ours(v, compiled)))
    return out


def decode_variants(check: Check) -> dict[str, Any]:
    latents = check.latents.get("exact")
    if not latents:
        return {"skipped": "needs the latents of stream_exact"}
    steady = latents[min(2, len(latents) - 1)].to(check.device)
    stats32 = LatentStats.from_vae(check.vae32, check.device)
    z32 = steady / stats32.std_inv + stats32.mean
    half = check.vae16.dtype
    z16 = steady.to(half) / stats32.std_inv.to(half) + stats32.mean.to(half)
    repeats = check.args.decode_repeats
    torch.backends.cudnn.benchmark = False
    warmups = check.args.warmups
    reference, stock_s = _time(_diffusers(check.vae32), z32, repeats, warmups)
    rows: list[dict[str, Any]] = [
        {"variant": "diffusers vae.decode fp32 (stock)", "seconds": round(stock_s, 4)}
    ]
    note = (
        "one steady chunk's latents from stream_exact; errors against the stock fp32 decode, "
        "frames in [0, 1]; first_calls_s: warm-up calls (compilation, autotuning)"
    )
    for name, benchmark, factory in _variants(check):
        needs = 90 if "compiled" in name else 10  # a compilation takes minutes, not seconds
        if check.left_s() < needs:
            rows.append({"variant": name, "skipped": "out of time"})
            continue
        vae = copy.deepcopy(check.vae32).to(half)
        torch.backends.cudnn.benchmark = benchmark
        start = time.perf_counter()
        decode = factory(vae)
        torch.backends.cudnn.benchmark = benchmark  # a decoder may have switched it on
        video, seconds = _time(decode, z16, repeats, warmups + (1 if warmups and benchmark else 0))
        rows.append(
            {
                "variant": name,
                "seconds": round(seconds, 4),
                "first_calls_s": round(time.perf_counter() - start - seconds * repeats, 3),
                **{k: round(v, 6) for k, v in frame_errors(video, reference).items()},
            }
        )
        del vae, decode, video
        check.results["decode"] = {"note": note, "partial": True, "variants": rows}
        check.save()  # a run cut short in a later variant keeps these rows
    torch.backends.cudnn.benchmark = check.device.type == "cuda"  # the engine's default after
    return {"note": note, "latents_shape": list(steady.shape), "variants": rows}
