"""Image input: any path, bytes, PIL image or array -> an upright RGB uint8 array, or a clear error."""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin, UnidentifiedImageError

from ._validate import is_int
from .errors import ImageTooLargeError, ImageTooSmallError, InvalidImageError

#: The file extensions taken for photos where a folder is searched (the CLI, the evaluation).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"})

MAX_PIXELS = 50_000_000
MIN_SIDE = 32
# Only these decoders are tried: no Ghostscript (EPS) and no rarely used parsers on uploads.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
_NOT_AN_IMAGE = "is not an image FaceLift can read, or it is damaged; use JPEG, PNG, WebP, BMP, TIFF, GIF or PPM."
# What PIL raises on malformed files, as seen by fuzzing (struct.error, IndexError: GIF frame
# headers; TypeError: a TIFF strip offset of the wrong type). UnidentifiedImageError is an OSError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError)


def load_image(source, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
               max_side: int | None = None) -> np.ndarray:
    """Return an HxWx3 uint8 RGB array with EXIF orientation applied.

    With `max_side`, an image whose longer side is larger comes back downscaled (aspect kept)
    so that its longer side is `max_side`; a JPEG is then decoded at a reduced scale directly
    (PIL's draft mode), so the full-resolution pixels are never all in memory.

    Accepts a file path, the bytes of a file, a PIL image (its first frame) or an
    HxW / HxWx{1,3,4} array: uint8, uint16, bool, other integers, or float in [0, 1].
    Float data (arrays, and HDR TIFFs: IEEE float with 1, 3 or 4 channels at 32 or 64 bits, or LogLuv) is
    taken as display values in [0, 1]: data above 1 is HDR and is scaled linearly so its
    99.5th percentile becomes white (brighter highlights clip; no gamma curve is applied,
    since a file does not say whether its floats are linear); negatives clip to black and
    NaN to black, +inf to the brightest finite value.
    Transparency is composited on white. Raises `InvalidImageError` (or its subclasses
    `ImageTooLargeError`, `ImageTooSmallError`) for anything that is not a usable image;
    the size limits are checked before any pixel data is decoded.
    """
    if max_side is not None and (not is_int(max_side, numpy=False) or max_side < min_side):
        raise ValueError(f"max_side must be an integer of at least min_side ({min_side}), got {max_side!r}")
    if isinstance(source, np.ndarray):
        return _fit(array_to_rgb(source, max_pixels, min_side), max_side)
    if isinstance(source, Image.Image):
        return _fit(pil_to_rgb(source, max_pixels, min_side, max_side=max_side), max_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidImageError("The uploaded file is empty.")
        return _fit(_decode(io.BytesIO(source), "The uploaded file", max_pixels, min_side, max_side), max_side)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        with _open_file(path) as fh:
            return _fit(_decode(fh, path.name, max_pixels, min_side, max_side), max_side)
    raise InvalidImageError(
        f"Cannot read an image from {type(source).__name__!r}; "
        "give a file path, file bytes, a PIL image or an HxWx3 uint8 array."
    )


def _open_file(path: Path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidImageError(f"File not found: {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or exc
        raise InvalidImageError(f"Cannot open {str(path)[:200]!r}: {reason}.") from exc
    if stat.S_ISDIR(st.st_mode):
        raise InvalidImageError(f"{path} is a folder, not an image file.")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        raise InvalidImageError(f"{path} is not a regular file.")
    if st.st_size == 0:
        raise InvalidImageError(f"{path.name} is an empty file.")
    # Opened non-blocking and checked again on the open file: a path swapped for a FIFO since
    # the stat above must not block this thread (O_NONBLOCK changes nothing for a regular file).
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InvalidImageError(f"Cannot open {path}: {exc.strerror}.") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidImageError(f"{path} is not a regular file.")
    return os.fdopen(fd, "rb")


def _fit(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """`rgb` downscaled (area averaging) so that its longer side is at most `max_side`."""
    h, w = rgb.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return rgb
    import cv2

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def _decode(fh, name: str, max_pixels: int, min_side: int, max_side: int | None = None) -> np.ndarray:
    with _pil_errors(name, max_pixels):
        try:
            img = Image.open(fh, formats=FORMATS)
        except UnidentifiedImageError:
            rgb = _float_tiff(fh, name, max_pixels, min_side)
            if rgb is None:
                raise
            return rgb
        return pil_to_rgb(img, max_pixels, min_side, name, max_side=max_side)


def _float_tiff(fh, name: str, max_pixels: int, min_side: int) -> np.ndarray | None:
    """A floating-point TIFF that PIL cannot open (PIL reads one-channel float32 only: RGB or
    RGBA float32, float64 and LogLuv are HDR exports of photo tools; OpenCV writes LogLuv),
    or None if `fh` is not one.

    The first directory's tags are read with PIL's TIFF parser and the size is checked
    before OpenCV (libtiff) decodes the pixels (OpenCV applies the orientation tag).
    """
    fh.seek(0)
    header = fh.read(8)
    if len(header) < 8 or header[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    ifd = TiffImagePlugin.ImageFileDirectory_v2(header)
    fh.seek(ifd.next)
    ifd.load(fh)
    formats = ifd.get(339, ())  # SampleFormat: 3 = IEEE floating point
    is_float = 3 in (formats if isinstance(formats, tuple) else (formats,))
    if not is_float and ifd.get(262) not in (32844, 32845):  # Photometric LogL / LogLuv: HDR, what OpenCV writes
        return None
    width, height = ifd.get(256), ifd.get(257)
    if not isinstance(width, int) or not isinstance(height, int):
        raise ValueError("a float TIFF without a valid size")
    _check_size(width, height, max_pixels, min_side, name)
    bits = ifd.get(258, ())
    if is_float and 16 in (bits if isinstance(bits, tuple) else (bits,)):  # OpenCV reads 32/64-bit floats only
        raise InvalidImageError(
            f"{name} is a 16-bit (half-precision) floating-point TIFF, which FaceLift cannot read; "
            "save it as 32-bit float, or as 8- or 16-bit integer TIFF or PNG.")
    fh.seek(0)
    data = np.frombuffer(fh.read(), np.uint8)
    import cv2

    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # silent: a damaged file is reported by the error below, not on stderr
    try:
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ValueError("OpenCV could not decode the float TIFF") from exc
    finally:
        cv2.setLogLevel(level)
    if arr is None or sorted(arr.shape[:2]) != sorted((height, width)) or arr.dtype.kind != "f":
        raise ValueError("OpenCV could not decode the float TIFF")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):  # OpenCV's BGR(A) -> RGB(A)
        arr = np.ascontiguousarray(arr[..., [2, 1, 0, 3][: arr.shape[2]]])
    return array_to_rgb(arr, max_pixels, min_side, name)


@contextmanager
def _pil_errors(name: str, max_pixels: int):
    """The boundary where PIL's exceptions become FaceLift errors (the original is chained)."""
    try:
        with warnings.catch_warnings():
            # pil_to_rgb enforces max_pixels before decoding; PIL warns about corrupt EXIF
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            yield
    except Image.DecompressionBombError as exc:  # raised by Image.open beyond 2x PIL's own limit
        raise ImageTooLargeError(
            f"{name} is too large: FaceLift accepts at most {max_pixels:,} pixels; downscale it first."
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{name} {_NOT_AN_IMAGE}") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImageError(f"{name} is damaged or incomplete (truncated) and cannot be read.") from exc


def _check_size(width: int, height: int, max_pixels: int, min_side: int, name: str) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {width}x{height} pixels, more than the limit of {max_pixels:,}; downscale it first."
        )
    if min(width, height) < min_side:
        raise ImageTooSmallError(
            f"{name} is {width}x{height} pixels; FaceLift needs at least {min_side} pixels on each side."
        )


def pil_to_rgb(
    img: Image.Image, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE, name: str = "The image",
    max_side: int | None = None,
) -> np.ndarray:
    """Decode a PIL image (first frame if animated) to upright RGB uint8; with `max_side`,
    an 8-bit image is downscaled while decoding (see `load_image`; the caller finishes the
    job for the others)."""
    with _pil_errors(name, max_pixels):
        _check_size(img.width, img.height, max_pixels, min_side, name)
        if img.tell() != 0:  # not is_animated: that parses later frames, which may be broken
            img.seek(0)
        if (max_side is not None and max(img.size) > max_side and img.mode in ("RGB", "L", "CMYK", "YCbCr")
                and not img.has_transparency_data):
            # in place, before the orientation is applied (the box is square): a JPEG is decoded
            # at 1/2, 1/4 or 1/8 scale (draft), then resampled to fit
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            return array_to_rgb(np.asarray(img), max_pixels, min_side, name)
        if img.mode == "La":  # PIL converts premultiplied La only to LA
            img = img.convert("LA")
        if img.has_transparency_data:
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img.convert("RGBA"))
        return np.array(img.convert("RGB"), dtype=np.uint8)


def array_to_rgb(
    arr: np.ndarray, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE, name: str = "The image"
) -> np.ndarray:
    """HxW or HxWx{1,3,4} array of uint8 / uint16 / bool / int / float -> HxWx3 uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidImageError(f"An image array must be HxW, HxWx3 or HxWx4; got shape {arr.shape}.")
    if arr.size == 0:
        raise InvalidImageError("The image array is empty.")
    _check_size(arr.shape[1], arr.shape[0], max_pixels, min_side, name)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return np.array(arr, order="C")
    f = _to_unit_float(arr)
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=2)
    if f.shape[2] == 4:
        alpha = f[..., 3:]
        f = f[..., :3] * alpha + (1.0 - alpha)
    return (np.clip(f, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _to_unit_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if arr.dtype.kind in "ui":
        if arr.dtype.itemsize <= 2:
            hi = np.iinfo(arr.dtype).max
        else:  # 32/64-bit integers (PIL mode "I"): guess 8- or 16-bit data from the values
            peak = int(arr.max())
            hi = 255 if peak <= 255 else 65535 if peak <= 65535 else peak
        return arr.astype(np.float32) / np.float32(hi)
    if arr.dtype.kind != "f":
        raise InvalidImageError(f"Unsupported image array dtype {arr.dtype}.")
    f = arr.astype(np.float32)
    finite = np.isfinite(f)
    if not finite.all():
        brightest = max(float(f[finite].max()), 1.0) if finite.any() else 1.0
        f = np.nan_to_num(f, nan=0.0, posinf=brightest, neginf=0.0)
    colour = f[..., :3] if f.ndim == 3 else f  # a view: alpha is left alone
    if colour.max() > 1.0:
        white = max(float(np.percentile(colour, 99.5)), 0.0) or float(colour.max())
        np.minimum(colour, white, out=colour)  # clip first: dividing by a tiny white could overflow
        colour /= white
    return f


def collect_images(folder, limit: int | None = None) -> list[Path]:
    """Image files under `folder` (recursive, sorted); with `limit`, `limit` of them evenly
    spaced over the sorted list (so a subset covers every sub-folder), deterministic."""
    root = Path(folder)
    if root.is_file():
        return [root]
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None and 0 < limit < len(paths):
        idx = np.unique(np.linspace(0, len(paths) - 1, limit).round().astype(int))
        paths = [paths[i] for i in idx]
    return paths
