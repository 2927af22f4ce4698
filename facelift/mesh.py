"""The dense output mesh: a UV-grid mesh on the Loop-subdivided fitted surface.

The ~900-triangle model is Loop-subdivided (a fixed linear operator on its vertices), and the
subdivided surface is resampled on the G x G texel grid of the UV layout: grid vertex (i, j)
is texel (i, j) of a G x G UV map (docs/ARCHITECTURE.md), so UV maps (albedo, displacement
rate) are read per vertex by a gather. Everything up to the final positions is precomputed
per face model; `DenseMeshBuilder.build` is a few sparse products plus normals.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp

from ._validate import is_int
from .face_model import FaceModel
from .geometry.normals import vertex_incidence, vertex_normals
from .geometry.rasterize import rasterize_uv
from .geometry.subdivision import loop_subdivision_matrix


@dataclass
class DenseMesh:
    """A dense face mesh on the UV grid.

    vertices   (M, 3) float32, same space as the vertices given to `build`
    faces      (T, 3) int32, counter-clockwise seen from the face's front
    uv         (M, 2) float32, u right, v up (docs/ARCHITECTURE.md)
    normals    (M, 3) float32 unit, area-weighted over the dense faces
    grid_index (M,)   int64, flat index into the resolution x resolution UV grid
    resolution int    G of the grid
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    normals: np.ndarray
    grid_index: np.ndarray
    resolution: int

    def sample(self, uv_map: np.ndarray) -> np.ndarray:
        """Per-vertex values of a UV map: (R, R, C) -> (M, C), (R, R) -> (M,). A map of another
        resolution is resized bilinearly to the grid first."""
        return _sample_grid(uv_map, self.resolution, self.grid_index, "uv_map")


def _sample_grid(uv_map, G: int, grid_index: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(uv_map)
    if m.ndim not in (2, 3) or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"{name} must be a square UV map of shape (R, R) or (R, R, C), got {m.shape}.")
    if m.shape[0] != G:
        channels = m.shape[2] if m.ndim == 3 else 1
        if channels > 512:
            raise ValueError(f"{name} has {channels} channels; at most 512 can be resized.")
        src = m.astype(np.float32) if m.dtype not in (np.float32, np.float64) else m
        r = cv2.resize(src, (G, G), interpolation=cv2.INTER_LINEAR)
        m = r.reshape(G, G, *m.shape[2:])
    if m.ndim == 2:
        return m.reshape(-1)[grid_index]
    return m.reshape(G * G, m.shape[2])[grid_index]


# A grid edge bridges a hole or a cut of the layout (e.g. an open mouth) when the surface path
# between its ends is surely longer than _DETOUR * their distance + _SLACK * texel pitch.
_DETOUR = 2.0
_SLACK = 2.0
# Paths along mesh edges are at most this much longer than the surface's geodesics.
_ZIGZAG = 2.0


def _grid_faces_on_surface(faces, tri_of_texel, points, sub_tris, sub_vertices, base_tris) -> np.ndarray:
    """Mask of the grid faces whose corners are neighbours on the surface, not only in UV.

    Two texels are neighbours when the base triangles under them touch or are one edge apart
    (the common case, a cheap test). Otherwise (a texel can skip thin triangles, e.g. at the
    lip corners) the geodesic distance between the two surface points p, q must not be surely
    much longer than their distance: a grid edge across a hole of the layout (an open mouth,
    two separate sheets) has a long detour or no path at all. For corners a of p's
    sub-triangle and b of q's, geo(p, q) >= geo(a, b) - |p - a| - |q - b| and
    geo(a, b) >= (edge path a -> b on the subdivided mean shape) / _ZIGZAG: the face is kept
    unless the largest of these lower bounds exceeds the allowance.
    Sub-triangle k of any level descends from base triangle k % F.
    """
    if len(faces) == 0:
        return np.ones(0, bool)
    F = len(base_tris)
    nb = int(base_tris.max()) + 1
    ft = tri_of_texel[faces]  # (T, 3) sub-triangle under each corner
    base = base_tris[ft % F].astype(np.int64)  # (T, 3 corners, 3 base vertices)
    e = np.concatenate([base_tris[:, [0, 1]], base_tris[:, [1, 2]], base_tris[:, [2, 0]]]).astype(np.int64)
    near = np.unique(np.concatenate([np.minimum(e[:, 0], e[:, 1]) * nb + np.maximum(e[:, 0], e[:, 1]),
                                     np.arange(nb) * (nb + 1)]))
    pairs = ((0, 1), (1, 2), (2, 0))
    linked = np.ones((len(faces), 3), bool)
    for k, (p, q) in enumerate(pairs):
        a, b = base[:, p, :, None], base[:, q, None, :]
        codes = np.minimum(a, b) * nb + np.maximum(a, b)  # (T, 3, 3) vertex pairs
        linked[:, k] = np.isin(codes, near).reshape(len(faces), -1).any(1)
    bad_face, bad_pair = np.nonzero(~linked)
    if bad_face.size == 0:
        return np.ones(len(faces), bool)

    # texel spacing on the mean shape (95th percentile of the grid edges)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    pitch = max(float(np.percentile(np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1), 95)),
                1e-12)
    i0 = faces[bad_face, np.array([p for p, _ in pairs])[bad_pair]]
    i1 = faces[bad_face, np.array([q for _, q in pairs])[bad_pair]]
    allowed = _DETOUR * np.linalg.norm(points[i0] - points[i1], axis=1) + _SLACK * pitch

    # shortest edge paths on the subdivided mean shape between the corners of the two texels'
    # sub-triangles (beyond `limit` the bound rejects anyway: inf)
    from scipy.sparse.csgraph import dijkstra

    st = sub_tris.astype(np.int64)
    se = np.unique(np.sort(np.concatenate([st[:, [0, 1]], st[:, [1, 2]], st[:, [2, 0]]]), 1), axis=0)
    n = len(sub_vertices)
    graph = sp.csr_matrix((np.linalg.norm(sub_vertices[se[:, 0]] - sub_vertices[se[:, 1]], axis=1),
                           (se[:, 0], se[:, 1])), shape=(n, n))
    ca, cb = st[tri_of_texel[i0]], st[tri_of_texel[i1]]  # (K, 3) sub-vertices
    legs_a = np.linalg.norm(sub_vertices[ca] - points[i0][:, None], axis=2)  # (K, 3)
    legs_b = np.linalg.norm(sub_vertices[cb] - points[i1][:, None], axis=2)
    limit = _ZIGZAG * float((allowed + legs_a.max(1) + legs_b.max(1)).max())
    sources, inv = np.unique(ca, return_inverse=True)
    dist = dijkstra(graph, directed=False, indices=sources, limit=limit)
    path = dist[inv.reshape(-1, 3)[:, :, None], cb[:, None, :]]  # (K, 3, 3)
    lower = (path / _ZIGZAG - legs_a[:, :, None] - legs_b[:, None, :]).max(axis=(1, 2))
    linked[bad_face, bad_pair] = lower <= allowed
    return np.asarray(linked.all(1))


class DenseMeshBuilder:
    """Precomputes the dense UV-grid mesh of a face model; `build` places it for any fit."""

    def __init__(self, model: FaceModel, resolution: int = 256, subdivisions: int = 2):
        if not is_int(resolution) or resolution < 2:
            raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}.")
        if not is_int(subdivisions) or subdivisions < 0:
            raise ValueError(f"subdivisions must be a non-negative integer, got {subdivisions!r}.")
        self.model = model
        self.resolution = G = int(resolution)
        self.subdivisions = int(subdivisions)
        self.n_vertices = model.n_vertices

        sub = loop_subdivision_matrix(model.triangles, model.n_vertices, self.subdivisions)
        uv_sub = sub.midpoint @ model.uv.astype(np.float64)
        tri_map, bary_map = rasterize_uv(uv_sub, sub.triangles, G)
        inside = tri_map >= 0

        # grid triangles: two per cell with 4 corners inside, one per cell with 3, CCW in UV
        a, b = inside[:-1, :-1], inside[:-1, 1:]  # top-left, top-right (row 0 is the top)
        c, d = inside[1:, :-1], inside[1:, 1:]  # bottom-left, bottom-right
        idx = np.arange(G * G).reshape(G, G)
        A, B, C, D = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
        n_in = a.astype(int) + b + c + d
        full = n_in == 4
        three = n_in == 3
        faces = np.concatenate([
            np.stack([C[full], D[full], B[full]], 1),
            np.stack([C[full], B[full], A[full]], 1),
            np.stack([C[three & ~a], D[three & ~a], B[three & ~a]], 1),
            np.stack([C[three & ~b], D[three & ~b], A[three & ~b]], 1),
            np.stack([D[three & ~c], B[three & ~c], A[three & ~c]], 1),
            np.stack([C[three & ~d], B[three & ~d], A[three & ~d]], 1),
        ])
        # surface points of all texels inside the layout, on the subdivided mean shape
        flat_in = np.flatnonzero(inside)
        sub_mean = sub.operator @ model.mean_shape.astype(np.float64)
        points = np.zeros((G * G, 3))
        points[flat_in] = np.einsum(
            "mk,mkc->mc", bary_map.reshape(-1, 3)[flat_in], sub_mean[sub.triangles[tri_map.ravel()[flat_in]]])
        faces = faces[_grid_faces_on_surface(faces, tri_map.ravel(), points, sub.triangles, sub_mean,
                                             model.triangles)]
        # the layout may be mirrored relative to the surface: keep the model's orientation
        uvt = model.uv[model.triangles]
        signed = np.cross(uvt[:, 1] - uvt[:, 0], uvt[:, 2] - uvt[:, 0])
        if np.sum(signed) < 0:
            faces = faces[:, [0, 2, 1]]

        used = np.zeros(G * G, bool)
        used[faces.ravel()] = True
        grid_index = np.flatnonzero(used)
        remap = np.full(G * G, -1, np.int64)
        remap[grid_index] = np.arange(len(grid_index))
        self.faces = remap[faces].astype(np.int32)
        self.grid_index = grid_index
        m = len(grid_index)
        i, j = np.divmod(grid_index, G)
        self.uv = np.stack([(j + 0.5) / G, 1.0 - (i + 0.5) / G], 1).astype(np.float32)

        tri_ids = tri_map.ravel()[grid_index]
        bary = bary_map.reshape(-1, 3)[grid_index].astype(np.float64)
        corners = sub.triangles[tri_ids]
        # grid positions = sample @ (operator @ V): kept factored, it is ~4x sparser than the product
        self._sample = sp.csr_matrix(
            (bary.ravel(), corners.ravel(), np.arange(0, 3 * m + 1, 3)), shape=(m, sub.operator.shape[0])
        ).astype(np.float32)
        self._operator = sub.operator.astype(np.float32)
        self._incidence = vertex_incidence(self.faces, m)  # every build sums face normals twice

    @property
    def weights(self) -> sp.csr_matrix:
        """W (M, N): grid vertex positions = W @ base vertices."""
        return (self._sample @ self._operator).tocsr()

    @property
    def n_dense_vertices(self) -> int:
        return len(self.grid_index)

    def build(self, vertices: np.ndarray, displacement_rate: np.ndarray | None = None,
              details: bool = True, smooth: DenseMesh | None = None) -> DenseMesh:
        """Dense mesh for fitted base vertices (N, 3) (model or camera space).

        With `details` and a displacement rate map (R, R) (or (R, R, 1)), every vertex moves
        by r_d * n along its smooth normal (metres), and normals are recomputed. `smooth`: the
        mesh `build(vertices, details=False)` already built (e.g. for a render without details), so
        that only the details are added.
        """
        v = np.asarray(vertices)
        if v.shape != (self.n_vertices, 3):
            raise ValueError(f"vertices must have shape ({self.n_vertices}, 3) for this face model, got {v.shape}.")
        if smooth is not None:
            if smooth.vertices.shape != (self.n_dense_vertices, 3):
                raise ValueError("smooth is not a dense mesh of this builder.")
            p, n = smooth.vertices, smooth.normals
        else:
            v = v.astype(np.float32)
            if not np.isfinite(v).all():
                raise ValueError("vertices contain NaN or infinite values.")
            p = self._sample @ (self._operator @ v)
            n = vertex_normals(p, self.faces, self._incidence)
        if details and displacement_rate is not None:
            rate = np.asarray(displacement_rate)
            if rate.ndim == 3 and rate.shape[2] == 1:
                rate = rate[..., 0]
            if rate.ndim != 2:
                raise ValueError(f"displacement_rate must be a UV map of shape (R, R) or (R, R, 1), got {rate.shape}.")
            r = _sample_grid(rate, self.resolution, self.grid_index, "displacement_rate").astype(np.float32)
            if not np.isfinite(r).all():
                raise ValueError("displacement_rate contains NaN or infinite values.")
            p = p + r[:, None] * n
            n = vertex_normals(p, self.faces, self._incidence)
        return DenseMesh(
            vertices=p.astype(np.float32, copy=False),
            faces=self.faces,
            uv=self.uv,
            normals=n.astype(np.float32, copy=False),
            grid_index=self.grid_index,
            resolution=self.resolution,
        )


def _surface_derivative(rate: np.ndarray, position: np.ndarray, mask: np.ndarray, axis: int, sign: int):
    """d rate / d arc length along +u (axis 1, sign +1: columns) or +v (axis 0, sign -1: rows go
    down) on the UV grid: central differences inside the layout, one-sided on its border, 0 alone."""
    def shifted(a, k):  # a[i + k] along axis (k = +-1), zero-filled beyond the edge
        out = np.zeros_like(a)
        src = [slice(None)] * a.ndim
        dst = [slice(None)] * a.ndim
        if k > 0:
            src[axis], dst[axis] = slice(k, None), slice(None, -k)
        else:
            src[axis], dst[axis] = slice(None, k), slice(-k, None)
        out[tuple(dst)] = a[tuple(src)]
        return out

    fwd_ok, bwd_ok = shifted(mask, sign) & mask, shifted(mask, -sign) & mask
    r_f, r_b = shifted(rate, sign), shifted(rate, -sign)
    p_f, p_b = shifted(position, sign), shifted(position, -sign)
    both = fwd_ok & bwd_ok
    hi = np.where(fwd_ok[..., None], p_f, position)
    lo = np.where(bwd_ok[..., None], p_b, position)
    dr = np.where(fwd_ok, r_f, rate) - np.where(bwd_ok, r_b, rate)
    length = np.linalg.norm(hi - lo, axis=-1)
    ok = (both | fwd_ok | bwd_ok) & (length > 1e-9)
    return np.where(ok, dr / np.maximum(length, 1e-9), 0.0)


def detail_normal_map(displacement_rate: np.ndarray, position: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tangent-space normals (R, R, 3) of the surface displaced by r_d along its normal.

    In the frame glTF, Blender and three.js use for normal maps (x along +u, y along +v, z the
    surface normal), a height field r_d gives n = normalise(-dr/ds_u, -dr/ds_v, 1), with s the
    arc length on the surface (measured on the camera-space `position` map, metres). (0, 0, 1)
    outside the layout, where the map changes nothing."""
    r = np.asarray(displacement_rate, np.float64)
    p = np.asarray(position, np.float64)
    m = np.asarray(mask, bool)
    if r.ndim == 3 and r.shape[2] == 1:
        r = r[..., 0]
    if r.ndim != 2 or p.shape != r.shape + (3,) or m.shape != r.shape:
        raise ValueError(f"displacement_rate (R, R), position (R, R, 3) and mask (R, R) must agree; got {r.shape}, "
                         f"{p.shape} and {m.shape}.")
    if not (np.isfinite(r[m]).all() and np.isfinite(p[m]).all()):
        raise ValueError("displacement_rate or position contains NaN or infinite values.")
    r = np.where(m, r, 0.0)
    n = np.stack([-_surface_derivative(r, p, m, 1, 1), -_surface_derivative(r, p, m, 0, -1), np.ones_like(r)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~m] = (0.0, 0.0, 1.0)
    return n.astype(np.float32)


#: Bounds of the cavity factor (as in training: facelift.training.drn_v2.cavity_shading)
DETAIL_OCCLUSION_RANGE = (0.5, 1.5)


def masked_gaussian_blur(values: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (`sigma` texels, radius round(3 sigma), edges replicated) of an (R, R) map
    over `mask` only: normalised by the blurred mask, zero outside it."""
    m = np.asarray(mask, np.float64)
    r = max(1, int(3 * sigma + 0.5))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    num = cv2.sepFilter2D(np.asarray(values, np.float64) * m, -1, k, k, borderType=cv2.BORDER_REPLICATE)
    den = cv2.sepFilter2D(m, -1, k, k, borderType=cv2.BORDER_REPLICATE)
    return np.where(m > 0, num / np.maximum(den, 1e-6), 0.0)


def detail_occlusion(displacement_rate: np.ndarray, mask: np.ndarray, cavity: float, sigma: float) -> np.ndarray:
    """(R, R) share of the light a texel receives because of the details: 1 + cavity x (r_d -
    blur(r_d)) in mm, within DETAIL_OCCLUSION_RANGE, 1 outside the layout. A texel below its
    surroundings (a crease) is darker, as ambient occlusion makes it: the DRN's shading model
    when it was trained with a cavity term (`DRN.config["cavity"]`, per mm)."""
    r = np.asarray(displacement_rate, np.float64)
    if r.ndim == 3 and r.shape[2] == 1:
        r = r[..., 0]
    m = np.asarray(mask, bool)
    if r.ndim != 2 or m.shape != r.shape:
        raise ValueError(f"displacement_rate (R, R) and mask (R, R) must agree; got {r.shape} and {m.shape}.")
    if not np.isfinite(r[m]).all():
        raise ValueError("displacement_rate contains NaN or infinite values.")
    if not (np.isfinite(cavity) and cavity >= 0 and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"cavity must be >= 0 and sigma > 0, got {cavity} and {sigma}.")
    r = np.where(m, r, 0.0)
    relative_mm = (r - masked_gaussian_blur(r, m, sigma)) * 1000.0
    out = np.clip(1.0 + cavity * relative_mm, *DETAIL_OCCLUSION_RANGE)
    return np.where(m, out, 1.0).astype(np.float32)
