"""Face and vertex normals (facelift.geometry.normals).

They replaced three computations: `topology.face_normals`, `unwrap.vertex_normals` (the same
arithmetic, moved) and the dense mesh's float32 sum through a sparse incidence matrix (kept below
as a reference: the new normals are within float32 rounding of it).
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from facelift.face_model import FaceModel
from facelift.geometry.normals import face_normals, vertex_incidence, vertex_normals
from facelift.mesh import DenseMeshBuilder

REAL_MODEL = Path(__file__).resolve().parents[2] / "checkpoints" / "face_model.safetensors"


def _models(synthetic_model):
    out = [synthetic_model]
    if REAL_MODEL.is_file():
        out.append(FaceModel.load(REAL_MODEL))
    return out


def reference_dense_normals(p: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """How DenseMeshBuilder computed its normals until the normals were unified: in float32, the
    face cross products summed per vertex through a sparse incidence matrix."""
    T, m = len(faces), len(p)
    incidence = sp.csr_matrix((np.ones(3 * T, np.float32), (faces.ravel(), np.repeat(np.arange(T), 3))),
                              shape=(m, T))
    p0 = p[faces[:, 0]]
    n = incidence @ np.cross(p[faces[:, 1]] - p0, p[faces[:, 2]] - p0)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    return n


def test_vertex_normals_of_sphere_point_outward():
    trimesh = pytest.importorskip("trimesh")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=2.0)
    n = vertex_normals(sphere.vertices, sphere.faces)
    radial = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    assert n.shape == sphere.vertices.shape and n.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-6)
    assert np.min(np.sum(n * radial, 1)) > 0.999
    flipped = vertex_normals(sphere.vertices, sphere.faces[:, ::-1])
    assert np.max(np.sum(flipped * radial, 1)) < -0.999


def test_vertex_normals_with_an_incidence_matrix_are_the_same():
    trimesh = pytest.importorskip("trimesh")
    sphere = trimesh.creation.icosphere(subdivisions=2)
    v = sphere.vertices * np.random.default_rng(0).uniform(0.8, 1.2, (len(sphere.vertices), 1))
    v = np.vstack([v, [[5.0, 5.0, 5.0]]])  # on no triangle: a zero normal either way
    inc = vertex_incidence(sphere.faces, len(v))
    assert inc.shape == (len(v), len(sphere.faces)) and inc.sum() == sphere.faces.size
    with_inc = vertex_normals(v, sphere.faces, inc)
    np.testing.assert_allclose(with_inc, vertex_normals(v, sphere.faces), atol=1e-6)
    assert not with_inc[-1].any()
    with pytest.raises(ValueError, match="incidence must have shape"):
        vertex_normals(v[:-1], sphere.faces, inc)
    with pytest.raises(ValueError, match="triangles index outside"):
        vertex_incidence(sphere.faces, 10)


def test_vertex_normals_are_area_weighted():
    # vertex 0 on a big triangle facing +Z and a tiny one facing +X
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0.01, 0], [0, 0, 0.01]], float)
    f = np.array([[0, 1, 2], [0, 3, 4]])
    n = vertex_normals(v, f)
    assert n[0, 2] > 0.99 and 0 < n[0, 0] < 0.01
    np.testing.assert_allclose(n[1], [0, 0, 1], atol=1e-7)


def test_vertex_normals_frontal_face_is_plus_z(synthetic_model):
    n = vertex_normals(synthetic_model.mean_shape, synthetic_model.triangles)
    assert np.all(n[:, 2] > 0.2)


def test_vertex_normals_errors():
    with pytest.raises(ValueError, match=r"vertices must have shape \(N, 3\)"):
        vertex_normals(np.zeros((4, 2)), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="triangles must be an integer array"):
        vertex_normals(np.zeros((4, 3)), np.array([[0.0, 1, 2]]))
    with pytest.raises(ValueError, match="outside the 4 vertices"):
        vertex_normals(np.zeros((4, 3)), np.array([[0, 1, 4]]))


def test_vertex_normals_sum_the_face_normals(synthetic_model):
    rng = np.random.default_rng(0)
    for m in _models(synthetic_model):
        v = m.shape(rng.normal(size=m.n_shape))
        fn = face_normals(v, m.triangles)
        assert fn.dtype == np.float64 and fn.shape == (len(m.triangles), 3)
        total = np.zeros((m.n_vertices, 3))
        np.add.at(total, m.triangles.ravel(), np.repeat(fn, 3, axis=0))
        expected = total / np.linalg.norm(total, axis=1, keepdims=True)
        np.testing.assert_allclose(vertex_normals(v, m.triangles), expected, rtol=0, atol=1e-7)
        a = v.astype(np.float64)[m.triangles]
        area = 0.5 * np.linalg.norm(np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]), axis=1)
        np.testing.assert_allclose(0.5 * np.linalg.norm(fn, axis=1), area, rtol=1e-12)


def test_face_normals_errors():
    with pytest.raises(ValueError, match=r"vertices must have shape \(N, 3\)"):
        face_normals(np.zeros((4, 2)), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="outside the 4 vertices"):
        face_normals(np.zeros((4, 3)), np.array([[0, 1, 4]]))


@pytest.mark.parametrize("details", [False, True])
def test_within_float32_of_the_old_dense_mesh_normals(synthetic_model, details):
    for m in _models(synthetic_model):
        builder = DenseMeshBuilder(m, resolution=256, subdivisions=2)
        p = builder._sample @ (builder._operator @ m.mean_shape)
        if details:  # a displaced surface: a 1 mm ripple along the normals
            p = p + (0.001 * np.sin(np.arange(len(p)) / 7.0)).astype(np.float32)[:, None] * \
                reference_dense_normals(p, builder.faces)
        old = reference_dense_normals(p, builder.faces)
        new = vertex_normals(p, builder.faces)
        assert new.dtype == old.dtype == np.float32
        np.testing.assert_allclose(new, old, rtol=0, atol=5e-7)
        np.testing.assert_allclose(builder.build(m.mean_shape, details=False).normals,
                                   reference_dense_normals(builder._sample @ (builder._operator @ m.mean_shape),
                                                           builder.faces), rtol=0, atol=5e-7)
