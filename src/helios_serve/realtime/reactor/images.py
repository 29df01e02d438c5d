"""Turn a client's FileRef into a decoded reference image, or a `CommandError` saying why not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from helios_serve.errors import InvalidInputError
from helios_serve.media.decode import load_image
from helios_serve.realtime.reactor.commands import FileRef
from helios_serve.realtime.reactor.protocol import CommandError
from helios_serve.realtime.reactor.state_machine import ReferenceImage

UploadResolver = Callable[[str], bytes]
"""upload id → the bytes the client PUT; raises `LookupError` when there are none (yet)."""


class ImageLoader:
    """Resolves uploads and decodes them off the event loop (decoding is CPU work)."""

    def __init__(self, resolve: UploadResolver) -> None:
        self._resolve = resolve

    async def load(self, command: str, ref: FileRef) -> ReferenceImage:
        try:
            data = self._resolve(ref.upload_id)
        except LookupError as exc:
            raise CommandError(command, f"unknown_upload: {exc}") from exc
        return await asyncio.to_thread(self.decode, command, data)

    @staticmethod
    def decode(command: str, data: bytes) -> ReferenceImage:
        try:
            image = load_image(data, param="image")
        except InvalidInputError as exc:
            raise CommandError(command, f"invalid_image: {exc.message}") from exc
        return ReferenceImage(np.asarray(image, dtype=np.uint8).copy())
