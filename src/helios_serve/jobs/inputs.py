"""What a job's stream starts from: its prompt, size, seed and settings, and its reference
image or video (or, for an extension by frames, the source's last frames)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helios_serve.core.spec import StreamRequest
from helios_serve.jobs.assembly import has_v2v_base, pad_center, prepare_v2v_base, v2v_context
from helios_serve.jobs.files import JobFiles
from helios_serve.jobs.models import Job
from helios_serve.media.decode import load_image, load_video


def stream_request(files: JobFiles, job: Job, resuming: bool) -> StreamRequest:
    """The job's stream; a resumed one needs no reference (its state holds it)."""
    spec = job.spec
    image: Any = None
    video: Any = None
    if spec.extension is not None and spec.extension.mode == "v2v" and not resuming:
        video = (
            v2v_context(files, job.id)
            if has_v2v_base(files, job.id)
            else prepare_v2v_base(files, job.id, spec.fps)
        )
        video = pad_center(video, spec.width, spec.height)
    elif spec.reference_file is not None and not resuming:
        path: Path = files.reference_path(job.id, spec.reference_file)
        if spec.reference_kind == "video":
            video = load_video(path, param="input_reference")
        else:
            image = load_image(path, param="input_reference")
    settings = spec.settings.with_overrides(negative_prompt=spec.negative_prompt)
    return StreamRequest(
        prompt=spec.prompt,
        height=spec.height,
        width=spec.width,
        seed=spec.seed,
        settings=settings,
        image=image,
        video=video,
    )
