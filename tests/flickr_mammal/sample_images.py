"""Real photos (scikit-image's and scikit-learn's bundled samples) encoded every way the web does.

Shared by test_imaging.py and test_download.py; everything is built in memory, offline.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms
from skimage import data as skdata
from sklearn.datasets import load_sample_image

ORIENTATION = 0x0112
GPS_IFD = 0x8825


def encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def chelsea() -> Image.Image:
    return Image.fromarray(skdata.chelsea())  # 451 x 300 RGB


def jpeg_ok() -> bytes:
    return encode(chelsea(), "JPEG", quality=92)


def china_jpeg() -> bytes:
    return encode(Image.fromarray(load_sample_image("china.jpg")), "JPEG", quality=92)  # 640x427


def png_alpha() -> bytes:
    """Astronaut, 512 x 512, left half fully transparent."""
    rgba = Image.fromarray(skdata.astronaut()).convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, :256] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return encode(rgba, "PNG")


def gif() -> bytes:
    return encode(Image.fromarray(skdata.coffee()).convert("P"), "GIF")  # 600 x 400


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(skdata.rocket()).convert("CMYK"), "JPEG", quality=92)  # 640x427


def grey_jpeg() -> bytes:
    return encode(Image.fromarray(skdata.camera()), "JPEG", quality=92)  # 512 x 512 "L"


def rotated_jpeg(orientation: int = 6) -> bytes:
    """Chelsea stored 451 x 300 with an EXIF tag saying "rotate 90 degrees clockwise"."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return encode(chelsea(), "JPEG", quality=92, exif=exif.tobytes())


def gps_jpeg() -> bytes:
    """Coffee with GPS EXIF, an sRGB ICC profile and a comment: all private, none may survive."""
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2] = "N", (52.0, 13.0, 29.5)
    gps[3], gps[4] = "E", (13.0, 24.0, 12.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return encode(Image.fromarray(skdata.coffee()), "JPEG", quality=92, exif=exif.tobytes(),
                  icc_profile=icc, comment=b"shot at my home address")


def small_png() -> bytes:
    """100 x 80 crop: smaller than the target, so it must not be enlarged."""
    return encode(chelsea().crop((0, 0, 100, 80)), "PNG")


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A ~100-byte PNG whose header declares width x height pixels."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(tag + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


HTML = b"<!doctype html><html><body>This photo is no longer available</body></html>"
