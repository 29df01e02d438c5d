"""The random-weight checkpoint of the real architecture loads through the real loader."""

from __future__ import annotations

from pathlib import Path

import torch

from helios_bench.random_checkpoint import TOY_TRANSFORMER, write_random_checkpoint
from helios_serve.core.types import Variant
from helios_serve.engine.loader import load_model


def test_a_random_checkpoint_loads_as_a_distilled_model(tmp_path: Path) -> None:
    path = write_random_checkpoint(tmp_path / "toy", "toy", torch.device("cpu"))
    assert (path / "helios_random.json").is_file()
    model = load_model(str(path), tmp_path / "data")
    assert model.variant is Variant.DISTILLED
    assert not model.is_tiny  # served at the trained 640x384 with 512 text tokens, like 14B
    config = model.pipe.transformer.config
    assert config.num_layers == TOY_TRANSFORMER["num_layers"]
    embeds = model.pipe.encode_prompt("a fox", max_sequence_length=512, device="cpu")[0]
    assert embeds.shape == (1, 512, TOY_TRANSFORMER["text_dim"])
