"""Tell Base, Mid and Distilled apart from a checkpoint's own configs, never from its name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helios_serve.core.types import Variant
from helios_serve.errors import CheckpointError

BASE_PIPELINE = "HeliosPipeline"
PYRAMID_PIPELINE = "HeliosPyramidPipeline"
UNIPC_SCHEDULER = "HeliosScheduler"
DMD_SCHEDULER = "HeliosDMDScheduler"


def detect_variant(model_index: Mapping[str, Any], scheduler_config: Mapping[str, Any]) -> Variant:
    """Return the variant that `model_index.json` and `scheduler_config.json` describe."""
    pipeline_class = model_index.get("_class_name")
    scheduler_entry = model_index.get("scheduler") or [None, None]
    scheduler_class = scheduler_config.get("_class_name") or scheduler_entry[-1]
    stages = int(scheduler_config.get("stages", 1))
    if pipeline_class == BASE_PIPELINE:
        if scheduler_class != UNIPC_SCHEDULER or stages != 1:
            raise CheckpointError(
                f"scheduler/scheduler_config.json: a {BASE_PIPELINE} needs a single-stage "
                f"{UNIPC_SCHEDULER}, found {scheduler_class} with stages={stages}"
            )
        return Variant.BASE
    if pipeline_class != PYRAMID_PIPELINE:
        raise CheckpointError(
            f"model_index.json: _class_name is {pipeline_class!r}; expected "
            f"{BASE_PIPELINE!r} or {PYRAMID_PIPELINE!r} (is this a Helios checkpoint?)"
        )
    if model_index.get("is_distilled", False):
        if scheduler_class != DMD_SCHEDULER:
            raise CheckpointError(
                f"scheduler/scheduler_config.json: is_distilled checkpoints need "
                f"{DMD_SCHEDULER}, found {scheduler_class}"
            )
        return Variant.DISTILLED
    if scheduler_class == DMD_SCHEDULER:
        raise CheckpointError(
            f"model_index.json: {DMD_SCHEDULER} without is_distilled=true cannot sample "
            "(set is_distilled in model_index.json)"
        )
    if scheduler_class != UNIPC_SCHEDULER or stages < 2:
        raise CheckpointError(
            f"scheduler/scheduler_config.json: a {PYRAMID_PIPELINE} needs a multi-stage "
            f"{UNIPC_SCHEDULER}, found {scheduler_class} with stages={stages}"
        )
    return Variant.MID
