"""Images in messages: the media types Aurea accepts, recognizing a type from its first bytes,
reading the pixel size from a header (for token estimates), ``data:`` URLs, and the size limit.

Only the header is read: nothing here decodes an image.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

__all__ = [
    "MAX_IMAGE_BYTES",
    "MEDIA_TYPES",
    "image_size",
    "media_type_from_url",
    "parse_data_url",
    "sniff_media_type",
]

# Inline image bytes per image. Under the gRPC server's default 4 MiB message limit, so the
# limit answers INVALID_ARGUMENT itself; also under Anthropic's 5 MB per image, the strictest
# of the vendors.
MAX_IMAGE_BYTES = 3 * 1024 * 1024
MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*(?P<b64>;base64)?,")
_EXTENSIONS = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def sniff_media_type(data: bytes) -> str:
    """The media type the bytes' signature says, or "" when it is none of ``MEDIA_TYPES``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


def media_type_from_url(url: str) -> str:
    """The media type a URL's file extension suggests ("" when it suggests none)."""
    path = url.split("?", 1)[0].split("#", 1)[0].lower()
    for ext, media_type in _EXTENSIONS.items():
        if path.endswith(ext):
            return media_type
    return ""


def parse_data_url(url: str, limit: int = MAX_IMAGE_BYTES) -> tuple[str, bytes]:
    """(media type, bytes) of a base64 ``data:`` URL; ValueError saying what is wrong. The
    encoded text is checked against ``limit`` before it is decoded."""
    match = _DATA_URL.match(url)
    if match is None or not match.group("b64"):
        raise ValueError("a data: URL must be data:<media type>;base64,<data>")
    encoded = url[match.end() :]
    if len(encoded) > (limit + 2) // 3 * 4:
        raise ValueError(f"the image is larger than {limit} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the data: URL's base64 is not valid") from exc
    return (match.group("type") or "").lower(), data


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels from a PNG, GIF, JPEG or WebP header; None when unreadable."""
    try:
        kind = sniff_media_type(data)
        if kind == "image/png" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if kind == "image/gif":
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if kind == "image/jpeg":
            return _jpeg_size(data)
        if kind == "image/webp":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return int(w) & 0x3FFF, int(h) & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None
