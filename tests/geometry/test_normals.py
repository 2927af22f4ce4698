"""The one normals module (facelift.geometry.normals) against the three computations it replaces."""

from pathlib import Path

import numpy as np
import pytest

from facelift.face_model import FaceModel
from facelift.geometry.normals import face_normals, vertex_normals
from facelift.mesh import DenseMeshBuilder
from facelift.topology import face_normals as old_face_normals
from facelift.unwrap import vertex_normals as old_vertex_normals
from facelift.uv_layout import _local_frames

REAL_MODEL = Path(__file__).resolve().parents[2] / "checkpoints" / "face_model.safetensors"


def _models(synthetic_model):
    out = [synthetic_model]
    if REAL_MODEL.is_file():
        out.append(FaceModel.load(REAL_MODEL))
    return out


def test_equals_the_old_normals_on_the_base_meshes(synthetic_model):
    rng = np.random.default_rng(0)
    for m in _models(synthetic_model):
        for v in (m.mean_shape, m.shape(rng.normal(size=m.n_shape))):
            np.testing.assert_array_equal(vertex_normals(v, m.triangles), old_vertex_normals(v, m.triangles))
            np.testing.assert_array_equal(face_normals(v, m.triangles), old_face_normals(v, m.triangles))
            _, area = _local_frames(v, m.triangles.astype(np.int64))
            np.testing.assert_array_equal(0.5 * np.linalg.norm(face_normals(v, m.triangles), axis=1), area)


@pytest.mark.parametrize("details", [False, True])
def test_within_float32_of_the_dense_mesh_normals(synthetic_model, details):
    for m in _models(synthetic_model):
        builder = DenseMeshBuilder(m, resolution=256, subdivisions=2)
        p = builder._sample @ (builder._operator @ m.mean_shape)
        if details:  # a displaced surface: a 1 mm ripple along the normals
            n = builder._normals(p)
            p = p + (0.001 * np.sin(np.arange(len(p)) / 7.0)).astype(np.float32)[:, None] * n
        old = builder._normals(p)
        new = vertex_normals(p, builder.faces)
        assert new.dtype == old.dtype == np.float32
        np.testing.assert_allclose(new, old, rtol=0, atol=5e-7)
