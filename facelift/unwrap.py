"""Unwrap the photo onto the face model's UV layout (paper section 3.1: texture map I_t(UV)).

Every texel of the R x R layout shows one surface point (FaceModel.texel_map). For a fitted
face that point is projected with the weak-perspective camera (docs/ARCHITECTURE.md) and the
photo is sampled there. A texel is *visible* when it is inside the layout, faces the camera,
is not hidden by another part of the face (an exact test against its triangles), and projects
inside the photo and inside `valid_box`. Invisible texels are zero in `texture`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp

from ._validate import is_int
from .face_model import FaceModel
from .geometry.normals import vertex_normals

# A texel faces the camera when its camera-space normal has z above this (< ~78 degrees off
# the view axis); more grazing texels are smeared and pick up the background at silhouettes.
FRONT_FACING_MIN_NZ = 0.2
# Depth tolerance of the occlusion test, as a fraction of the face's largest extent.
DEPTH_TOLERANCE = 0.01
# A texel is hidden by surface that comes within this many photo pixels of its line of sight
# (bilinear sampling reads the pixels around it; a little conservative at silhouettes).
OCCLUSION_MARGIN_PX = 0.5
# Own-slope allowance: a texel's depth changes by up to |slope| * margin across the margin
# (|slope| = tan of its angle to the image plane, capped here: 5 ~ n_z = 0.2).
_MAX_SLOPE = 5.0

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
    tri: np.ndarray  # (M,) the triangle each of them lies on
    across: np.ndarray  # (F, 3) the triangle across each edge of each triangle, -1 on borders
    weights: sp.csr_matrix  # (M, N) barycentric weights: texel values = weights @ vertex values
    pitch: float  # metres between neighbouring texels on the mean shape (95th percentile)


def _texel_gather(model: FaceModel, resolution: int) -> _TexelGather:
    """The gather for `model` at `resolution`, built once and kept with the model."""
    return model.derived(("unwrap.texel_gather", resolution), lambda: _build_texel_gather(model, resolution))


def _build_texel_gather(model: FaceModel, resolution: int) -> _TexelGather:
    tm = model.texel_map(resolution)
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
    return _TexelGather(flat, tm.tri.ravel()[flat].astype(np.int64), _edge_neighbours(model.triangles),
                        weights, max(pitch, 1e-9))


def _edge_neighbours(triangles) -> np.ndarray:
    """(F, 3) int64: the triangle sharing edge (corner e, corner e + 1) of each triangle, or -1."""
    f = np.asarray(triangles, np.int64)
    F = len(f)
    a, b = f.ravel(), f[:, [1, 2, 0]].ravel()
    n = int(f.max()) + 1 if F else 1
    key = np.minimum(a, b) * n + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    out = np.full(3 * F, -1, np.int64)
    pair = np.flatnonzero(ks[1:] == ks[:-1])
    pair = pair[(pair + 2 >= len(ks)) | (ks[np.minimum(pair + 2, len(ks) - 1)] != ks[pair])]  # manifold
    pair = pair[(pair == 0) | (ks[np.maximum(pair - 1, 0)] != ks[pair])]
    h0, h1 = order[pair], order[pair + 1]
    out[h0], out[h1] = h1 // 3, h0 // 3
    return out.reshape(F, 3)


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
    if not is_int(resolution) or resolution < 2:
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
    nrm /= np.maximum(np.sqrt(nrm[:, 0] ** 2 + nrm[:, 1] ** 2 + nrm[:, 2] ** 2), 1e-12)[:, None]  # ~5x np.linalg.norm

    x = s * pos[:, 0] + t[0]
    y = -s * pos[:, 1] + t[1]
    z = pos[:, 2]
    visible = nrm[:, 2] > FRONT_FACING_MIN_NZ
    visible &= (x >= 0) & (x < W) & (y >= 0) & (y < H)
    if box is not None:
        visible &= (x >= box[0]) & (x < box[2]) & (y >= box[1]) & (y < box[3])
    cand = np.flatnonzero(visible)
    if cand.size:
        hidden = _occluded(x[cand], y[cand], z[cand], nrm[cand], g.tri[cand], g.across, s * v[:, 0] + t[0],
                           -s * v[:, 1] + t[1], v[:, 2], model.triangles, s,
                           DEPTH_TOLERANCE * np.ptp(v, axis=0).max())
        visible[cand[hidden]] = False

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


def _occluded(x, y, z, nrm, own, across, vx, vy, vz, triangles, s, tol) -> np.ndarray:
    """True for surface samples (x, y pixels, z camera depth, on triangle `own`) hidden by a
    triangle (vertices vx, vy pixels, vz depth) of the face.

    Texels lie on the model's triangles, so the test is exact rather than a z-buffer (whose
    cells straddled creases such as the nose-cheek fold, where the depth of a steep wall carried
    to a cell centre hid the cheek at its foot: speckles). A sample is hidden when a triangle
    crosses its line of sight more than `tol` in front of it. Within OCCLUSION_MARGIN_PX of an
    occluding outline (bilinear taps reach across it) a sample is hidden too, when the
    triangle's nearest point is ahead by more than `tol` + (own slope + _MAX_SLOPE) * distance
    and that triangle hides some sample outright: next to a crease a steep wall rises within
    the margin without hiding anything. Candidate triangles come from an image-space grid;
    the sample's own triangle and the neighbours across its edges that face the same way in the
    image (they lie beyond the shared edge; the surface does not fold there) are skipped.
    """
    margin = OCCLUSION_MARGIN_PX
    # float32 halves the memory traffic of the pair arrays; pixel coordinates keep ~1e-4 px
    x, y, z = (np.asarray(a, np.float32) for a in (x, y, z))
    vx, vy, vz = (np.asarray(a, np.float32) for a in (vx, vy, vz))
    tol, s = np.float32(tol), np.float32(s)
    tris = np.asarray(triangles, np.int64)
    X, Y, Z = vx[tris], vy[tris], vz[tris]  # (F, 3)
    ex, ey = X[:, [1, 2, 0]] - X, Y[:, [1, 2, 0]] - Y  # edge e runs from corner e to e + 1
    area2 = ex[:, 0] * ey[:, 1] - ex[:, 1] * ey[:, 0]
    f_ok = np.flatnonzero(np.abs(area2) > 1e-9)  # edge-on triangles: neighbours cover them
    if f_ok.size == 0 or len(x) == 0:
        return np.zeros(len(x), bool)
    X, Y, Z, ex, ey, area2 = X[f_ok], Y[f_ok], Z[f_ok], ex[f_ok], ey[f_ok], area2[f_ok]
    F = len(f_ok)
    renum = np.full(len(tris) + 1, -1, np.int64)  # original id -> id among f_ok; -1 -> -1
    renum[f_ok] = np.arange(F)
    side = np.sign(area2)
    nb = renum[across[f_ok]]  # (F, 3)
    nb[side[np.maximum(nb, 0)] != side[:, None]] = -1  # folded over: may overlap
    skip = np.concatenate([np.arange(F)[:, None], nb], 1)  # (F, 4)
    skip = np.concatenate([skip, np.full((1, 4), -1)]).take(renum.take(own), axis=0)  # edge-on own: none
    # depth plane z = pa x + pb y + pc
    dz1, dz2 = Z[:, 1] - Z[:, 0], Z[:, 2] - Z[:, 0]
    pa = -(dz1 * ey[:, 2] + dz2 * ey[:, 0]) / area2
    pb = (dz1 * ex[:, 2] + dz2 * ex[:, 0]) / area2
    pc = Z[:, 0] - pa * X[:, 0] - pb * Y[:, 0]
    zmin, zmax = Z.min(1), Z.max(1)

    # bin the triangles' margin-grown boxes into a grid of about a quarter of their size; each
    # (triangle, bin) entry bounds the triangle's depth over the bin from above
    lo_x, hi_x = X.min(1) - margin, X.max(1) + margin
    lo_y, hi_y = Y.min(1) - margin, Y.max(1) + margin
    b = max(0.25 * float(np.median(np.maximum(hi_x - lo_x, hi_y - lo_y))), 0.5)
    ox, oy = min(lo_x.min(), x.min()), min(lo_y.min(), y.min())
    bx0, bx1 = ((lo_x - ox) / b).astype(np.int64), ((hi_x - ox) / b).astype(np.int64)
    by0, by1 = ((lo_y - oy) / b).astype(np.int64), ((hi_y - oy) / b).astype(np.int64)
    nbx = int(max(bx1.max(), (x.max() - ox) / b)) + 1
    nby = int(max(by1.max(), (y.max() - oy) / b)) + 1
    w = bx1 - bx0 + 1
    n_bins = w * (by1 - by0 + 1)
    tri_rep = np.repeat(np.arange(F), n_bins)
    local = np.arange(len(tri_rep)) - np.repeat(np.cumsum(n_bins) - n_bins, n_bins)
    cx = bx0[tri_rep] + local % w[tri_rep]
    cy = by0[tri_rep] + local // w[tri_rep]
    # plane maximum over the bin grown by the margin (at a corner), within the depth range
    ta, tb = pa[tri_rep], pb[tri_rep]
    gx0, gy0 = ox + cx * b - margin, oy + cy * b - margin
    up = pc[tri_rep] + np.where(ta > 0, ta * (gx0 + b + 2 * margin), ta * gx0) \
        + np.where(tb > 0, tb * (gy0 + b + 2 * margin), tb * gy0)
    up = np.clip(up, zmin[tri_rep], zmax[tri_rep])
    bins = cy * nbx + cx
    bin_up = np.full(nbx * nby, -np.inf)
    np.maximum.at(bin_up, bins, up)
    order = np.argsort(bins, kind="stable")
    tri_sorted, up_sorted = tri_rep[order], up[order]
    count = np.bincount(bins, minlength=nbx * nby)
    start = np.cumsum(count) - count

    # (sample, triangle) candidate pairs: the other triangles of the sample's bin that reach
    # more than `tol` in front of it there (nothing else can hide it)
    kb = ((y - oy) / b).astype(np.int64) * nbx + ((x - ox) / b).astype(np.int64)
    ks = np.flatnonzero(bin_up[kb] > z + tol)
    c = count[kb[ks]]
    k = np.repeat(ks, c)
    slot = np.repeat(start[kb[ks]], c) + np.arange(len(k)) - np.repeat(np.cumsum(c) - c, c)
    # (take and compress: several times faster than fancy and boolean indexing on these arrays)
    keep = up_sorted.take(slot) > z.take(k) + tol
    k, j = np.compress(keep, k), tri_sorted.take(np.compress(keep, slot))
    sk = skip.take(k, axis=0)
    keep = (j != sk[:, 0]) & (j != sk[:, 1]) & (j != sk[:, 2]) & (j != sk[:, 3])
    k, j = np.compress(keep, k), np.compress(keep, j)
    px, py = x.take(k), y.take(k)

    # signed distances (pixels, positive inside) to the three edge lines
    inv_len = np.sign(area2)[:, None] / np.maximum(np.hypot(ex, ey), 1e-12)
    exT, eyT, XT, YT, inv_lenT = (np.ascontiguousarray(a.T) for a in (ex, ey, X, Y, inv_len))
    dmin = None
    for e in range(3):
        de = (exT[e].take(j) * (py - YT[e].take(j)) - eyT[e].take(j) * (px - XT[e].take(j))) * inv_lenT[e].take(j)
        dmin = de if dmin is None else np.minimum(dmin, de)
    assert dmin is not None
    near = dmin >= -margin  # necessary; beyond sharp corners the edge lines mislead
    k, j, px, py, dmin = (np.compress(near, a) for a in (k, j, px, py, dmin))

    # depth of the triangle's point nearest the line of sight, and its distance d (pixels)
    zt = pa.take(j) * px + pb.take(j) * py + pc.take(j)
    d = np.zeros(len(k))
    out = np.flatnonzero(dmin < 0)
    if out.size:
        jo, qx, qy = j.take(out), px.take(out), py.take(out)
        ZT = np.ascontiguousarray(Z.T)
        best_d = np.full(out.size, np.inf)
        best_z = np.zeros(out.size)
        for e in range(3):
            n = (e + 1) % 3
            exe, eye, xe, ye = exT[e].take(jo), eyT[e].take(jo), XT[e].take(jo), YT[e].take(jo)
            u = np.clip(((qx - xe) * exe + (qy - ye) * eye) / np.maximum(exe * exe + eye * eye, 1e-12), 0.0, 1.0)
            de = np.hypot(xe + u * exe - qx, ye + u * eye - qy)
            better = de < best_d
            best_d = np.where(better, de, best_d)
            ze = ZT[e].take(jo)
            best_z = np.where(better, ze + u * (ZT[n].take(jo) - ze), best_z)
        d[out], zt[out] = best_d, best_z
    near = d <= margin
    k, j = np.compress(near, k), np.compress(near, j)
    d, zt = np.compress(near, d), np.compress(near, zt)

    nz = np.maximum(np.abs(nrm[:, 2]), 1e-6)
    slope = np.minimum(np.hypot(nrm[:, 0], nrm[:, 1]) / nz, _MAX_SLOPE)
    ahead = zt > z[k] + tol + (slope[k] + _MAX_SLOPE) * d / s
    direct = ahead & (d == 0)
    occluder = np.zeros(F, bool)
    occluder[j[direct]] = True
    hidden = np.zeros(len(x), bool)
    hidden[k[direct | (ahead & occluder[j])]] = True
    return hidden
