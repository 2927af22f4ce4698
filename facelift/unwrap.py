"""Unwrap the photo onto the face model's UV layout (paper section 3.1: texture map I_t(UV)).

Every texel of the R x R layout shows one surface point (FaceModel.texel_map). For a fitted
face that point is projected with the weak-perspective camera (docs/ARCHITECTURE.md) and the
photo is sampled there. A texel is *visible* when it is inside the layout, faces the camera,
is not hidden by another part of the face (z-buffer), and projects inside the photo and
inside `valid_box`. Invisible texels are zero in `texture`.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp

from .face_model import FaceModel, TexelMap

# A texel faces the camera when its camera-space normal has z above this (< ~78 degrees off
# the view axis); more grazing texels are smeared and pick up the background at silhouettes.
FRONT_FACING_MIN_NZ = 0.2
# Depth tolerance of the occlusion test, as a fraction of the face's largest extent.
DEPTH_TOLERANCE = 0.01
# Z-buffer cell size, in projected texel spacings (> sqrt(2) so every cell the surface covers
# holds at least one of its texels).
_CELL_PER_TEXEL = 1.5
# Depth slopes (|dz / d(image plane)|) are clipped to this when extrapolating within a cell.
_MAX_SLOPE = 3.0


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (N, 3) float32; counter-clockwise triangles give
    normals on the side they are counter-clockwise from. Vertices on no (or only degenerate)
    triangles get a zero normal."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(triangles)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {v.shape}.")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"triangles must be an integer array of shape (F, 3), got {f.dtype} {f.shape}.")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"triangles index outside the {len(v)} vertices.")
    # the cross product's length is twice the area: summing it weights by area
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    idx = f.ravel()
    n = np.stack([np.bincount(idx, np.repeat(fn[:, c], 3), minlength=len(v)) for c in range(3)], -1)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(length > 0, length, 1.0)).astype(np.float32)


@dataclass
class UVMaps:
    """Maps on the R x R UV layout of a fitted face (docs/ARCHITECTURE.md).

    texture    (R, R, 3) float32 in [0, 1]: the photo sampled bilinearly; zero where not visible
    visibility (R, R)    float32, 1 where the texel is seen in the photo, else 0 (no soft edge)
    normal     (R, R, 3) float32 unit camera-space normals, zero outside the layout
    position   (R, R, 3) float32 camera-space points in metres, zero outside the layout
    mask       (R, R)    bool, texels inside the layout
    """

    texture: np.ndarray
    visibility: np.ndarray
    normal: np.ndarray
    position: np.ndarray
    mask: np.ndarray

    @property
    def resolution(self) -> int:
        return self.mask.shape[0]


@dataclass(frozen=True)
class _TexelGather:
    flat: np.ndarray  # (M,) flat indices of the texels inside the layout
    weights: sp.csr_matrix  # (M, N) barycentric weights: texel values = weights @ vertex values
    pitch: float  # metres between neighbouring texels on the mean shape (95th percentile)


_GATHERS: "weakref.WeakKeyDictionary[TexelMap, _TexelGather]" = weakref.WeakKeyDictionary()


def _texel_gather(model: FaceModel, resolution: int) -> _TexelGather:
    tm = model.texel_map(resolution)
    g = _GATHERS.get(tm)
    if g is None:
        flat = np.flatnonzero(tm.mask)
        corners = model.triangles[tm.tri.ravel()[flat]]
        bary = tm.bary.reshape(-1, 3)[flat].astype(np.float64)
        m = len(flat)
        weights = sp.csr_matrix(
            (bary.ravel(), corners.ravel(), np.arange(0, 3 * m + 1, 3)), shape=(m, model.n_vertices)
        )
        weights.sum_duplicates()
        pos = np.zeros((resolution, resolution, 3))
        pos.reshape(-1, 3)[flat] = weights @ model.mean_shape.astype(np.float64)
        dists = [
            np.linalg.norm(pos[:, 1:] - pos[:, :-1], axis=-1)[tm.mask[:, 1:] & tm.mask[:, :-1]],
            np.linalg.norm(pos[1:] - pos[:-1], axis=-1)[tm.mask[1:] & tm.mask[:-1]],
        ]
        d = np.concatenate(dists)
        pitch = float(np.percentile(d, 95)) if d.size else 1.0
        g = _TexelGather(flat, weights, max(pitch, 1e-9))
        _GATHERS[tm] = g
    return g


def _check_inputs(image, vertices_camera, scale, translation, model, resolution, valid_box):
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be an RGB uint8 array of shape (H, W, 3), got {desc}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}.")
    v = np.asarray(vertices_camera, np.float64)
    if v.shape != (model.n_vertices, 3):
        raise ValueError(
            f"vertices_camera must have shape ({model.n_vertices}, 3) for this face model, got {v.shape}."
        )
    if not np.isfinite(v).all():
        raise ValueError("vertices_camera contains NaN or infinite values.")
    s = float(scale)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"scale must be a positive finite number of pixels per metre, got {scale!r}.")
    t = np.asarray(translation, np.float64)
    if t.shape != (2,) or not np.isfinite(t).all():
        raise ValueError(f"translation must be 2 finite numbers (x, y) in pixels, got {translation!r}.")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}.")
    box = None
    if valid_box is not None:
        box = np.asarray(valid_box, np.float64)
        if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"valid_box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {valid_box!r}.")
    return v, s, t, box


def unwrap(
    image: np.ndarray,
    vertices_camera: np.ndarray,
    scale: float,
    translation,
    model: FaceModel,
    resolution: int = 256,
    valid_box=None,
) -> UVMaps:
    """Texture, visibility, normal and position UV maps of a fitted face.

    image            (H, W, 3) uint8 RGB photo
    vertices_camera  (N, 3) fitted vertices R @ X_model, metres, camera space
    scale, translation  weak-perspective camera: x = s*Xc + t0, y = -s*Yc + t1 (pixels)
    valid_box        optional (x0, y0, x1, y1) in pixels: texels projecting outside it (e.g.
                     into padding added around a tight crop) are not visible
    """
    v, s, t, box = _check_inputs(image, vertices_camera, scale, translation, model, resolution, valid_box)
    R = int(resolution)
    g = _texel_gather(model, R)
    H, W = image.shape[:2]

    pos = g.weights @ v  # (M, 3)
    nrm = g.weights @ vertex_normals(v, model.triangles).astype(np.float64)
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)

    x = s * pos[:, 0] + t[0]
    y = -s * pos[:, 1] + t[1]
    z = pos[:, 2]
    visible = nrm[:, 2] > FRONT_FACING_MIN_NZ
    visible &= (x >= 0) & (x < W) & (y >= 0) & (y < H)
    if box is not None:
        visible &= (x >= box[0]) & (x < box[2]) & (y >= box[1]) & (y < box[3])
    visible &= _depth_test(x, y, z, nrm, s, g.pitch, np.ptp(v, axis=0).max())

    idx = np.flatnonzero(visible)
    texture = np.zeros((R * R, 3), np.float32)
    if idx.size:
        # cv2.remap wants maps under 32767 wide: lay the samples out in rows of 256
        rows = -(-idx.size // 256)
        maps = np.zeros((2, rows * 256), np.float32)
        maps[0, : idx.size] = x[idx] - 0.5  # pixel centres are at integer + 0.5
        maps[1, : idx.size] = y[idx] - 0.5
        sampled = cv2.remap(image, maps[0].reshape(rows, 256), maps[1].reshape(rows, 256),
                            cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        texture[g.flat[idx]] = sampled.reshape(-1, 3)[: idx.size].astype(np.float32) * (1.0 / 255.0)
    visibility = np.zeros(R * R, np.float32)
    visibility[g.flat[idx]] = 1.0
    normal = np.zeros((R * R, 3), np.float32)
    normal[g.flat] = nrm
    position = np.zeros((R * R, 3), np.float32)
    position[g.flat] = pos
    return UVMaps(
        texture=texture.reshape(R, R, 3),
        visibility=visibility.reshape(R, R),
        normal=normal.reshape(R, R, 3),
        position=position.reshape(R, R, 3),
        mask=model.texel_map(R).mask.copy(),
    )


def _depth_test(x, y, z, nrm, s, pitch, face_size) -> np.ndarray:
    """True for surface samples not hidden by nearer samples of the same surface.

    Samples are splatted into a coarse image-space buffer (cells ~1.5 projected texel
    spacings, so the surface leaves no holes). Each sample's depth is carried along its
    tangent plane to its cell centre, so samples of one surface agree there whatever its
    slope; a sample is hidden when the cell's nearest depth is ahead of it by more than the
    tolerance.
    """
    cell = _CELL_PER_TEXEL * s * pitch  # pixels
    x0, y0 = x.min(), y.min()
    ci = ((x - x0) / cell).astype(np.int64)
    cj = ((y - y0) / cell).astype(np.int64)
    nx_cells = int(ci.max()) + 1
    flat = cj * nx_cells + ci
    # depth gradient per pixel along image x and y (image y is down, camera Y is up)
    nz = np.where(np.abs(nrm[:, 2]) > 1e-6, nrm[:, 2], 1e-6)
    gx, gy = -nrm[:, 0] / nz, nrm[:, 1] / nz
    slope = np.hypot(gx, gy)
    clip = np.minimum(1.0, _MAX_SLOPE / np.maximum(slope, 1e-12))
    dx = x0 + (ci + 0.5) * cell - x
    dy = y0 + (cj + 0.5) * cell - y
    zc = z + (gx * dx + gy * dy) * clip / s
    buf = np.full(int(flat.max()) + 1, -np.inf)
    np.maximum.at(buf, flat, zc)
    # a clipped slope leaves an extrapolation error of up to (slope - max) * half a cell diagonal
    tol = DEPTH_TOLERANCE * face_size + np.maximum(slope - _MAX_SLOPE, 0.0) * (0.71 * cell / s)
    return zc >= buf[flat] - tol
