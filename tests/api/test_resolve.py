"""Request + served model → complete settings; frame counts; sizes."""

from __future__ import annotations

import pytest

from helios_serve.api.videos.extra import HeliosExtraParams
from helios_serve.api.videos.params import VideoCreateRequest
from helios_serve.api.videos.reference import ReferenceMedia
from helios_serve.api.videos.resolve import DEFAULT_NUM_FRAMES, resolve_spec_fields
from helios_serve.api.videos.sizes import FittedSize, check_size
from helios_serve.core.requests import RequestError, nearest_valid
from helios_serve.core.settings import PRESETS
from helios_serve.core.types import Mode, Variant

from .conftest import BASE, DISTILLED, MID, model_info


def test_bare_request_is_the_preset_with_model_defaults() -> None:
    for model in (BASE, MID, DISTILLED):
        resolved = resolve_spec_fields(VideoCreateRequest(prompt="p"), model, seed_source=lambda: 3)
        preset = PRESETS[model.variant]
        assert resolved.settings == preset.with_overrides(max_sequence_length=512)
        assert (resolved.width, resolved.height, resolved.fps, resolved.seed) == (640, 384, 24, 3)
        assert resolved.num_frames == DEFAULT_NUM_FRAMES
        assert (resolved.chunks, resolved.delivered_frames) == (3, 99)
        assert resolved.mode is Mode.T2V
        assert resolved.size == "640x384"
        assert resolved.duration_s == pytest.approx(99 / 24)


def test_random_seed_when_absent() -> None:
    seeds = {resolve_spec_fields(VideoCreateRequest(prompt="p"), BASE).seed for _ in range(5)}
    assert all(0 <= s < 2**32 for s in seeds)
    assert len(seeds) > 1


@pytest.mark.parametrize(
    ("num_frames", "seconds", "fps", "expected", "delivered"),
    [
        (None, 4, None, 96, 96),
        (None, 4, 8, 32, 32),
        (None, 2, 12, 24, 24),  # vLLM-Omni's and Wan's clients: exactly seconds x fps
        (33, 8, None, 33, 33),
        (1, None, None, 1, 1),
        (34, None, None, 34, 34),
    ],
)
def test_frames_are_exactly_those_asked(
    num_frames: int | None, seconds: int | None, fps: int | None, expected: int, delivered: int
) -> None:
    req = VideoCreateRequest(prompt="p", num_frames=num_frames, seconds=seconds, fps=fps)
    resolved = resolve_spec_fields(req, DISTILLED)
    assert (resolved.num_frames, resolved.delivered_frames) == (expected, delivered)


def test_request_fields_and_extra_params_override_the_preset() -> None:
    extra = HeliosExtraParams(
        pyramid_num_inference_steps_list=[4, 3, 2],
        is_amplify_first_chunk=False,
        use_cfg_zero_star=True,
        use_zero_init=False,
        zero_steps=3,
        image_noise_sigma_min=0.05,
        video_noise_sigma_max=0.5,
        max_sequence_length=128,
    )
    req = VideoCreateRequest(
        prompt="p",
        guidance_scale=2.5,
        negative_prompt="ugly",
        width=320,
        height=192,
        seed=9,
        extra=extra,
    )
    settings = resolve_spec_fields(req, DISTILLED).settings
    assert settings.pyramid_steps == (4, 3, 2)
    assert settings.guidance_scale == 2.5
    assert (settings.amplify_first_chunk, settings.use_cfg_zero_star, settings.use_zero_init) == (
        False,
        True,
        False,
    )
    assert settings.zero_steps == 3
    assert settings.negative_prompt == "ugly"
    assert settings.max_sequence_length == 128
    assert settings.image_noise_sigma == (0.05, 0.135)
    assert settings.video_noise_sigma == (0.111, 0.5)


def test_base_steps_and_tiny_model_defaults() -> None:
    tiny = model_info(Variant.BASE)
    tiny = type(tiny)(
        **{
            **tiny.__dict__,
            "default_width": 64,
            "default_height": 64,
            "default_max_sequence_length": 16,
        }
    )
    resolved = resolve_spec_fields(VideoCreateRequest(prompt="p", num_inference_steps=4), tiny)
    assert resolved.settings.num_inference_steps == 4
    assert (resolved.width, resolved.height, resolved.settings.max_sequence_length) == (64, 64, 16)


def test_pyramid_with_other_stage_count_gets_one_step_count_per_stage() -> None:
    two = model_info(Variant.MID)
    two = type(two)(**{**two.__dict__, "pyramid_stages": 2})
    assert resolve_spec_fields(VideoCreateRequest(prompt="p"), two).settings.pyramid_steps == (
        20,
        20,
    )


@pytest.mark.parametrize(("kind", "mode"), [("image", Mode.I2V), ("video", Mode.V2V)])
def test_mode_follows_the_reference(kind: str, mode: Mode) -> None:
    ref = ReferenceMedia(b"x", kind, 64, 48, 1 if kind == "image" else 40)  # type: ignore[arg-type]
    resolved = resolve_spec_fields(VideoCreateRequest(prompt="p", reference=ref), BASE)
    assert resolved.mode is mode
    assert resolved.reference is ref


def test_size_multiples() -> None:
    assert BASE.size_multiple == 16
    assert MID.size_multiple == 64
    assert nearest_valid(650, 64, 1920) == [640, 704]
    assert nearest_valid(10, 16, 1920) == [16]
    assert nearest_valid(5000, 64, 1920) == [1920]
    assert nearest_valid(1910, 16, 1920) == [1904, 1920]


def test_size_string_overrides_width_and_height() -> None:
    assert check_size("1280x720", 640, 384, BASE, 1920) == FittedSize(1280, 720)
    assert check_size(" 640 X 384 ", None, None, MID, 1920) == FittedSize(640, 384)
    assert check_size(None, 320, None, BASE, 1920) == FittedSize(320, 384)
    assert check_size(None, None, None, BASE, 1920) is None


@pytest.mark.parametrize(
    ("size", "model", "fitted"),
    [
        # OpenAI's literals and any other size: generated at the covering size, then cut
        ("1280x720", MID, FittedSize(1280, 768, (1280, 720))),
        ("720x1280", BASE, FittedSize(720, 1280)),  # Base makes 720 directly
        ("1792x1024", MID, FittedSize(1792, 1024)),
        ("640x360", MID, FittedSize(640, 384, (640, 360))),  # what vLLM-Omni's clients send
        ("320x240", DISTILLED, FittedSize(320, 256, (320, 240))),
        ("1280x700", MID, FittedSize(1280, 704, (1280, 700))),
        ("16x1920", BASE, FittedSize(16, 1920)),
        ("18x18", MID, FittedSize(64, 64, (18, 18))),
    ],
)
def test_any_even_size_in_range_is_served(size: str, model: object, fitted: FittedSize) -> None:
    assert check_size(size, None, None, model, 1920) == fitted  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("641x360", "width 641 is odd"),
        ("640x361", "height 361 is odd"),
        ("8x384", "width 8 is outside 16..1920"),
        ("640x1922", "height 1922 is outside 16..1920"),
    ],
)
def test_sizes_that_cannot_be_served_say_why(size: str, message: str) -> None:
    with pytest.raises(RequestError) as info:
        check_size(size, None, None, MID, 1920)
    assert info.value.param == "size"
    assert message in info.value.message
