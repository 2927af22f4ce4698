"""Image input: every kind of input gives an RGB uint8 array or a FaceLiftError a person can read."""

import io
import os
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image

from facelift.errors import FaceLiftError, ImageTooLargeError, ImageTooSmallError, InvalidImageError
from facelift.image import MIN_SIDE, load_image

from fuzzing import mutated
from limits import time_limit

# ----------------------------------------------------------------------------- helpers


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def upright(h=48, w=64) -> np.ndarray:
    """A smooth, asymmetric RGB image (survives JPEG; every rotation and flip of it differs)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 60)], -1).astype(np.uint8)
    img[: h // 3, : w // 4] = (250, 250, 250)
    return img


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A 57-byte PNG declaring width x height RGB pixels, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def png_rgb16(arr: np.ndarray) -> bytes:
    h, w, _ = arr.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def tiff_rgb16(arr: np.ndarray, strip_offset_type: int = 4) -> bytes:
    """An uncompressed little-endian 16-bit RGB TIFF (PIL cannot write one)."""
    h, w, _ = arr.shape
    data = arr.astype("<u2").tobytes()
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, 134), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, strip_offset_type, 1, 140), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(data)),
               (284, 3, 1, 1)]
    def entry(tag, typ, n, v):
        value = struct.pack("<HH", v, 0) if typ == 3 and n == 1 else struct.pack("<I", v)
        return struct.pack("<HHI", tag, typ, n) + value

    ifd = struct.pack("<H", len(entries)) + b"".join(entry(*e) for e in entries) + struct.pack("<I", 0)
    assert len(ifd) == 126
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + data


def expect(exc_type, source, **kw) -> str:
    """load_image(source) must raise exactly exc_type with a message meant for a person."""
    with pytest.raises(FaceLiftError) as info:
        load_image(source, **kw)
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value}"
    msg = str(info.value)
    for jargon in ("Errno", "decoder", "Traceback", "broken data stream", "cannot identify", "unpack"):
        assert jargon not in msg, msg
    return msg


def is_rgb(arr, shape=None) -> bool:
    ok = isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    return ok and arr.flags.c_contiguous and (shape is None or arr.shape[:2] == shape)


def tiff_float(arr: np.ndarray, big_endian: bool = False, orientation: int | None = None) -> bytes:
    """An uncompressed floating-point TIFF (SampleFormat 3) of a HxW or HxWx{3,4} float16/32/64
    array, as HDR tools write them (PIL can write only one-channel float32)."""
    arr = np.asarray(arr)
    h, w = arr.shape[:2]
    spp = 1 if arr.ndim == 2 else arr.shape[2]
    e = ">" if big_endian else "<"
    pixels = arr.astype(arr.dtype.newbyteorder(e)).tobytes()
    tags = {256: (4, [w]), 257: (4, [h]), 258: (3, [arr.dtype.itemsize * 8] * spp), 259: (3, [1]),
            262: (3, [2 if spp >= 3 else 1]), 273: (4, [0]), 277: (3, [spp]), 278: (4, [h]),
            279: (4, [len(pixels)]), 284: (3, [1]), 339: (3, [3] * spp)}
    if orientation is not None:
        tags[274] = (3, [orientation])
    if spp == 4:
        tags[338] = (3, [2])  # unassociated alpha
    fmt = {3: "H", 4: "I"}
    n = len(tags)
    extra_at = 8 + 2 + 12 * n + 4
    sizes = {t: len(v) * (2 if typ == 3 else 4) for t, (typ, v) in tags.items()}
    extra_len = sum(sz for sz in sizes.values() if sz > 4)
    tags[273] = (4, [extra_at + extra_len])
    entries, extra = b"", b""
    for tag in sorted(tags):
        typ, values = tags[tag]
        payload = struct.pack(e + fmt[typ] * len(values), *values)
        if len(payload) > 4:
            entries += struct.pack(e + "HHII", tag, typ, len(values), extra_at + len(extra))
            extra += payload
        else:
            entries += struct.pack(e + "HHI", tag, typ, len(values)) + payload.ljust(4, b"\x00")
    magic = b"MM\x00*" if big_endian else b"II*\x00"
    return magic + struct.pack(e + "I", 8) + struct.pack(e + "H", n) + entries + struct.pack(e + "I", 0) + extra + pixels


RGB = Image.fromarray(upright())
ZIP = io.BytesIO()
with zipfile.ZipFile(ZIP, "w") as zf:
    zf.writestr("face.jpg", encode(RGB, "JPEG"))

NOT_IMAGES = {
    "text": b"Hello, this is my face!\n",
    "html": b"<!DOCTYPE html><html><body><img src='face.jpg'></body></html>",
    "pdf": b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
           b"2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n",
    "zip": ZIP.getvalue(),
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n",  # must not reach Ghostscript
    "random": np.random.default_rng(0).bytes(4096),
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>',
}


# ----------------------------------------------------------------------------- not an image


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
def test_not_an_image_bytes_and_file(kind, tmp_path):
    msg = expect(InvalidImageError, NOT_IMAGES[kind])
    assert "not an image" in msg and "JPEG" in msg
    path = tmp_path / f"upload.{kind}"
    path.write_bytes(NOT_IMAGES[kind])
    assert "upload." in expect(InvalidImageError, path)
    assert "upload." in expect(InvalidImageError, str(path))


def test_empty_input(tmp_path):
    assert "empty" in expect(InvalidImageError, b"")
    assert "empty" in expect(InvalidImageError, bytearray())
    (tmp_path / "e.jpg").write_bytes(b"")
    assert "empty" in expect(InvalidImageError, tmp_path / "e.jpg")


def test_bad_paths(tmp_path):
    assert "not found" in expect(InvalidImageError, tmp_path / "missing.jpg")
    assert "folder" in expect(InvalidImageError, tmp_path)
    expect(InvalidImageError, "face\0.jpg")
    expect(InvalidImageError, "x" * 5000 + ".jpg")  # name too long: OSError from the OS, not a crash


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with time_limit(3):
        assert "regular file" in expect(InvalidImageError, fifo)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_path_swapped_for_a_fifo_after_the_check_does_not_block(tmp_path, monkeypatch):
    """The file is checked again once open (non-blocking): a path that was a regular file when
    stat()ed and is a FIFO when opened is refused instead of blocking the thread."""
    import facelift.image as image_module

    regular = tmp_path / "photo.png"
    regular.write_bytes(encode(RGB, "PNG"))
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(image_module.os, "stat", lambda p, *a, **k: real_stat(regular if os.fspath(p) == str(fifo) else p, *a, **k))
    with time_limit(3):
        assert "regular file" in expect(InvalidImageError, fifo)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path):
    path = tmp_path / "locked.png"
    path.write_bytes(encode(RGB, "PNG"))
    path.chmod(0)
    assert "Permission denied" in expect(InvalidImageError, path)


@pytest.mark.parametrize("source", [3, 2.5, [1, 2, 3], None, {"image": b""}, object()])
def test_unsupported_python_types(source):
    assert type(source).__name__ in expect(InvalidImageError, source)


def test_bytes_like_inputs():
    data = encode(RGB, "PNG")
    for source in (data, bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(load_image(source), upright())


# ----------------------------------------------------------------------------- truncated / corrupted

SAMPLES = {
    "jpeg": encode(RGB, "JPEG", quality=90),
    "jpeg-progressive": encode(RGB, "JPEG", quality=90, progressive=True),
    "png": encode(RGB, "PNG"),
    "gif": encode(RGB.convert("P"), "GIF"),
    "webp": encode(RGB, "WEBP", lossless=True),
    "tiff": encode(RGB, "TIFF", compression="tiff_lzw"),
    "bmp": encode(RGB, "BMP"),
}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_cut_in_half(fmt):
    assert "damaged" in expect(InvalidImageError, SAMPLES[fmt][: len(SAMPLES[fmt]) // 2])


@pytest.mark.parametrize("fmt", ["jpeg", "jpeg-progressive", "png", "gif"])
def test_no_truncation_gives_a_partial_image(fmt):
    """PIL must not fill in a missing part (ImageFile.LOAD_TRUNCATED_IMAGES stays False).

    A JPEG cut anywhere, even just its final EOI marker, raises. A PNG or GIF missing only
    trailing checksums / end chunks still holds every pixel and decodes to the full image.
    """
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = SAMPLES[fmt]
    full = load_image(data)
    decoded = []
    for cut in range(len(data)):
        try:
            out = load_image(data[:cut])
        except InvalidImageError:
            continue
        decoded.append(cut)
        np.testing.assert_array_equal(out, full, err_msg=f"partial image from the first {cut} bytes")
    if fmt.startswith("jpeg"):
        assert decoded == []
    else:  # PNG: only the zlib Adler-32, the IDAT CRC and IEND (20 bytes) may go missing
        assert not decoded or decoded[0] >= len(data) - 20


def test_png_with_garbled_pixel_data():
    data = bytearray(SAMPLES["png"])
    start = data.find(b"IDAT") + 8
    data[start: start + 64] = bytes(64)
    assert "damaged" in expect(InvalidImageError, bytes(data))


def test_jpeg_with_garbled_pixel_data():
    """Documents libjpeg: corruption inside the entropy-coded data is usually *not* an error.

    libjpeg resynchronises and PIL returns an image of the right size with wrong pixels; only
    damage to the markers or the end of the stream raises. Nothing short of re-encoding can tell.
    """
    data = bytearray(SAMPLES["jpeg"])
    start = data.find(b"\xff\xda") + 20
    for at in (0.3, 0.5, 0.7):
        data[int(start + (len(data) - start) * at)] ^= 0x10
    out = load_image(bytes(data))
    assert is_rgb(out, (48, 64))
    assert np.abs(out.astype(int) - upright()).max() > 40  # visibly wrong, yet no error

    data[start:] = b"\xff\x00" * ((len(data) - start) // 2)  # header intact, pixels all garbage
    try:
        assert is_rgb(load_image(bytes(data)), (48, 64))
    except InvalidImageError:
        pass


def test_tiff_with_mistyped_strip_offset():
    """Fuzzing found PIL raising TypeError here (a RATIONAL strip offset)."""
    good = tiff_rgb16(np.zeros((40, 40, 3), np.uint16))
    assert is_rgb(load_image(good), (40, 40))
    expect(InvalidImageError, tiff_rgb16(np.zeros((40, 40, 3), np.uint16), strip_offset_type=5))


def test_gif_with_broken_second_frame_keeps_first():
    """Fuzzing found struct.error/IndexError from PIL probing a broken second frame."""
    frames = [Image.new("RGB", (40, 40), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    second = data.rfind(b"\x2c")  # the second image descriptor
    out = load_image(data[: second + 4])
    assert (out == (255, 0, 0)).all()


# ----------------------------------------------------------------------------- size limits


def test_decompression_bomb_header_only_png():
    """57 bytes declaring 30000x30000: refused from the header (there is no pixel data to decode)."""
    data = png_header_only(30000, 30000)
    with time_limit(2):
        msg = expect(ImageTooLargeError, data)
    assert "50,000,000" in msg
    # between our limit and PIL's own: refused by us, without PIL's DecompressionBombWarning leaking
    for side in (8000, 10000):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert f"{side}x{side}" in expect(ImageTooLargeError, png_header_only(side, side))


def test_decompression_bomb_gif_and_lazy_pil_image():
    gif = bytearray(encode(Image.new("P", (40, 40)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen size
    expect(ImageTooLargeError, bytes(gif))
    lazy = Image.open(io.BytesIO(png_header_only(9000, 9000)))
    expect(ImageTooLargeError, lazy)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc to read peak memory")
def test_decompression_bomb_memory_stays_small():
    code = (
        "import sys\n"
        "from facelift.image import load_image\n"
        "from facelift.errors import ImageTooLargeError\n"
        f"data = {png_header_only(30000, 30000)!r}\n"
        "try:\n    load_image(data)\nexcept ImageTooLargeError:\n    pass\n"
        # VmHWM belongs to this address space; ru_maxrss would carry over the forking parent's peak
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    peak_mib = int(out.stdout.strip()) / 1024  # kB
    assert peak_mib < 300, f"peak RSS {peak_mib:.0f} MiB (decoding would need ~2600 MiB)"


def test_array_and_pil_limits_are_checked_before_conversion():
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (30000, 30000, 3))  # no memory behind it
    with time_limit(2):
        expect(ImageTooLargeError, huge)
        expect(ImageTooLargeError, np.broadcast_to(np.ones((1, 1), bool), (30000, 30000)))
    expect(ImageTooLargeError, Image.new("RGB", (200, 100)), max_pixels=19_999)
    assert is_rgb(load_image(Image.new("RGB", (200, 100)), max_pixels=20_000))


@pytest.mark.slow
def test_big_photo_loads():
    data = encode(Image.new("RGB", (6000, 4000), (10, 200, 30)), "JPEG", quality=80)
    t0 = time.perf_counter()
    out = load_image(data)
    assert time.perf_counter() - t0 < 5
    assert is_rgb(out, (4000, 6000))
    assert np.abs(out[2000, 3000].astype(int) - (10, 200, 30)).max() <= 3
    expect(ImageTooLargeError, data, max_pixels=6000 * 4000 - 1)


@pytest.mark.parametrize("size", [(10, 10), (31, 500), (500, 31)])
def test_tiny_image(size):
    data = encode(Image.new("RGB", size), "PNG")
    msg = expect(ImageTooSmallError, data)
    assert f"at least {MIN_SIDE}" in msg and f"{size[0]}x{size[1]}" in msg
    expect(ImageTooSmallError, np.zeros((size[1], size[0], 3), np.uint8))
    assert is_rgb(load_image(data, min_side=10), size[::-1])


def test_smallest_allowed_image():
    assert is_rgb(load_image(encode(Image.new("L", (MIN_SIDE, MIN_SIDE)), "PNG")), (MIN_SIDE, MIN_SIDE))


# ----------------------------------------------------------------------------- modes


def roundtrip(img: Image.Image, fmt: str = "PNG", **kw) -> np.ndarray:
    return load_image(encode(img, fmt, **kw))


def test_gray_and_bilevel():
    np.testing.assert_array_equal(roundtrip(Image.new("L", (40, 40), 77)), np.full((40, 40, 3), 77))
    bits = np.indices((40, 40)).sum(0) % 2 == 0
    out = roundtrip(Image.fromarray(bits))  # mode "1"
    np.testing.assert_array_equal(out[..., 0], np.where(bits, 255, 0))


@pytest.mark.parametrize("alpha,expected", [(255, 200), (0, 255), (128, 227)])
def test_la_composited_on_white(alpha, expected):
    out = roundtrip(Image.new("LA", (40, 40), (200, alpha)))
    assert np.abs(out.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_rgba_composited_on_white(fmt):
    px = np.zeros((40, 40, 4), np.uint8)
    px[:20] = (255, 0, 0, 128)  # half-transparent red -> pink
    px[20:] = (0, 0, 255, 0)  # fully transparent blue -> white
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out = roundtrip(Image.fromarray(px), fmt, **kw)
    assert np.abs(out[:20].astype(int) - (255, 127, 127)).max() <= 1
    assert (out[20:] == 255).all()


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (40, 40), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 0] + [0] * 759)
    pal.paste(2, (0, 0, 40, 20))
    out = roundtrip(pal)
    assert (out[:20] == (200, 100, 0)).all() and (out[20:] == (10, 20, 30)).all()
    out = roundtrip(pal, transparency=2)  # index 2 transparent -> white
    assert (out[:20] == 255).all() and (out[20:] == (10, 20, 30)).all()
    out = load_image(encode(pal, "GIF", transparency=1))
    assert (out[:20] == (200, 100, 0)).all() and (out[20:] == 255).all()


def test_cmyk_jpeg_and_tiff():
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # red
    np.testing.assert_array_equal(roundtrip(cmyk, "TIFF"), np.full((40, 40, 3), (255, 0, 0)))
    out = roundtrip(cmyk, "JPEG", quality=95)
    assert np.abs(out.astype(int) - (255, 0, 0)).max() <= 4


def test_16bit_gray_png():
    values = np.array([[0, 1000, 32768, 65535]], np.uint16).repeat(40, 0).repeat(10, 1)
    img = Image.fromarray(values)
    assert Image.open(io.BytesIO(encode(img, "PNG"))).mode == "I;16"
    out = roundtrip(img)
    np.testing.assert_array_equal(out[0, ::10, 0], [0, 4, 128, 255])  # scaled, not clipped at 255


@pytest.mark.parametrize("writer", [png_rgb16, tiff_rgb16])
def test_16bit_rgb_png_and_tiff(writer):
    """PIL opens 16-bit RGB as 8-bit "RGB" (keeping the high byte): check that is what we return."""
    arr = np.zeros((40, 40, 3), np.uint16)
    arr[..., 0], arr[..., 1], arr[..., 2] = 65535, 32768, 2570
    arr[20:] = (0, 65535, 0)
    out = load_image(writer(arr))
    assert (out[:20] == (255, 128, 10)).all() and (out[20:] == (0, 255, 0)).all()


def test_32bit_integer_tiff():
    ramp = np.tile(np.arange(40, dtype=np.int32), (40, 1))
    # values up to 255 are 8-bit, up to 65535 16-bit, beyond that scaled by the peak
    cases = [(6, lambda v: v * 6), (1600, lambda v: v * 1600 / 65535 * 255), (10**6, lambda v: v * 255 / 39)]
    for scale, to8 in cases:
        img = Image.fromarray(ramp * scale)
        assert img.mode == "I"
        out = roundtrip(img, "TIFF")[0, :, 0].astype(int)
        assert np.abs(out - to8(np.arange(40))).max() <= 1, scale


def test_float_tiff_plain_and_hdr():
    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (40, 1))
    np.testing.assert_array_equal(roundtrip(Image.fromarray(ramp), "TIFF")[0, :, 0], np.round(ramp[0] * 255))
    hdr = ramp * 10  # linear radiance up to 10
    out = roundtrip(Image.fromarray(hdr), "TIFF")[0, :, 0].astype(int)
    assert out[-1] == 255 and out[0] == 0 and (np.diff(out) >= 0).all()
    assert 100 < out[20] < 160  # the middle of the range stays in the middle, not blown out


def hdr_scene(h=48, w=64) -> np.ndarray:
    """Linear HDR radiance: the asymmetric test image in [0, 1], a highlight up to 8."""
    img = upright(h, w).astype(np.float32) / 255
    img[h // 2:, w // 2:] *= 8
    return img


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("channels", [3, 4, 1])
@pytest.mark.parametrize("big_endian", [False, True])
def test_float_tiff_rgb_rgba_and_other_depths(dtype, channels, big_endian):
    """HDR float TIFFs from photo tools (RGB/RGBA/gray float32 and float64) load like the same
    array would: scaled so the 99.5th percentile is white, brighter highlights clipped.
    Half floats (float16) are refused with a message saying what to save instead."""
    scene = hdr_scene()
    arr = scene if channels == 3 else scene[..., 0] if channels == 1 else \
        np.dstack([scene, np.ones(scene.shape[:2], np.float32)])
    arr = arr.astype(dtype)
    if dtype == np.float16:
        msg = expect(InvalidImageError, tiff_float(arr, big_endian=big_endian))
        assert "16-bit (half-precision) floating-point TIFF" in msg and "32-bit float" in msg
        return
    out = load_image(tiff_float(arr, big_endian=big_endian))
    assert is_rgb(out, (48, 64))
    np.testing.assert_array_equal(out, load_image(arr))  # one tone mapping for files and arrays
    assert out.max() == 255 and out[:24, :32].max() < 200  # the highlight sets white, the rest stays mid


def test_float_rgb_tiff_tone_mapping_and_orientation():
    scene = hdr_scene()
    out = load_image(tiff_float(scene)).astype(int)
    white = np.percentile(scene, 99.5)
    expected = np.round(np.clip(scene / white, 0, 1) * 255)
    assert np.abs(out - expected).max() <= 1
    assert out[0, -1, 0] > out[0, -1, 1] and out[-1, 0, 1] > out[-1, 0, 0]  # RGB, not BGR: R right, G down
    stored = np.rot90(scene, 1)  # what a camera stores for orientation 6
    np.testing.assert_array_equal(load_image(tiff_float(stored, orientation=6)), out)
    rgba = np.dstack([scene, np.zeros(scene.shape[:2], np.float32)])  # fully transparent -> white
    assert (load_image(tiff_float(rgba)) == 255).all()


def test_float_rgb_tiff_limits_and_damage():
    header = tiff_float(np.zeros((40, 40, 3), np.float32))
    # the same header declaring 30000x30000 pixels, with 40x40 pixels of data: refused from the tags
    big = header.replace(struct.pack("<HHII", 256, 4, 1, 40), struct.pack("<HHII", 256, 4, 1, 30000)) \
                .replace(struct.pack("<HHII", 257, 4, 1, 40), struct.pack("<HHII", 257, 4, 1, 30000))
    assert big != header
    with time_limit(2, "load_image"):
        assert "30000x30000" in expect(ImageTooLargeError, big)
    assert "at least" in expect(ImageTooSmallError, tiff_float(np.zeros((10, 40, 3), np.float32)))
    data = tiff_float(hdr_scene())
    assert "damaged" in expect(InvalidImageError, data[: len(data) // 2])
    assert "damaged" in expect(InvalidImageError, data[:200])


def test_logluv_tiff_from_opencv():
    """OpenCV writes float RGB TIFFs as LogLuv (compressed HDR, ~1% precision): read too."""
    import cv2

    scene = hdr_scene()
    ok, buf = cv2.imencode(".tiff", np.ascontiguousarray(scene[..., ::-1]))  # OpenCV is BGR
    assert ok
    out = load_image(buf.tobytes())
    assert is_rgb(out, (48, 64))
    assert np.abs(out.astype(int) - load_image(scene)).max() <= 6
    with pytest.raises(InvalidImageError, match="damaged"):
        load_image(buf.tobytes()[: len(buf) // 2])


def test_radiance_hdr_is_refused_with_the_formats_that_work():
    import cv2

    ok, buf = cv2.imencode(".hdr", hdr_scene())
    assert ok and buf.tobytes().startswith(b"#?RADIANCE")
    msg = expect(InvalidImageError, buf.tobytes())
    assert "not an image FaceLift can read" in msg and "TIFF" in msg


def test_float_nan_and_inf():
    px = np.full((40, 40), 0.5, np.float32)
    px[0, :3] = (np.nan, np.inf, -np.inf)
    for source in (px, Image.fromarray(px), encode(Image.fromarray(px), "TIFF")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = load_image(source)
        assert out[0, :3, 0].tolist() == [0, 255, 0] and out[5, 5, 0] == 128
    assert (load_image(np.full((40, 40), np.nan)) == 0).all()
    spike = np.full((40, 40), 1e-42, np.float32)  # a denormal "white" and one huge value
    spike[0, 0] = 3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in the HDR scaling
        assert (load_image(spike) == 255).all()


def test_exotic_pil_modes():
    for mode in ("RGBX", "RGBa", "La", "PA", "I;16B", "YCbCr", "HSV"):
        assert is_rgb(load_image(Image.new(mode, (40, 40))), (40, 40)), mode
    assert (load_image(Image.new("La", (40, 40), (100, 0))) == 255).all()


# ----------------------------------------------------------------------------- numpy arrays


def test_uint8_arrays():
    rgb = upright()
    out = load_image(rgb)
    np.testing.assert_array_equal(out, rgb)
    assert not np.shares_memory(out, rgb)
    np.testing.assert_array_equal(load_image(np.asfortranarray(rgb)), rgb)
    gray = rgb[..., 0]
    for arr in (gray, gray[..., None]):
        np.testing.assert_array_equal(load_image(arr), np.repeat(gray[..., None], 3, 2))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 0, np.uint8)])
    assert (load_image(rgba) == 255).all()
    rgba[..., 3] = 255
    np.testing.assert_array_equal(load_image(rgba), rgb)


def test_other_array_dtypes():
    expected = np.full((40, 40, 3), 128, np.uint8)
    for arr in (
        np.full((40, 40, 3), 32896, np.uint16),
        np.full((40, 40, 3), 0.5, np.float32),
        np.full((40, 40), 0.5, np.float64),
        np.full((40, 40, 1), 0.5, np.float16),
        np.full((40, 40, 3), 128, np.int64),
    ):
        np.testing.assert_array_equal(load_image(arr), expected, err_msg=str(arr.dtype))
    # a dark 16-bit image stays dark (the dtype decides the range, not the values)
    assert (load_image(np.full((40, 40), 200, np.uint16)) == 1).all()
    mask = np.zeros((40, 40), bool)
    mask[:, 20:] = True
    out = load_image(mask)
    assert (out[:, :20] == 0).all() and (out[:, 20:] == 255).all()
    assert (load_image(np.full((40, 40, 3), -0.5)) == 0).all()


@pytest.mark.parametrize("shape", [(40, 40, 2), (40, 40, 5), (40,), (2, 40, 40, 3), (0, 40, 3), (40, 0), ()])
def test_wrong_array_shapes(shape):
    expect(InvalidImageError, np.zeros(shape, np.uint8))


@pytest.mark.parametrize("dtype", [np.complex64, object, "U3", "datetime64[s]"])
def test_unsupported_array_dtypes(dtype):
    assert "dtype" in expect(InvalidImageError, np.zeros((40, 40, 3), dtype))


# ----------------------------------------------------------------------------- EXIF orientation

# what the camera stored, for an upright scene, under each orientation tag
STORED = {
    1: lambda im: im,
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),  # tag 6: rotate 90 deg clockwise to view
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),  # tag 8: rotate 90 deg anticlockwise to view
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


@pytest.mark.parametrize("tag", sorted(STORED))
def test_exif_orientation(tag, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = tag
    stored = STORED[tag](RGB)
    data = encode(stored, "JPEG", quality=95, exif=exif)
    (tmp_path / "photo.jpg").write_bytes(data)
    truth = upright().astype(int)
    for source in (data, tmp_path / "photo.jpg", Image.open(io.BytesIO(data))):
        out = load_image(source)
        assert out.shape == truth.shape
        assert np.abs(out - truth).mean() < 3
        for wrong in set(STORED) - {tag}:  # and it is not one of the other orientations
            other = np.asarray(STORED[wrong](STORED[tag](RGB)).transpose(Image.Transpose.ROTATE_180))
            if other.shape == truth.shape and not np.array_equal(other, upright()):
                assert np.abs(out - other).mean() > 20


def test_exif_orientation_in_png_and_bad_values():
    exif = Image.Exif()
    exif[0x0112] = 8
    out = load_image(encode(RGB.transpose(Image.Transpose.ROTATE_270), "PNG", exif=exif))
    np.testing.assert_array_equal(out, upright())
    for bad in (0, 9, 65535):
        exif[0x0112] = bad
        np.testing.assert_array_equal(load_image(encode(RGB, "PNG", exif=exif)), upright())


# ----------------------------------------------------------------------------- animation

FRAMES = [Image.new("RGB", (40, 40), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]


@pytest.mark.parametrize("fmt,kw", [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})])
def test_animated_first_frame(fmt, kw):
    data = encode(FRAMES[0], fmt, save_all=True, append_images=FRAMES[1:], duration=40, **kw)
    anim = Image.open(io.BytesIO(data))
    assert anim.is_animated and anim.n_frames == 3
    assert (load_image(data) == (255, 0, 0)).all()
    anim.seek(2)
    assert (load_image(anim) == (255, 0, 0)).all()


# ----------------------------------------------------------------------------- fuzzing


def _seed_files() -> dict:
    img = Image.fromarray(upright(40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "png": encode(img, "PNG"),
        "png-p": encode(img.convert("P"), "PNG", transparency=3),
        "png-16": encode(Image.fromarray(upright(40, 40)[..., 0].astype(np.uint16) * 257), "PNG"),
        "apng": encode(FRAMES[0], "PNG", save_all=True, append_images=FRAMES[1:]),
        "jpeg": encode(img, "JPEG", exif=exif),
        "jpeg-progressive": encode(img, "JPEG", progressive=True),
        "jpeg-cmyk": encode(img.convert("CMYK"), "JPEG"),
        "gif": encode(FRAMES[0], "GIF", save_all=True, append_images=FRAMES[1:]),
        "webp": encode(img, "WEBP"),
        "webp-anim": encode(FRAMES[0], "WEBP", save_all=True, append_images=FRAMES[1:], lossless=True),
        "tiff": encode(img, "TIFF", compression="tiff_lzw", exif=exif),
        "tiff-float": encode(Image.fromarray(upright(40, 40)[..., 0].astype(np.float32)), "TIFF"),
        "tiff-float-rgb": tiff_float(upright(40, 40).astype(np.float32) / 64, orientation=6),
        "bmp": encode(img.convert("P"), "BMP"),
    }


SEEDS = _seed_files()


def check_outcome(data: bytes) -> None:
    """Success means an RGB uint8 array; failure means a FaceLiftError; nothing else, no warnings."""
    with warnings.catch_warnings(), time_limit(2, "load_image"):
        warnings.simplefilter("error")
        try:
            out = load_image(data)
        except FaceLiftError as exc:
            assert str(exc)
            return
    assert is_rgb(out) and min(out.shape[:2]) >= MIN_SIDE


def mutated_files():
    return mutated(SEEDS)


def test_seed_files_decode():
    for name, data in SEEDS.items():
        assert is_rgb(load_image(data), (40, 40)), name


@settings(max_examples=150, deadline=2000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_files())
@pytest.mark.slow
def test_fuzz_only_facelift_errors(data):
    check_outcome(data)


@pytest.mark.slow
def test_fuzz_seeded_sweep():
    """A fixed, larger sweep of random mutations; cheaper per case than hypothesis."""
    rng = np.random.default_rng(2024)
    names = sorted(SEEDS)
    for n in range(3000):
        data = bytearray(SEEDS[names[n % len(names)]])
        for _ in range(int(rng.integers(1, 20))):
            i = int(rng.integers(0, len(data)))
            data[i: i + int(rng.integers(1, 4))] = rng.bytes(int(rng.integers(0, 4)))
        if rng.random() < 0.2:
            data = data[: int(rng.integers(0, len(data)))]
        check_outcome(bytes(data))


# ----------------------------------------------------------------------------- downscaling while loading (max_side)

BIG = Image.fromarray(upright(480, 640)).resize((1280, 960), Image.Resampling.BILINEAR)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_max_side_downscales_keeping_the_aspect_and_the_picture(fmt):
    data = encode(BIG, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    full = load_image(data)
    small = load_image(data, max_side=320)
    assert small.shape == (240, 320, 3) and small.dtype == np.uint8 and small.flags.c_contiguous
    reference = np.asarray(Image.fromarray(full).resize((320, 240), Image.Resampling.BOX)).astype(int)
    assert np.abs(small.astype(int) - reference).mean() < 4
    np.testing.assert_array_equal(load_image(data, max_side=1280), full)  # not larger than the cap: untouched


@pytest.mark.parametrize("tag", [3, 6, 8])
def test_max_side_with_exif_orientation(tag, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = tag
    path = tmp_path / "rotated.jpg"
    path.write_bytes(encode(STORED[tag](BIG), "JPEG", quality=95, exif=exif))
    out = load_image(path, max_side=320)
    truth = np.asarray(BIG.resize((320, 240), Image.Resampling.BOX)).astype(int)
    assert out.shape == truth.shape and np.abs(out.astype(int) - truth).mean() < 5


def test_max_side_for_transparency_float_tiffs_and_arrays():
    rgba = BIG.convert("RGBA")
    assert load_image(encode(rgba, "PNG"), max_side=200).shape == (150, 200, 3)
    floats = np.asarray(BIG, np.float32) / 255.0
    assert load_image(floats, max_side=100).shape == (75, 100, 3)
    assert load_image(BIG, max_side=64).shape == (48, 64, 3)
    for bad in (0, 16, 2.5, True, "512"):
        with pytest.raises(ValueError, match="max_side"):
            load_image(BIG, max_side=bad)


@pytest.mark.slow
def test_max_side_decodes_a_large_jpeg_at_reduced_scale(tmp_path):
    """A 24-megapixel JPEG loaded with max_side=1024 never holds its full-resolution pixels
    (72 MB as RGB): the process's peak memory grows by a fraction of that."""
    path = tmp_path / "big.jpg"
    Image.fromarray(upright(480, 640)).resize((6000, 4000)).save(path, quality=85)
    script = (
        "import sys; from facelift.image import load_image\n"
        "def peak():\n"
        "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024\n"
        "load_image(sys.argv[1], max_side=64)\n"  # imports and PIL's decoder set up
        "before = peak()\n"
        "side = None if sys.argv[2] == 'full' else int(sys.argv[2])\n"
        "print(load_image(sys.argv[1], max_side=side).shape[1], peak() - before)\n")
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc")
    results = {}
    for side in ("full", "1024"):
        out = subprocess.run([sys.executable, "-c", script, str(path), side], capture_output=True, text=True,
                             timeout=120, check=True).stdout.split()
        results[side] = (int(out[0]), float(out[1]))
    assert results["full"][0] == 6000 and results["1024"][0] == 1024
    assert results["full"][1] > 60, results  # the full-resolution RGB pixels
    assert results["1024"][1] < results["full"][1] / 3, results
