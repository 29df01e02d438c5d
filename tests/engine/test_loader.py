"""Loading: variant from the checkpoint's own configs, clear errors for broken directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helios_serve.core.types import Variant
from helios_serve.engine.loader import load_model, validate_checkpoint
from helios_serve.engine.tiny import ensure_tiny_checkpoint
from helios_serve.engine.variant import detect_variant
from helios_serve.errors import CheckpointError


@pytest.fixture
def checkpoint_copy(data_dir: Path, tmp_path: Path) -> Path:
    source = ensure_tiny_checkpoint(data_dir, "tiny-mid")
    target = tmp_path / "Helios-Distilled"  # a misleading name: detection must ignore it
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize(
    ("name", "variant"),
    [("tiny", Variant.DISTILLED), ("tiny-mid", Variant.MID), ("tiny-base", Variant.BASE)],
)
def test_tiny_names_load_through_the_real_loader(
    data_dir: Path, name: str, variant: Variant
) -> None:
    model = load_model(name, data_dir)
    assert model.variant is variant
    assert model.is_tiny
    assert (model.path / "model_index.json").is_file()
    assert type(model.pipe).__name__ == (
        "HeliosPipeline" if variant is Variant.BASE else "HeliosPyramidPipeline"
    )


def test_variant_comes_from_configs_not_the_name(checkpoint_copy: Path) -> None:
    assert validate_checkpoint(checkpoint_copy) is Variant.MID


def test_missing_transformer_names_the_folder(checkpoint_copy: Path) -> None:
    shutil.rmtree(checkpoint_copy / "transformer")
    with pytest.raises(CheckpointError, match=r"transformer.*missing component"):
        load_model(str(checkpoint_copy), checkpoint_copy.parent)


def test_corrupt_model_index_names_the_file(checkpoint_copy: Path) -> None:
    (checkpoint_copy / "model_index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model_index\.json: not valid JSON"):
        validate_checkpoint(checkpoint_copy)


def test_missing_weights_are_reported(checkpoint_copy: Path) -> None:
    for f in (checkpoint_copy / "vae").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(CheckpointError, match=r"vae: no weights"):
        validate_checkpoint(checkpoint_copy)


def test_corrupt_weights_fail_with_checkpoint_error(checkpoint_copy: Path) -> None:
    for f in (checkpoint_copy / "transformer").glob("*.safetensors"):
        f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="loading failed"):
        load_model(str(checkpoint_copy), checkpoint_copy.parent)


def test_not_a_directory_and_unknown_hub_id(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        load_model(str(tmp_path / "nope"), tmp_path)
    with pytest.raises(CheckpointError, match="downloading it from the hub failed"):
        load_model("no-such-org/no-such-model-for-helios", tmp_path)


def test_dmd_scheduler_without_is_distilled_is_refused() -> None:
    index = {
        "_class_name": "HeliosPyramidPipeline",
        "is_distilled": False,
        "scheduler": ["diffusers", "HeliosDMDScheduler"],
    }
    with pytest.raises(CheckpointError, match="without is_distilled"):
        detect_variant(index, {"_class_name": "HeliosDMDScheduler", "stages": 3})


def test_unknown_pipeline_class_is_refused() -> None:
    with pytest.raises(CheckpointError, match="is this a Helios checkpoint"):
        detect_variant({"_class_name": "WanPipeline"}, {"_class_name": "UniPCMultistepScheduler"})


def test_tiny_checkpoint_is_deterministic(tmp_path: Path) -> None:
    from helios_serve.engine.tiny import write_tiny_checkpoint

    a = write_tiny_checkpoint(tmp_path / "a", Variant.DISTILLED, seed=3)
    b = write_tiny_checkpoint(tmp_path / "b", Variant.DISTILLED, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert {"model_index.json", "transformer/config.json", "tokenizer/tokenizer.json"} <= {
        str(f) for f in files
    }
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert json.loads((a / "model_index.json").read_text())["is_distilled"] is True
