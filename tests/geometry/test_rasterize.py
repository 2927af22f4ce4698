"""The one UV rasteriser (facelift.geometry.rasterize).

It replaced two: a per-triangle loop (the face model's texel maps, kept below as the reference) and
a vectorised copy (the dense mesh). The new one equals the loop exactly on float64 uv, on the
shipped face model and its Loop-subdivided layout, where the mesh used it.
"""

from pathlib import Path

import numpy as np
import pytest

from facelift.face_model import FaceModel
from facelift.geometry.rasterize import rasterize_uv, uv_to_texel
from facelift.geometry.subdivision import loop_subdivision_matrix

REAL_MODEL = Path(__file__).resolve().parents[2] / "checkpoints" / "face_model.safetensors"


def reference_rasterize(uv: np.ndarray, triangles: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-triangle loop FaceLift used for the face model's texel maps until the rasterisers
    were unified (then `face_model.rasterize_uv`), kept as it was: the reference."""
    R = resolution
    tri_map = np.full((R, R), -1, np.int32)
    bary_map = np.zeros((R, R, 3), np.float32)
    # texel centre (j, i) -> (u, v); work in texel units: px = u*R - 0.5, py = (1-v)*R - 0.5
    px = uv[:, 0] * R - 0.5
    py = (1.0 - uv[:, 1]) * R - 0.5
    for f, (a, b, c) in enumerate(triangles):
        xs = np.array([px[a], px[b], px[c]])
        ys = np.array([py[a], py[b], py[c]])
        x0, x1 = int(np.floor(xs.min())), int(np.ceil(xs.max()))
        y0, y1 = int(np.floor(ys.min())), int(np.ceil(ys.max()))
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, R - 1), min(y1, R - 1)
        if x1 < x0 or y1 < y0:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
        det = (ys[1] - ys[2]) * (xs[0] - xs[2]) + (xs[2] - xs[1]) * (ys[0] - ys[2])
        if abs(det) < 1e-12:
            continue
        l0 = ((ys[1] - ys[2]) * (gx - xs[2]) + (xs[2] - xs[1]) * (gy - ys[2])) / det
        l1 = ((ys[2] - ys[0]) * (gx - xs[2]) + (xs[0] - xs[2]) * (gy - ys[2])) / det
        l2 = 1.0 - l0 - l1
        inside = (l0 >= -1e-6) & (l1 >= -1e-6) & (l2 >= -1e-6)
        if not inside.any():
            continue
        yy, xx = gy[inside], gx[inside]
        tri_map[yy, xx] = f
        bary_map[yy, xx] = np.stack([l0[inside], l1[inside], l2[inside]], -1)
    return tri_map, bary_map


def _meshes(synthetic_model):
    out = [("synthetic", synthetic_model)]
    if REAL_MODEL.is_file():
        out.append(("shipped", FaceModel.load(REAL_MODEL)))
    return out


@pytest.mark.slow
def test_equals_the_reference_loop(synthetic_model):
    for name, m in _meshes(synthetic_model):
        for levels, R in ((0, 32), (0, 64), (0, 128), (0, 256), (0, 512), (1, 64), (2, 256)):
            sub = loop_subdivision_matrix(m.triangles, m.n_vertices, levels)
            uv = sub.midpoint @ m.uv.astype(np.float64)
            tri, bary = rasterize_uv(uv, sub.triangles, R)
            ref_tri, ref_bary = reference_rasterize(uv, sub.triangles, R)
            np.testing.assert_array_equal(tri, ref_tri, err_msg=f"{name} {levels} {R}")
            np.testing.assert_array_equal(bary, ref_bary, err_msg=f"{name} {levels} {R}")
            if levels == 0:  # the loop on the face model's float32 uv computed in float32
                ref_tri, ref_bary = reference_rasterize(m.uv, m.triangles, R)
                np.testing.assert_array_equal(tri, ref_tri)
                np.testing.assert_allclose(bary, ref_bary, rtol=0, atol=2e-5)


def test_matches_reference_on_surface_points(synthetic_model):
    """(from test_mesh.py, where the vectorised copy was checked against the loop)"""
    m = synthetic_model
    S, tris, mid = loop_subdivision_matrix(m.triangles, m.n_vertices, 1)
    uv = mid @ m.uv.astype(np.float64)
    ref_tri, ref_bary = reference_rasterize(uv, tris, 64)
    tri, bary = rasterize_uv(uv, tris, 64)
    np.testing.assert_array_equal(tri >= 0, ref_tri >= 0)
    # texels on shared edges may pick either triangle, but the surface point is the same

    def pts(t, b):
        return (uv[tris[t[t >= 0]]] * b[t >= 0][..., None]).sum(1)

    np.testing.assert_allclose(pts(tri, bary), pts(ref_tri, ref_bary), atol=1e-6)


def test_texel_centres_are_recovered_and_ties_go_to_the_highest_triangle():
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    quad = np.array([[0, 1, 2], [0, 2, 3]])  # the diagonal runs through texel centres
    tri, bary = rasterize_uv(uv, quad, 8)
    assert (tri >= 0).all()
    diagonal = np.arange(8), 7 - np.arange(8)  # u = v: the centres on the shared edge
    assert (tri[diagonal] == 1).all()  # go to triangle 1, as in the reference
    np.testing.assert_array_equal(tri, reference_rasterize(uv, quad, 8)[0])
    i, j = np.mgrid[:8, :8]
    centre = np.stack([(j + 0.5) / 8, 1 - (i + 0.5) / 8], -1)
    np.testing.assert_allclose((uv[quad[tri]] * bary[..., None]).sum(2), centre, atol=1e-6)
    empty_tri, empty_bary = rasterize_uv(uv, np.zeros((0, 3), int), 4)
    assert (empty_tri == -1).all() and (empty_bary == 0).all()


def test_uv_to_texel_puts_the_corners_half_a_texel_outside_the_corner_texels_centres():
    R = 8
    uv = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [(2 + 0.5) / R, 1 - (5 + 0.5) / R]])
    assert np.allclose(uv_to_texel(uv, R), [[-0.5, -0.5], [R - 0.5, R - 0.5], [R / 2 - 0.5, R / 2 - 0.5], [2, 5]])
    assert uv_to_texel(uv.reshape(2, 2, 2), R).shape == (2, 2, 2)  # any leading shape
    assert uv_to_texel(uv.astype(np.float32), R).dtype == np.float64
