"""The face in the photo: the photo a session keeps (as a JPEG), the overlay's layers and their blend."""

from __future__ import annotations

import dataclasses
import io
from typing import TYPE_CHECKING

import numpy as np
import PIL.Image

from demo.config import OVERLAY_SIDE, PHOTO_JPEG_QUALITY

if TYPE_CHECKING:
    from demo.sessions import Session


def lighten(rec):
    """Drop what a kept reconstruction no longer needs once its pictures are made: the
    full-resolution photo (up to MAX_SIDE, 12 MB; the session keeps it as a JPEG, `keep_photo`).
    Its shape stays (params.json reports it) through a zero-stride stand-in of 3 bytes."""
    rec.image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), rec.image.shape)
    return rec


def keep_photo(image: np.ndarray) -> bytes:
    """The photo as JPEG bytes (about a tenth of its pixels' size), for `with_photo`."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=PHOTO_JPEG_QUALITY)
    return buffer.getvalue()


def with_photo(session: Session, rec):
    """The kept reconstruction with its photo back (from the session's JPEG), for the exports
    drawn over it (overlay.png, depth.png): a copy, so the full-size views it caches go with it."""
    if session.photo is None:
        return rec
    with PIL.Image.open(io.BytesIO(session.photo)) as im:
        image = np.asarray(im.convert("RGB"))
    return dataclasses.replace(rec, image=image, _meshes=dict(rec._meshes))


def overlay_layers(rec, side: int = OVERLAY_SIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo, face rendered in the photo's pose premultiplied by its coverage, coverage) as
    uint8, at most `side` pixels a side: all the opacity slider needs (`blend`), no render per move.
    Call before `lighten` (it needs the photo)."""
    import cv2

    rec.dense_mesh(details=True)  # built once, shared with the copy below and the 3D view
    view = dataclasses.replace(rec, _meshes=dict(rec._meshes)).photo_view()  # a copy: its full-size view goes
    h, w = rec.image.shape[:2]
    k = min(1.0, side / max(h, w))
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small = (lambda a: a) if k == 1.0 else (lambda a: cv2.resize(a, size, interpolation=cv2.INTER_AREA))
    alpha = np.clip(small(view.alpha) * 255 + 0.5, 0, 255).astype(np.uint8)
    return small(np.ascontiguousarray(rec.image)), small(view.image), alpha


def blend(layers, opacity: float) -> np.ndarray:
    """The face over the photo at `opacity` (0: the photo alone, 1: the render where it covers
    the photo), as `Reconstruction.render_in_photo` draws it."""
    opacity = min(1.0, max(0.0, float(opacity)))
    photo, render, alpha = layers
    a = opacity * alpha[..., None].astype(np.float32) / 255.0
    out = opacity * render.astype(np.float32) + (1.0 - a) * photo.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
