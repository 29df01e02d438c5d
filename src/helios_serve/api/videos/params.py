"""`POST /v1/videos` fields → a validated, typed `VideoCreateRequest`, from a form or JSON.

One validation core serves both spellings. Form values are text, so they are parsed leniently
("640", "5.0", "true"; pydantic's lax mode, so "640.0" is 640 but "640.5" is a 400); JSON values
must have their JSON types (strict mode: an int is accepted where a float is expected, and
`seconds` may be a string or an integer, but "640" or 640.0 for `width` is a 400).

Decisions:
- any even size within 16..max_side is served: one that is not a multiple of 16 (of
  `8 * 2**stages` = 64 on a 3-stage pyramid) is generated at the smallest multiple that
  contains it and cut to it around the centre (`sizes.check_size`); `size` overrides
  `width`/`height`;
- `seed` must be in 0..2**63-1 (negative is a 400); absent means random at resolve time;
- `num_inference_steps` on a pyramid model (Mid/Distilled) is a 400 pointing at
  `extra_params.pyramid_num_inference_steps_list` (the seed sends it to Base only);
- unknown top-level fields are ignored and logged (SDKs and gateways add their own), except
  Helios keys sent at the top level, which are a 400 asking to move them into `extra_params`;
- a scalar form field given twice is a 400; prompts with NUL or lone surrogates are a 400.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from helios_serve.api.videos.extra import (
    HeliosExtraParams,
    check_for_model,
    parse_extra_params,
    unflatten_bracket_fields,
    validate_extra_params,
)
from helios_serve.api.videos.fields import (
    REFERENCE_FIELDS,
    CreateFields,
    VideoCreateRequest,
    check_model,
    check_ranges,
    check_seconds,
    reject_unknown,
)
from helios_serve.api.videos.limits import DEFAULT_REQUEST_LIMITS, RequestLimits
from helios_serve.api.videos.reference import (
    ReferenceMedia,
    check_reference,
    reference_from_json,
)
from helios_serve.api.videos.resolve import ResolvedParams, resolve_spec_fields, settings_for
from helios_serve.api.videos.sizes import check_size
from helios_serve.core.json_text import JsonTextError, loads_strict
from helios_serve.core.requests import DEFAULT_FPS, check_prompt, check_seed
from helios_serve.core.spec import ModelInfo
from helios_serve.errors import TooLargeError
from helios_serve.web.errors import api_error_from_validation, bad_request

__all__ = [
    "HeliosExtraParams",
    "ReferenceMedia",
    "ResolvedParams",
    "VideoCreateRequest",
    "parse_extra_params",
    "parse_form",
    "parse_json",
    "resolve_spec_fields",
]


def _validate(
    raw: Mapping[str, Any],
    extra_values: Mapping[str, Any],
    model: ModelInfo,
    limits: RequestLimits,
    *,
    lax: bool,
    extra_lax: bool = False,
) -> VideoCreateRequest:
    """The shared core: everything but the reference media, top-level fields first.

    `lax` parses top-level values from text (forms); `extra_lax` does so for `extra_params`
    (bracket form fields; a JSON string in a form is strict like any JSON).
    """
    reject_unknown(raw)
    try:
        fields = CreateFields.model_validate(dict(raw), strict=not lax)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        raise api_error_from_validation(errors) from exc
    check_prompt(fields.prompt)
    if fields.negative_prompt is not None:
        check_prompt(fields.negative_prompt, "negative_prompt", required=False)
    seed = check_seed(fields.seed)
    name = check_model(fields.model, model)
    fitted = check_size(fields.size, fields.width, fields.height, model, limits.max_side)
    check_ranges(fields, limits)
    seconds = check_seconds(fields.seconds, fields.fps or DEFAULT_FPS, limits)
    extra = validate_extra_params(extra_values, lax=extra_lax)
    check_for_model(extra, model)
    request = VideoCreateRequest(
        prompt=fields.prompt,
        model=name,
        width=None if fitted is None else fitted.width,
        height=None if fitted is None else fitted.height,
        num_frames=fields.num_frames,
        fps=fields.fps,
        seconds=seconds,
        seed=seed,
        guidance_scale=fields.guidance_scale,
        num_inference_steps=fields.num_inference_steps,
        negative_prompt=fields.negative_prompt,
        extra=extra,
        output_size=None if fitted is None else fitted.output,
    )
    settings_for(request, model)  # refuse what the served checkpoint cannot run, now
    return request


def _with_reference(request: VideoCreateRequest, ref: ReferenceMedia | None) -> VideoCreateRequest:
    if ref is None:
        return request
    return replace(request, reference=ref)


def _read_upload(upload: UploadFile, limits: RequestLimits) -> bytes:
    cap = limits.media.max_bytes
    if upload.size is not None and upload.size > cap:
        raise TooLargeError(
            f"input_reference is {upload.size} bytes, over the limit of {cap} bytes",
            code="file_too_large",
            param="input_reference",
        )
    upload.file.seek(0)
    return upload.file.read(cap + 1)


def _split_form(form: FormData) -> tuple[dict[str, str], list[tuple[str, str]], UploadFile | None]:
    texts: dict[str, str] = {}
    brackets: list[tuple[str, str]] = []
    upload: UploadFile | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "input_reference":
                raise bad_request(
                    f"unexpected file field {name[:100]!r}: only input_reference takes a file "
                    "(send other fields as text, e.g. curl -F 'extra_params=<params.json')",
                    param=name[:100],
                )
            if not value.filename and not value.size:
                continue  # what a browser form sends when no file was chosen
            if upload is not None:
                raise bad_request(
                    "input_reference given more than once",
                    param=name,
                    code="duplicate_parameter",
                )
            upload = value
        elif name.startswith("extra_params["):
            brackets.append((name, value))
        elif (flat := _flat_reference(name)) is not None:
            field, key = flat  # `input_reference[image_url]=data:...` (a dict, flattened)
            if field in texts:
                raise bad_request(
                    f"{field} given more than once", param=field, code="duplicate_parameter"
                )
            texts[field] = json.dumps({key: value})
        elif name in texts:
            raise bad_request(
                f"{name[:100]} given more than once", param=name[:100], code="duplicate_parameter"
            )
        else:
            texts[name] = value
    return texts, brackets, upload


def _flat_reference(name: str) -> tuple[str, str] | None:
    for field in REFERENCE_FIELDS:
        for key in ("image_url", "video_url"):
            if name == f"{field}[{key}]":
                return field, key
    return None


def _one_reference(values: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The reference field that was given (at most one), and its value."""
    given = [(f, values[f]) for f in REFERENCE_FIELDS if values.get(f) not in (None, "")]
    if len(given) > 1:
        raise bad_request(
            "give only one of input_reference, image_reference, or video_reference "
            f"(got {given[0][0]} and {given[1][0]})",
            param=given[1][0],
            code="duplicate_parameter",
        )
    return given[0] if given else None


def _reference(
    values: Mapping[str, Any], limits: RequestLimits, *, text: bool
) -> ReferenceMedia | None:
    found = _one_reference(values)
    if found is None:
        return None
    field, value = found
    ref = reference_from_json(_text_reference(value) if text else value, limits.media)
    wanted = {"image_reference": "image", "video_reference": "video"}.get(field)
    if ref is not None and wanted is not None and ref.kind != wanted:
        other = "video_reference" if ref.kind == "video" else "image_reference"
        raise bad_request(
            f"{field} holds {'a video' if ref.kind == 'video' else 'an image'}: send it as "
            f"{other} (or input_reference)",
            param=field,
            code="invalid_input_reference",
        )
    return ref


def parse_form(
    form: FormData, model: ModelInfo, limits: RequestLimits = DEFAULT_REQUEST_LIMITS
) -> VideoCreateRequest:
    """Validate a multipart or urlencoded form (curl -F, requests, the openai SDK).

    Decodes the reference media, so it blocks: call it off the event loop.
    """
    texts, brackets, upload = _split_form(form)
    if brackets and "extra_params" in texts:
        raise bad_request(
            "give extra_params either as one JSON field or as extra_params[key] fields, not both",
            param="extra_params",
        )
    if brackets:
        extra = unflatten_bracket_fields(brackets)
    else:
        extra = parse_extra_params(texts.get("extra_params"))
    request = _validate(texts, extra, model, limits, lax=True, extra_lax=bool(brackets))
    if upload is not None:
        if (text := _one_reference(texts)) is not None:
            raise bad_request(
                "give only one of input_reference, image_reference, or video_reference "
                f"(got a file and {text[0]} as text)",
                param=text[0],
                code="duplicate_parameter",
            )
        ref: ReferenceMedia | None = check_reference(_read_upload(upload, limits), limits.media)
    else:
        ref = _reference(texts, limits, text=True)
    return _with_reference(request, ref)


def _text_reference(text: str | None) -> Any:
    """A text `input_reference` field: a data URL, or the JSON object form as a string."""
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        return loads_strict(text)
    except JsonTextError as exc:
        raise bad_request(
            "input_reference text is neither a data: URL nor a JSON object",
            param="input_reference",
            code="invalid_json",
        ) from exc


def parse_json(
    body: Mapping[str, Any], model: ModelInfo, limits: RequestLimits = DEFAULT_REQUEST_LIMITS
) -> VideoCreateRequest:
    """Validate a JSON body (OpenAI's documented shape; gateways send it).

    Decodes the reference media, so it blocks: call it off the event loop.
    """
    if not isinstance(body, Mapping):
        raise bad_request("the JSON body must be an object", param=None, code="invalid_body")
    extra = parse_extra_params(body.get("extra_params"))
    request = _validate(body, extra, model, limits, lax=False)
    return _with_reference(request, _reference(body, limits, text=False))
