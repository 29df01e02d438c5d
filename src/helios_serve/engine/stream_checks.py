"""What a stream request must satisfy: on its own (`validate_request`), and for the loaded model
and its layout (`check_fits`). Both run when a stream opens, before any work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from helios_serve.core.spec import StreamRequest
from helios_serve.core.types import Variant
from helios_serve.errors import InvalidInputError

if TYPE_CHECKING:
    from helios_serve.engine.loader import LoadedModel


def validate_request(request: StreamRequest) -> None:
    """Reject what diffusers would crash on, with a message that says what to do."""
    if request.height % 16 or request.width % 16 or request.height <= 0 or request.width <= 0:
        raise InvalidInputError(
            f"height and width must be positive multiples of 16, got {request.height}x"
            f"{request.width}",
            param="size",
        )
    if request.image is not None and request.video is not None:
        raise InvalidInputError("give an image (I2V) or a video (V2V), not both", param="image")
    if request.video is not None and len(request.video) < 1:
        raise InvalidInputError("V2V needs a video of at least one frame", param="video")
    s = request.settings
    if s.num_inference_steps < 1 or not s.pyramid_steps or min(s.pyramid_steps) < 1:
        raise InvalidInputError("step counts must be at least 1", param="steps")
    if s.max_sequence_length < 1:
        raise InvalidInputError(
            "max_sequence_length must be at least 1", param="max_sequence_length"
        )


def check_fits(model: LoadedModel, request: StreamRequest) -> None:
    """The checkpoint's pyramid and the parallel layout can run `request`."""
    pipe = model.pipe
    pyramid = model.variant is not Variant.BASE
    if pyramid and len(request.settings.pyramid_steps) != pipe.scheduler.config.stages:
        raise InvalidInputError(
            f"this checkpoint samples in {pipe.scheduler.config.stages} pyramid stages; "
            f"got steps for {len(request.settings.pyramid_steps)}",
            param="pyramid_steps",
        )
    if pyramid:
        multiple = pipe.vae_scale_factor_spatial * 2**pipe.scheduler.config.stages
        if request.height % multiple or request.width % multiple:
            raise InvalidInputError(
                f"a {pipe.scheduler.config.stages}-stage pyramid needs height and width in "
                f"multiples of {multiple}, got {request.width}x{request.height} "
                "(640x384 is the trained size)",
                param="size",
            )
    if model.parallel is not None:
        stages = pipe.scheduler.config.stages if pyramid else 1
        model.parallel.check_stream(request, stages)
