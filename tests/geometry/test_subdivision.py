"""Loop subdivision as linear operators (facelift.geometry.subdivision)."""

import numpy as np
import pytest

from facelift.geometry.subdivision import loop_subdivision_matrix


def test_loop_operator_rows_sum_to_one_and_sizes(synthetic_model):
    m = synthetic_model
    F = len(m.triangles)
    S, tris, mid = loop_subdivision_matrix(m.triangles, m.n_vertices, 2)
    n_edges = 3 * 20 * 20 + 2 * 20  # 21 x 21 grid with one diagonal per cell
    n1 = m.n_vertices + n_edges
    assert S.shape[1] == m.n_vertices and S.shape == mid.shape
    assert S.shape[0] > n1 and tris.shape == (16 * F, 3) and tris.dtype == np.int32
    np.testing.assert_allclose(np.asarray(S.sum(1)).ravel(), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(mid.sum(1)).ravel(), 1.0, atol=1e-12)
    S1, tris1, mid1 = loop_subdivision_matrix(m.triangles, m.n_vertices, 1)
    assert S1.shape == (n1, m.n_vertices)
    new = mid1[m.n_vertices:].toarray()
    assert np.all(np.sort(new, 1)[:, -2:] == 0.5) and np.all((new > 0).sum(1) == 2)
    S0, tris0, _ = loop_subdivision_matrix(m.triangles, m.n_vertices, 0)
    assert np.array_equal(S0.toarray(), np.eye(m.n_vertices)) and np.array_equal(tris0, m.triangles)


def test_loop_matches_trimesh_on_closed_mesh():
    trimesh = pytest.importorskip("trimesh")
    from scipy.spatial import cKDTree

    sphere = trimesh.creation.icosphere(subdivisions=1)
    S, tris, _ = loop_subdivision_matrix(sphere.faces, len(sphere.vertices), 2)
    ref_v, ref_f = trimesh.remesh.subdivide_loop(sphere.vertices, sphere.faces, iterations=2)
    d, _ = cKDTree(ref_v).query(S @ sphere.vertices)
    assert len(ref_v) == S.shape[0] and len(ref_f) == len(tris)
    assert d.max() < 1e-12


def test_loop_keeps_sphere_round_and_converges():
    trimesh = pytest.importorskip("trimesh")
    sphere = trimesh.creation.icosphere(subdivisions=1)
    V = sphere.vertices
    spreads = []
    for levels in (1, 2, 3, 4):
        S, tris, _ = loop_subdivision_matrix(sphere.faces, len(V), levels)
        r = np.linalg.norm(S @ V, axis=1)
        spreads.append(r.std() / r.mean())
        sub = trimesh.Trimesh(S @ V, tris, process=False)
        assert sub.is_winding_consistent and sub.is_watertight
        assert np.all(np.sum(sub.face_normals * sub.triangles_center, 1) > 0)  # still outward
    assert spreads[-1] < 0.005
    # base vertices move less and less: they converge to the limit surface
    S3 = loop_subdivision_matrix(sphere.faces, len(V), 3).operator
    S4 = loop_subdivision_matrix(sphere.faces, len(V), 4).operator
    S5 = loop_subdivision_matrix(sphere.faces, len(V), 5).operator
    n = len(V)
    step4 = np.abs((S4 @ V)[:n] - (S3 @ V)[:n]).max()
    step5 = np.abs((S5 @ V)[:n] - (S4 @ V)[:n]).max()
    assert step5 < 0.5 * step4


def test_loop_planar_mesh_stays_planar_and_boundary_follows_boundary(synthetic_model):
    m = synthetic_model
    rng = np.random.default_rng(1)
    V = np.concatenate([m.uv + rng.normal(scale=0.003, size=m.uv.shape), np.zeros((m.n_vertices, 1))], 1)
    S, tris, mid = loop_subdivision_matrix(m.triangles, m.n_vertices, 2)
    P = S @ V
    assert np.abs(P[:, 2]).max() == 0
    assert P[:, :2].min() >= V[:, :2].min() - 1e-12 and P[:, :2].max() <= V[:, :2].max() + 1e-12
    # boundary vertices of the subdivided mesh depend on base boundary vertices only
    idx = np.arange(m.n_vertices).reshape(21, 21)
    base_boundary = np.zeros(m.n_vertices, bool)
    base_boundary[np.concatenate([idx[0], idx[-1], idx[:, 0], idx[:, -1]])] = True
    uv_sub = mid @ m.uv
    on_edge = (np.isclose(uv_sub, 0.05) | np.isclose(uv_sub, 0.95)).any(1)
    rows = S[np.flatnonzero(on_edge)]
    assert np.all(base_boundary[rows.indices])
    # straight boundary sides stay straight (the corners are cut: no corner rule)
    flat = np.concatenate([m.uv, np.zeros((m.n_vertices, 1))], 1)
    Q = S @ flat
    left = np.isclose(uv_sub[:, 0], 0.05) & (uv_sub[:, 1] > 0.1) & (uv_sub[:, 1] < 0.9)
    np.testing.assert_allclose(Q[left, 0], 0.05, atol=1e-12)


def test_loop_errors():
    with pytest.raises(ValueError, match="triangles must be an integer array"):
        loop_subdivision_matrix(np.zeros((3, 2), int), 5, 1)
    with pytest.raises(ValueError, match="outside the 3 vertices"):
        loop_subdivision_matrix(np.array([[0, 1, 3]]), 3, 1)
    with pytest.raises(ValueError, match="levels must be a non-negative integer"):
        loop_subdivision_matrix(np.array([[0, 1, 2]]), 3, -1)
