"""Magic-byte sniffing: what counts as an image, a video, or neither."""

from __future__ import annotations

import pytest

from helios_serve.media.decode import sniff_kind


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image"),
        (b"GIF89a\x01\x00\x01\x00", "image"),
        (b"GIF87a\x01\x00\x01\x00", "image"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "video"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "video"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "video"),
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00", None),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", None),
        (b"#EXTM3U\n#EXT-X-VERSION:3\nsegment0.ts\n", None),
        (b"ffconcat version 1.0\nfile '/etc/passwd'\n", None),
        (b"hello, world\n", None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"BM\x00\x00", None),
        (b"", None),
        (b"\x00\x01\x02\x03", None),
    ],
)
def test_sniff_kind(data: bytes, kind: str | None) -> None:
    assert sniff_kind(data) == kind
