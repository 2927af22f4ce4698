"""Skin masks on the UV layout, from the MediaPipe landmark regions of the face model.

The face model's vertices are the 468 MediaPipe FaceMesh points, so a landmark region
(eye contour, brow, lips) is a polygon in UV: the convex hull of its vertices' `uv`,
rasterised on the R x R layout (docs/ARCHITECTURE.md) and dilated a little.

Excluded from "skin": eyes (contour hull, dilated for lashes), brows (hull, dilated), lips and
mouth interior (outer-lip hull), and hair, which landmarks cannot see: the upper half of the
forehead above the brows is always excluded (fringes), and, per photo, forehead texels much
darker than the cheeks (``hair_mask``).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ..geometry.rasterize import uv_to_texel

# MediaPipe FaceMesh index sets (as in mediapipe.solutions.face_mesh_connections; copied so
# the evaluation does not import MediaPipe's solution graphs).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409)
REGIONS = {"right_eye": RIGHT_EYE, "left_eye": LEFT_EYE, "right_brow": RIGHT_BROW, "left_brow": LEFT_BROW,
           "mouth": LIPS_OUTER}
#: Dilation of each excluded region, as a fraction of the layout's side.
DILATE = {"right_eye": 0.02, "left_eye": 0.02, "right_brow": 0.015, "left_brow": 0.015, "mouth": 0.015}
#: Forehead texels darker than this fraction of the median cheek luminance are hair.
HAIR_DARKNESS = 0.55


def region_mask(uv: np.ndarray, indices, resolution: int, dilate: float = 0.0) -> np.ndarray:
    """(R, R) bool: the convex hull of vertices `indices` of the layout `uv` (N, 2), dilated."""
    R = int(resolution)
    pts = uv_to_texel(np.asarray(uv)[list(indices)], R)
    hull = cv2.convexHull((pts * 16).round().astype(np.int32))
    img = np.zeros((R, R), np.uint8)
    cv2.fillConvexPoly(img, hull, 1, lineType=cv2.LINE_8, shift=4)
    r = int(round(dilate * R))
    if r > 0:
        img = cv2.dilate(img, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return img.astype(bool)


@lru_cache(maxsize=8)
def _static(uv_bytes: bytes, n: int, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    uv = np.frombuffer(uv_bytes, np.float64).reshape(n, 2)
    R = resolution
    excluded = np.zeros((R, R), bool)
    for name, idx in REGIONS.items():
        excluded |= region_mask(uv, idx, R, DILATE[name])
    # forehead: rows above the brows' top; the upper half of that band is excluded outright
    brow_v = uv[list(RIGHT_BROW + LEFT_BROW), 1].max()
    top_v = uv[:, 1].max()
    rows_v = 1.0 - (np.arange(R) + 0.5) / R
    forehead = np.broadcast_to((rows_v > brow_v)[:, None], (R, R)).copy()
    upper = np.broadcast_to((rows_v > brow_v + 0.5 * (top_v - brow_v))[:, None], (R, R))
    excluded |= upper
    return ~excluded, forehead


def static_skin_mask(model, resolution: int) -> np.ndarray:
    """(R, R) bool: layout texels that are skin by landmarks alone (inside the layout)."""
    uv = np.ascontiguousarray(model.uv, np.float64)
    skin, _ = _static(uv.tobytes(), len(uv), int(resolution))
    return skin & model.texel_map(int(resolution)).mask


def forehead_band(model, resolution: int) -> np.ndarray:
    uv = np.ascontiguousarray(model.uv, np.float64)
    return _static(uv.tobytes(), len(uv), int(resolution))[1]


def hair_mask(texture: np.ndarray, visible: np.ndarray, skin: np.ndarray, forehead: np.ndarray) -> np.ndarray:
    """(R, R) bool: visible forehead texels much darker than the median visible skin below it."""
    lum = np.asarray(texture, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    ref = visible & skin & ~forehead
    if ref.sum() < 16:
        return np.zeros_like(visible, bool)
    return visible & forehead & (lum < HAIR_DARKNESS * float(np.median(lum[ref])))


def skin_mask(model, maps) -> np.ndarray:
    """(R, R) bool: visible skin texels of `maps` (UVMaps) - the photometric metrics' region."""
    R = maps.mask.shape[0]
    skin = static_skin_mask(model, R)
    vis = (maps.visibility > 0.5) & maps.mask
    return skin & vis & ~hair_mask(maps.texture, vis, skin, forehead_band(model, R))
