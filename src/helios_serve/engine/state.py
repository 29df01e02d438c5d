"""StreamState: a stream's whole bounded state at a chunk boundary, as a value and as bytes.

Everything the next chunk reads is here: the 19 history latents, the anchor latent, the CPU
generator's state, the chunk index (the amplified first chunk and the blend depend on it), the
prompt and any prompt fade in progress. Prompt embeddings are not stored: the text encoder
rebuilds them from the prompt, except the starting point of a fade still in progress (itself a
mix of earlier prompts), which is kept as a tensor. What the stream was opened with (size,
sampling settings, variant) is recorded too, so a state is never continued under different
settings by mistake.

On disk it is one safetensors blob (~5 MB at 640x384), its metadata a small JSON document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from helios_serve.core.settings import SamplingSettings
from helios_serve.core.spec import settings_to_json
from helios_serve.errors import HeliosError

STATE_FORMAT = "helios-stream-state"
STATE_VERSION = 1


class StateMismatchError(HeliosError):
    """A saved state that cannot continue this stream (other size, settings or model)."""

    code = "checkpoint_mismatch"


class CorruptStateError(HeliosError):
    """Bytes that are not a stream state this version can read."""

    code = "corrupt_checkpoint"


@dataclass(frozen=True)
class BlendState:
    """A prompt fade in progress: from `start` (embeddings) to the current prompt."""

    start: torch.Tensor
    chunks: int
    done: int


@dataclass(frozen=True)
class StreamIdentity:
    """What a stream was opened with; a state only continues a stream with the same identity."""

    variant: str
    height: int
    width: int
    settings: dict[str, Any]

    @classmethod
    def of(
        cls, variant: str, height: int, width: int, settings: SamplingSettings
    ) -> StreamIdentity:
        # the negative prompt is part of the settings; it is re-encoded on resume
        return cls(variant, height, width, settings_to_json(settings))

    def check_continues(self, other: StreamIdentity) -> None:
        """Raise `StateMismatchError` naming the first difference."""
        for name in ("variant", "height", "width"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                raise StateMismatchError(
                    f"the saved stream state has {name} {mine}, this stream {theirs}"
                )
        if self.settings != other.settings:
            keys = sorted(k for k in self.settings if self.settings[k] != other.settings.get(k))
            raise StateMismatchError(
                "the saved stream state was made with other sampling settings "
                f"({', '.join(keys) or 'different keys'})"
            )


@dataclass(frozen=True)
class StreamState:
    """A stream between two chunks: continuing from it gives exactly the frames the original
    stream would have made next."""

    identity: StreamIdentity
    chunk_index: int
    seed: int
    prompt: str
    history: torch.Tensor
    anchor: torch.Tensor | None
    generator_state: torch.Tensor
    blend: BlendState | None = None

    def to_bytes(self) -> bytes:
        tensors = {
            "history": self.history.detach().float().cpu().contiguous(),
            "generator_state": self.generator_state.detach().cpu().contiguous(),
        }
        if self.anchor is not None:
            tensors["anchor"] = self.anchor.detach().float().cpu().contiguous()
        if self.blend is not None:
            tensors["blend_start"] = self.blend.start.detach().cpu().contiguous()
        meta = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "identity": {
                "variant": self.identity.variant,
                "height": self.identity.height,
                "width": self.identity.width,
                "settings": self.identity.settings,
            },
            "chunk_index": self.chunk_index,
            "seed": self.seed,
            "prompt": self.prompt,
            "blend": None
            if self.blend is None
            else {"chunks": self.blend.chunks, "done": self.blend.done},
        }
        return bytes(save_tensors(tensors, metadata={"helios": json.dumps(meta)}))

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamState:
        try:
            tensors = load_tensors(data)
            meta = json.loads(_metadata(data)["helios"])
            if meta.get("format") != STATE_FORMAT:
                raise ValueError("not a helios stream state")
            if meta.get("version") != STATE_VERSION:
                raise ValueError(f"state version {meta.get('version')}, expected {STATE_VERSION}")
            ident = meta["identity"]
            blend = None
            if meta["blend"] is not None:
                b = meta["blend"]
                blend = BlendState(tensors["blend_start"], int(b["chunks"]), int(b["done"]))
            return cls(
                identity=StreamIdentity(
                    str(ident["variant"]),
                    int(ident["height"]),
                    int(ident["width"]),
                    dict(ident["settings"]),
                ),
                chunk_index=int(meta["chunk_index"]),
                seed=int(meta["seed"]),
                prompt=str(meta["prompt"]),
                history=tensors["history"],
                anchor=tensors.get("anchor"),
                generator_state=tensors["generator_state"],
                blend=blend,
            )
        except CorruptStateError:
            raise
        except Exception as exc:  # any malformed blob is the same failure to the caller
            raise CorruptStateError(f"unreadable stream state: {type(exc).__name__}") from None


def _metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's `__metadata__` (the tensors loader does not return it)."""
    size = int.from_bytes(data[:8], "little")
    if size <= 0 or size > len(data) - 8:
        raise ValueError("bad safetensors header size")
    header = json.loads(data[8 : 8 + size])
    meta = header.get("__metadata__")
    if not isinstance(meta, dict):
        raise ValueError("no metadata")
    return {str(k): str(v) for k, v in meta.items()}
