"""ParallelLayout: which devices run one engine, and how the work is split over them.

The same three flags ask for it in `helios serve`, `helios worker` and `helios generate`:
``--gpus 0,1,2`` (the GPUs the engine owns), ``--parallel ulysses=2`` (how the transformer is
split: ``ulysses=N``, ``ring=N``, ``cfg=2``, combined with commas) and ``--decode-device 2``
(a rank that only decodes). Rank 0 runs the stream; ranks 1..T-1 run their share of every
transformer forward; the decode rank, when there is one, is rank T. Pure data, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from helios_serve.errors import InvalidInputError

DEGREES = ("ulysses", "ring", "cfg")


@dataclass(frozen=True)
class ParallelLayout:
    """`transformer_devices[r]` is rank r's device; the decode rank (if any) comes last."""

    transformer_devices: tuple[str, ...]
    ulysses: int = 1
    ring: int = 1
    cfg: int = 1
    decode_device: str | None = None

    def __post_init__(self) -> None:
        if min(self.ulysses, self.ring, self.cfg) < 1 or self.cfg > 2:
            raise InvalidInputError(
                "--parallel: degrees must be at least 1, and cfg at most 2", param="parallel"
            )
        if len(self.transformer_devices) != self.transformer_ranks:
            raise InvalidInputError(
                f"--parallel {self.describe()} needs {self.transformer_ranks} transformer "
                f"device(s), got {len(self.transformer_devices)}: "
                f"{','.join(self.transformer_devices)}",
                param="parallel",
            )

    @property
    def transformer_ranks(self) -> int:
        return self.ulysses * self.ring * self.cfg

    @property
    def context_parallel(self) -> int:
        """Ranks one forward's sequence is split over (within one CFG branch)."""
        return self.ulysses * self.ring

    @property
    def decode_rank(self) -> int | None:
        return None if self.decode_device is None else self.transformer_ranks

    @property
    def world_size(self) -> int:
        return self.transformer_ranks + (self.decode_device is not None)

    @property
    def is_parallel(self) -> bool:
        return self.world_size > 1

    @property
    def leader_device(self) -> str:
        return self.transformer_devices[0]

    def device_of(self, rank: int) -> str:
        if rank == self.decode_rank:
            assert self.decode_device is not None
            return self.decode_device
        return self.transformer_devices[rank]

    def cfg_branch(self, rank: int) -> int:
        """0: the conditional pass, 1: the unconditional one (with cfg=2)."""
        return rank // self.context_parallel

    def describe(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name in DEGREES if getattr(self, name) > 1]
        return ",".join(parts) or "none"

    def summary(self) -> str:
        """One line for the log: what runs where."""
        text = f"transformer {self.describe()} on {','.join(self.transformer_devices)}"
        if self.decode_device is not None:
            text += f", decode on {self.decode_device}"
        return text


def parse_degrees(text: str) -> dict[str, int]:
    """``ulysses=2,cfg=2`` -> {"ulysses": 2, "cfg": 2} (the `--parallel` flag)."""
    degrees: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in DEGREES or not value.isdigit() or name in degrees:
            raise InvalidInputError(
                f"--parallel {text!r}: expected NAME=N items from {', '.join(DEGREES)} "
                "(e.g. ulysses=2 or ring=2,cfg=2), each once",
                param="parallel",
            )
        degrees[name] = int(value)
    return degrees


def _device(text: str) -> str:
    """``1`` -> ``cuda:1``; ``cpu``, ``cuda`` and ``cuda:N`` as given."""
    text = text.strip()
    if text.isdigit():
        return f"cuda:{text}"
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise InvalidInputError(
        f"{text!r} is not a device: give a GPU index (1), cuda:N or cpu", param="decode_device"
    )


def layout_from_flags(
    gpus: str | None,
    parallel: str | None,
    decode_device: str | None,
    device: str | None = None,
) -> ParallelLayout | None:
    """The layout the flags ask for; None when none was given (`--device` alone decides).

    Transformer ranks take the GPUs of `--gpus` in order, leaving out the decode device when
    there is one GPU more than they need (with exactly as many, the decode rank shares the
    last GPU). Without `--gpus`, every rank runs on `--device` (default cuda), e.g. several
    CPU ranks in tests.
    """
    degrees = parse_degrees(parallel or "")
    decode = None if decode_device is None else _device(decode_device)
    if gpus is None and not degrees and decode is None:
        return None
    needed = math.prod(degrees.values())
    if gpus is None:
        transformer = (device or "cuda",) * needed
    else:
        listed = tuple(_device(g) for g in gpus.split(",") if g.strip())
        if len(set(listed)) != len(listed) or any(d == "cpu" for d in listed):
            raise InvalidInputError(
                f"--gpus {gpus!r}: give distinct GPU indices, e.g. 0,1", param="gpus"
            )
        transformer = listed
        if decode in listed and len(listed) == needed + 1:
            transformer = tuple(d for d in listed if d != decode)
        if not degrees and decode is None and len(listed) > 1:
            raise InvalidInputError(
                f"--gpus {gpus}: say how to use {len(listed)} GPUs with --parallel "
                "(e.g. ulysses=2) and/or --decode-device",
                param="gpus",
            )
    return ParallelLayout(
        transformer_devices=transformer,
        ulysses=degrees.get("ulysses", 1),
        ring=degrees.get("ring", 1),
        cfg=degrees.get("cfg", 1),
        decode_device=decode,
    )
