"""flickr_mammal.imaging: one decode, upright, <= 300 px, RGB, no metadata, typed failures."""

from __future__ import annotations

import hashlib
import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms

from flickr_mammal import imaging
from flickr_mammal.imaging import ImageError, process_image, target_size
from tests.flickr_mammal import sample_images as s

cv2_resize = cv2.resize


def _decode(jpeg: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(jpeg))
    assert im.format == "JPEG"
    im.load()
    return im


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [((451, 300), 300, (300, 200)), ((300, 451), 300, (200, 300)), ((640, 427), 300, (300, 200)),
     ((100, 80), 300, (100, 80)), ((300, 300), 300, (300, 300)), ((5000, 1), 300, (300, 1))],
)
def test_target_size_shrinks_longest_side_and_never_enlarges(size, max_side, expected):
    assert target_size(*size, max_side) == expected


def test_ok_jpeg_is_shrunk_and_hashed():
    out = process_image(s.jpeg_ok())
    assert (out.width, out.height) == (300, 200)
    assert out.sha256 == hashlib.sha256(out.jpeg).hexdigest()
    im = _decode(out.jpeg)
    assert im.size == (300, 200) and im.mode == "RGB"
    # Same picture: close to a plain Pillow resize of the original.
    ref = np.asarray(s.chelsea().resize((300, 200), Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(np.asarray(im, dtype=float) - ref).mean() < 6


@pytest.mark.parametrize(("scale", "uses_opencv"), [(1.0, True), (2.4, False)])
def test_last_resize_step_is_close_to_a_full_size_lanczos(monkeypatch, scale, uses_opencv):
    # 640 px: draft decodes at 320, a 1.07x step for OpenCV's bicubic. 1536 px as PNG (no
    # draft): a 5x step that needs Pillow's antialiased filter.
    photo = Image.open(io.BytesIO(s.china_jpeg())).convert("RGB")
    photo = photo.resize((round(photo.width * scale), round(photo.height * scale)))
    buf = io.BytesIO()
    photo.save(buf, "JPEG" if scale == 1.0 else "PNG", quality=95)
    calls: list[tuple] = []

    def spy(*args, **kwargs):
        calls.append(args)
        return cv2_resize(*args, **kwargs)

    monkeypatch.setattr(imaging.cv2, "resize", spy)
    out = _decode(process_image(buf.getvalue()).jpeg)
    assert bool(calls) == uses_opencv
    ref = np.asarray(photo.resize(out.size, Image.Resampling.LANCZOS), dtype=float)
    mse = ((np.asarray(out, dtype=float) - ref) ** 2).mean()
    # This detailed photo: 27.5 dB (OpenCV step; the DCT-scaled decode sets the bound, Pillow's
    # bicubic after it gives 28.8) and 33 dB (Pillow step). Swapped channels give < 20.
    assert 10 * np.log10(255**2 / mse) > 26


def test_output_is_deterministic():
    assert process_image(s.china_jpeg()).jpeg == process_image(s.china_jpeg()).jpeg


def test_max_side_and_quality_are_honoured():
    small = process_image(s.china_jpeg(), max_side=64, quality=30)
    big = process_image(s.china_jpeg(), max_side=64, quality=95)
    assert (small.width, small.height) == (64, 43)
    assert len(small.jpeg) < len(big.jpeg)


def test_smaller_image_is_not_enlarged():
    out = process_image(s.small_png())
    assert (out.width, out.height) == (100, 80)


def test_png_alpha_is_flattened_on_white():
    out = process_image(s.png_alpha())
    px = np.asarray(_decode(out.jpeg), dtype=float)
    assert px.shape == (300, 300, 3)
    assert px[:, :140].mean() > 250          # transparent half -> white
    assert px[:, 160:].mean() < 200          # the astronaut is still there


def test_gif_palette_becomes_rgb():
    out = process_image(s.gif())
    assert (out.width, out.height) == (300, 200)
    assert _decode(out.jpeg).mode == "RGB"


def test_cmyk_jpeg_becomes_rgb_with_the_right_colours():
    out = process_image(s.cmyk_jpeg())
    from skimage import data as skdata

    ref = Image.fromarray(skdata.rocket()).resize((out.width, out.height))
    got = np.asarray(_decode(out.jpeg), dtype=float)
    assert got.shape == (200, 300, 3)
    assert np.abs(got - np.asarray(ref, dtype=float)).mean() < 12


def test_greyscale_becomes_three_channel_rgb():
    im = _decode(process_image(s.grey_jpeg()).jpeg)
    assert im.mode == "RGB" and im.size == (300, 300)
    r, g, b = (np.asarray(c, dtype=int) for c in im.split())
    assert np.abs(r - g).max() <= 2 and np.abs(g - b).max() <= 2


def test_exif_orientation_6_is_applied():
    plain = process_image(s.jpeg_ok())
    turned = process_image(s.rotated_jpeg(6))
    assert (turned.width, turned.height) == (200, 300)   # width and height swapped
    # Orientation 6 = the camera was turned: show it rotated 90 degrees clockwise.
    expected = np.rot90(np.asarray(_decode(plain.jpeg), dtype=float), k=-1)
    got = np.asarray(_decode(turned.jpeg), dtype=float)
    assert np.abs(got - expected).mean() < 4
    assert np.abs(got - np.rot90(expected, k=2)).mean() > 20  # not the other way round


def test_no_metadata_survives():
    raw = s.gps_jpeg()
    src = Image.open(io.BytesIO(raw))
    assert src.getexif().get_ifd(s.GPS_IFD) and "icc_profile" in src.info  # the input has them
    out = process_image(raw).jpeg
    im = Image.open(io.BytesIO(out))
    assert not im.getexif()
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(im.info)
    assert b"Exif" not in out and b"ICC_PROFILE" not in out and b"home address" not in out


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (s.HTML, "not_an_image"),
        (b"\x00" * 1000, "not_an_image"),
        (s.encode(s.chelsea(), "PPM"), "not_an_image"),  # decodable, but not a web format
        (s.png_bomb(30000, 30000), "too_many_pixels"),   # stopped by PIL's own guard
        (s.png_bomb(9000, 9000), "too_many_pixels"),     # 81 MP: stopped by max_pixels
    ],
)
def test_bad_input_raises_typed_error(data, reason):
    with pytest.raises(ImageError) as info:
        process_image(data)
    assert info.value.reason == reason


@pytest.mark.parametrize("fraction", [0.5, 0.9])
@pytest.mark.parametrize("maker", [s.jpeg_ok, s.china_jpeg, s.png_alpha])
def test_truncated_images_are_refused(maker, fraction):
    data = maker()
    with pytest.raises(ImageError) as info:
        process_image(data[: int(len(data) * fraction)])
    assert info.value.reason == "truncated"


def test_pixel_limit_is_a_parameter():
    with pytest.raises(ImageError) as info:
        process_image(s.jpeg_ok(), max_pixels=451 * 300 - 1)
    assert info.value.reason == "too_many_pixels"
    assert process_image(s.jpeg_ok(), max_pixels=451 * 300).width == 300


def test_bad_arguments_are_programming_errors():
    with pytest.raises(ValueError, match="quality"):
        process_image(s.jpeg_ok(), quality=100)
    with pytest.raises(ValueError, match="max_side"):
        process_image(s.jpeg_ok(), max_side=0)


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "TIFF"])
def test_other_web_formats_are_accepted(fmt):
    out = process_image(s.encode(s.chelsea(), fmt))
    assert (out.width, out.height) == (300, 200)


def test_sixteen_bit_greyscale_uses_its_value_range():
    ramp = np.tile(np.linspace(1000, 5000, 120), (100, 1)).astype(np.uint16)  # dark in 8 bits
    out = process_image(s.encode(Image.fromarray(ramp), "PNG"))
    px = np.asarray(_decode(out.jpeg).convert("L"), dtype=float)
    assert px[:, :5].mean() < 10 and px[:, -5:].mean() > 245


def test_multi_picture_jpeg_uses_its_first_picture():
    left, right = s.chelsea(), s.chelsea().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mpo = s.encode(left, "MPO", save_all=True, append_images=[right])
    assert Image.open(io.BytesIO(mpo)).format == "MPO"
    got = np.asarray(_decode(process_image(mpo).jpeg), dtype=float)
    expected = np.asarray(_decode(process_image(s.jpeg_ok()).jpeg), dtype=float)
    assert got.shape == (200, 300, 3) and np.abs(got - expected).mean() < 4


def _with_profile(icc: bytes) -> bytes:
    return s.encode(s.chelsea(), "JPEG", quality=92, icc_profile=icc)


@pytest.mark.parametrize("force_conversion", [False, True])
def test_srgb_profile_gives_the_same_picture(monkeypatch, force_conversion):
    if force_conversion:  # run the profile-to-sRGB path (it must be near-identity for sRGB)
        monkeypatch.setattr(imaging, "_is_srgb", lambda profile: False)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    got = np.asarray(_decode(process_image(_with_profile(srgb)).jpeg), dtype=float)
    plain = np.asarray(_decode(process_image(s.jpeg_ok()).jpeg), dtype=float)
    assert got.shape == plain.shape and np.abs(got - plain).mean() < 2


def test_unreadable_profile_is_ignored():
    out = process_image(_with_profile(b"not an icc profile" * 10))
    assert (out.width, out.height) == (300, 200)
