"""Image input: any path, PIL image or array -> an upright RGB uint8 array, or a clear error."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLargeError, ImageTooSmallError, InvalidImageError

MAX_PIXELS = 50_000_000
MIN_SIDE = 32


def load_image(source, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> np.ndarray:
    """Return an HxWx3 uint8 RGB array with EXIF orientation applied.

    Accepts a file path, raw file bytes, a PIL image or an HxW / HxWx{1,3,4} array
    (uint8, uint16 or float in [0, 1]). Raises `InvalidImageError` (or a subclass) for
    anything that is not a usable image.
    """
    if isinstance(source, np.ndarray):
        return _check_size(array_to_rgb(source), max_pixels, min_side)
    if isinstance(source, Image.Image):
        return _check_size(pil_to_rgb(source, max_pixels), max_pixels, min_side)
    if isinstance(source, (bytes, bytearray)):
        return _check_size(_decode(io.BytesIO(source), "the uploaded data", max_pixels), max_pixels, min_side)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InvalidImageError(f"File not found: {path}")
        if path.is_dir():
            raise InvalidImageError(f"{path} is a directory, not an image file.")
        if path.stat().st_size == 0:
            raise InvalidImageError(f"{path.name} is an empty file.")
        with open(path, "rb") as fh:
            return _check_size(_decode(fh, path.name, max_pixels), max_pixels, min_side)
    raise InvalidImageError(
        f"Cannot read an image from a {type(source).__name__}; "
        "give a file path, bytes, a PIL image or an HxWx3 uint8 array."
    )


def _decode(fh, name: str, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fh)
            _check_pixels(img.size, max_pixels, name)
            return pil_to_rgb(img, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"{name} is too large to process (limit {max_pixels:,} pixels): {exc}"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(
            f"{name} is not an image FaceLift can read (use JPEG, PNG, WebP, BMP, TIFF or GIF)."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"{name} is truncated or corrupted and cannot be decoded ({exc}).") from exc


def _check_pixels(size, max_pixels: int, name: str) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageTooLargeError(
            f"{name} is {w}x{h} pixels, more than the limit of {max_pixels:,}; downscale it first."
        )


def pil_to_rgb(img: Image.Image, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a PIL image (first frame if animated) to upright RGB uint8."""
    _check_pixels(img.size, max_pixels, "The image")
    if getattr(img, "is_animated", False):
        img.seek(0)
    img.load()
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return array_to_rgb(np.asarray(img))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"))
        return _over_white(rgba.astype(np.float32) / 255.0)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """HxW or HxWxC array of uint8 / uint16 / int / float -> HxWx3 uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidImageError(f"An image array must be HxW, HxWx3 or HxWx4; got shape {arr.shape}.")
    if arr.size == 0:
        raise InvalidImageError("The image array is empty.")
    if arr.dtype == np.uint8:
        f = arr.astype(np.float32) / 255.0
    elif arr.dtype == bool:
        f = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        hi = 65535.0 if arr.max() > 255 else 255.0
        f = arr.astype(np.float32) / hi
    elif np.issubdtype(arr.dtype, np.floating):
        f = arr.astype(np.float32)
        if not np.isfinite(f).all():
            f = np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(f.max()) if f.size else 0.0
        if peak > 1.0:  # HDR: scale the highlights into range
            f = f / np.percentile(f, 99.5) if np.percentile(f, 99.5) > 0 else f / peak
    else:
        raise InvalidImageError(f"Unsupported image array dtype {arr.dtype}.")
    f = np.clip(f, 0.0, 1.0)
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, axis=2)
    if f.shape[2] == 4:
        return _over_white(f)
    return (f * 255.0 + 0.5).astype(np.uint8)


def _over_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3] * alpha + (1.0 - alpha)
    return (np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def _check_size(rgb: np.ndarray, max_pixels: int, min_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h * w > max_pixels:
        raise ImageTooLargeError(f"The image is {w}x{h} pixels, more than the limit of {max_pixels:,}.")
    if min(h, w) < min_side:
        raise ImageTooSmallError(
            f"The image is {w}x{h} pixels; FaceLift needs at least {min_side} pixels on each side."
        )
    return np.ascontiguousarray(rgb)
