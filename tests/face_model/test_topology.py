from pathlib import Path

import numpy as np
import pytest

from facelift.face_model.topology import (
    boundary_loops,
    fill_hole_strip,
    is_consistently_oriented,
    mediapipe_triangles,
    mesh_report,
    mirror_indices,
    orient_consistently,
    triangles_from_edges,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def face_model_file():
    path = REPO / "checkpoints" / "face_model.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} not built (training/build_face_model.py)")
    return path


def test_mediapipe_triangles_count_and_manifold():
    tris = mediapipe_triangles()
    assert tris.shape == (898, 3) and tris.dtype == np.int32
    rep = mesh_report(tris, 468)
    assert rep["vertices_used"] == 468
    assert rep["max_faces_per_edge"] == 2
    assert rep["consistently_oriented"]
    # a disc: one boundary loop (the face outline), Euler characteristic 1
    assert rep["euler"] == 1 and rep["boundary_loops"] == 1
    assert len(np.unique(np.sort(tris, 1), axis=0)) == 898


def test_triangles_cover_mediapipe_edges():
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    ours = {tuple(sorted(e)) for t in mediapipe_triangles() for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    assert {tuple(sorted(e)) for e in FACEMESH_TESSELATION} <= ours


def test_winding_faces_plus_z(face_model_file):
    from facelift.face_model import FaceModel
    from facelift.geometry.normals import face_normals

    mean = FaceModel.load(face_model_file).mean_shape
    tris = mediapipe_triangles()
    n = face_normals(mean, tris)
    assert n[:, 2].sum() > 0 and (n[:, 2] > 0).mean() > 0.95
    assert np.array_equal(mediapipe_triangles(mean), tris)
    flipped = mean * np.array([-1, 1, -1])  # turned to face -Z: the other winding
    assert np.array_equal(mediapipe_triangles(flipped), tris[:, [0, 2, 1]])


def test_triangles_from_edges_drops_empty_cycles():
    # a pyramid over a split square: (4, 0, 2) is a 3-cycle but not a face
    quad_pyramid = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 0), (4, 1), (4, 2), (4, 3), (0, 2)]
    tris = triangles_from_edges(quad_pyramid)
    assert len(tris) == 6 and mesh_report(tris, 5)["max_faces_per_edge"] == 2


def test_orient_consistently_fixes_flipped():
    grid = np.array([[0, 1, 4], [0, 4, 3], [1, 2, 5], [1, 5, 4]])
    scrambled = grid.copy()
    scrambled[[1, 3]] = scrambled[[1, 3]][:, [0, 2, 1]]
    assert not is_consistently_oriented(scrambled)
    fixed = orient_consistently(scrambled)
    assert is_consistently_oriented(fixed)
    assert len(boundary_loops(fixed)) == 1


def test_fill_hole_strip_counts():
    loop = list(range(10))
    assert len(fill_hole_strip(loop, 0, 5, 2)) == 8
    assert len(fill_hole_strip(loop, 0, (3, 7), 2)) == 5


def test_mirror_is_involution(face_model_file):
    from facelift.face_model import FaceModel

    model = FaceModel.load(face_model_file)
    m = mirror_indices(model.mean_shape)
    assert np.array_equal(m[m], np.arange(468))
    assert np.array_equal(m, model.mirror)
    # known MediaPipe pairs: outer/inner eye corners, lip corners; nose tip, chin on the midline
    assert m[33] == 263 and m[133] == 362 and m[61] == 291 and m[78] == 308
    assert m[1] == 1 and m[152] == 152 and m[10] == 10
    mid = np.flatnonzero(m == np.arange(468))
    assert np.abs(model.mean_shape[mid, 0]).max() < 1e-6
    # the vertex map carries the mesh onto itself, apart from a few quads that MediaPipe
    # split along different diagonals on the two sides
    tris = {tuple(sorted(t)) for t in model.triangles}
    same = sum(tuple(sorted(m[t])) in tris for t in model.triangles)
    assert same >= 0.98 * len(tris)


def test_mirror_pairs_noisy_symmetric_points():
    rng = np.random.default_rng(1)
    half = rng.uniform(0.2, 1.0, size=(20, 3)) * np.array([1, 5, 5])
    mid = rng.uniform(0, 5, size=(5, 3)) * np.array([0, 1, 1])
    v = np.concatenate([half, half * np.array([-1, 1, 1]), mid, [[3.0, 9.0, 9.0]]])
    v += rng.normal(scale=0.01, size=v.shape)
    m = mirror_indices(v)
    assert np.array_equal(m[m], np.arange(len(v)))
    assert np.array_equal(m[:20], np.arange(20, 40))
    assert np.array_equal(m[40:], np.arange(40, 46))  # midline and the unpaired vertex: themselves
