"""`HeliosTransformer3DModel.forward` as the engine runs it (see `compact_dit`).

Step for step diffusers 0.42's forward (patch embeddings, the three history patches with their
RoPE, the timestep embeddings, the blocks, the output norm and unpatchify) except that the blocks
get the modulation as two rows and the cross-attentions get their text K/V from the prompt cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from helios_serve.engine.compact_dit import CompactPaths


@dataclass
class _Tokens:
    hidden_states: torch.Tensor
    rotary_emb: torch.Tensor
    noisy: int
    """Noisy tokens (diffusers' `original_context_length`): the last ones of the sequence."""
    grid: tuple[int, int, int]
    """Post-patch frames, height, width of the noisy latents."""


def _rope(model: Any, indices: torch.Tensor, height: int, width: int, device: Any) -> torch.Tensor:
    return model.rope(frame_indices=indices, height=height, width=width, device=device)


def _history_patch(
    model: Any,
    latents: torch.Tensor,
    indices: torch.Tensor,
    size: tuple[int, int],
    which: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and RoPE of the mid (`kernel 2x4x4`) or long (`4x8x8`) history, as diffusers."""
    from diffusers.models.transformers.transformer_helios import (
        center_down_sample_3d,
        pad_for_3d_conv,
    )

    scale = 1 if which == "mid" else 2
    conv = model.patch_mid if which == "mid" else model.patch_long
    tokens = conv(pad_for_3d_conv(latents, (2 * scale, 4 * scale, 4 * scale)))
    tokens = tokens.flatten(2).transpose(1, 2)
    rope = _rope(model, indices, size[0], size[1], latents.device)
    kernel = (2 * scale, 2 * scale, 2 * scale)
    rope = center_down_sample_3d(pad_for_3d_conv(rope, kernel), kernel)
    return tokens, rope.flatten(2).transpose(1, 2)


def embed_tokens(model: Any, hidden_states: torch.Tensor, **kw: Any) -> _Tokens:
    """Steps 2-5 of diffusers' forward: noisy tokens, then short, mid, long history in front."""
    batch = hidden_states.shape[0]
    hidden_states = model.patch_embedding(hidden_states)
    _, _, frames, height, width = hidden_states.shape
    indices = kw.get("indices_hidden_states")
    if indices is None:
        indices = torch.arange(0, frames).unsqueeze(0).expand(batch, -1)
    hidden_states = hidden_states.flatten(2).transpose(1, 2)
    rotary = _rope(model, indices, height, width, hidden_states.device).flatten(2).transpose(1, 2)
    noisy = hidden_states.shape[1]

    short, short_idx = kw.get("latents_history_short"), kw.get("indices_latents_history_short")
    size = (0, 0)
    if short is not None and short_idx is not None:
        short = model.patch_short(short)
        size = (short.shape[3], short.shape[4])
        short = short.flatten(2).transpose(1, 2)
        rope = _rope(model, short_idx, size[0], size[1], short.device).flatten(2).transpose(1, 2)
        hidden_states = torch.cat([short, hidden_states], dim=1)
        rotary = torch.cat([rope, rotary], dim=1)
    for which in ("mid", "long"):
        latents, idx = (
            kw.get(f"latents_history_{which}"),
            kw.get(f"indices_latents_history_{which}"),
        )
        if latents is not None and idx is not None:
            tokens, rope = _history_patch(model, latents, idx, size, which)
            hidden_states = torch.cat([tokens, hidden_states], dim=1)
            rotary = torch.cat([rope, rotary], dim=1)
    return _Tokens(hidden_states, rotary, noisy, (frames, height, width))


def modulation_rows(
    model: Any, timestep: torch.Tensor, raw_text: torch.Tensor, batch: int, history: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(temb `[B, 1, D]` for the output norm, compact rows `[B, 2, 6, D]` for the blocks):
    the values diffusers repeats per token, once each."""
    embedder = model.condition_embedder
    temb, proj, _ = embedder(timestep, raw_text, is_return_encoder_hidden_states=False)
    noisy_row = proj.unflatten(-1, (6, -1)).view(batch, 6, -1)
    history_row = noisy_row
    if model.zero_history_timestep and history > 0:
        t0 = torch.zeros((1), dtype=timestep.dtype, device=timestep.device)
        _, proj_t0, _ = embedder(t0, raw_text, is_return_encoder_hidden_states=False)
        history_row = proj_t0.unflatten(-1, (6, -1)).view(1, 6, -1).expand(batch, -1, -1)
    rows = torch.stack([history_row, noisy_row], dim=1)
    return temb.view(batch, 1, -1), rows


def _unpatchify(model: Any, out: torch.Tensor, batch: int, grid: tuple[int, int, int]) -> Any:
    p_t, p_h, p_w = model.config.patch_size
    out = out.reshape(batch, *grid, p_t, p_h, p_w, -1)
    out = out.permute(0, 7, 1, 4, 2, 5, 3, 6)
    return out.flatten(6, 7).flatten(4, 5).flatten(2, 3)


def engine_forward(
    model: Any,
    paths: CompactPaths,
    hidden_states: torch.Tensor,
    timestep: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    return_dict: bool = True,
    attention_kwargs: dict[str, Any] | None = None,  # noqa: ARG001 (LoRA scales: none here)
    **history: Any,
) -> Any:
    """diffusers' forward arguments and result; the blocks run with compact modulation."""
    batch = hidden_states.shape[0]
    tokens = embed_tokens(model, hidden_states, **history)
    past = tokens.hidden_states.shape[1] - tokens.noisy
    temb, rows = modulation_rows(model, timestep, encoder_hidden_states, batch, past)
    prompt = paths.prompt(encoder_hidden_states)
    states = tokens.hidden_states.contiguous()
    rotary = tokens.rotary_emb.contiguous()
    with paths.primed(prompt):
        for block in model.blocks:
            states = block(states, prompt.text, rows, rotary, tokens.noisy)
    states = model.proj_out(model.norm_out(states, temb, tokens.noisy))
    output = _unpatchify(model, states, batch, tokens.grid)
    if not return_dict:
        return (output,)
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    return Transformer2DModelOutput(sample=output)
