"""The one UV rasteriser (facelift.geometry.rasterize) against the two it replaces."""

from pathlib import Path

import numpy as np
import pytest

from facelift.face_model import FaceModel
from facelift.face_model import rasterize_uv as old_loop
from facelift.geometry.rasterize import rasterize_uv
from facelift.geometry.subdivision import loop_subdivision_matrix
from facelift.mesh import rasterize_uv_vectorized as old_vectorized

REAL_MODEL = Path(__file__).resolve().parents[2] / "checkpoints" / "face_model.safetensors"


def _meshes(synthetic_model):
    out = [("synthetic", synthetic_model)]
    if REAL_MODEL.is_file():
        out.append(("shipped", FaceModel.load(REAL_MODEL)))
    return out


def test_equals_both_old_rasterisers(synthetic_model):
    for name, m in _meshes(synthetic_model):
        for levels, R in ((0, 32), (0, 64), (0, 128), (0, 256), (0, 512), (1, 64), (2, 256)):
            sub = loop_subdivision_matrix(m.triangles, m.n_vertices, levels)
            uv = sub.midpoint @ m.uv.astype(np.float64)
            tri, bary = rasterize_uv(uv, sub.triangles, R)
            for old in (old_loop, old_vectorized):
                ref_tri, ref_bary = old(uv, sub.triangles, R)
                np.testing.assert_array_equal(tri, ref_tri, err_msg=f"{name} {levels} {R} {old.__name__}")
                np.testing.assert_array_equal(bary, ref_bary, err_msg=f"{name} {levels} {R} {old.__name__}")
            if levels == 0:  # FaceModel.texel_map rasterised the float32 uv with float32 arithmetic
                ref_tri, ref_bary = old_loop(m.uv, m.triangles, R)
                np.testing.assert_array_equal(tri, ref_tri)
                np.testing.assert_allclose(bary, ref_bary, rtol=0, atol=2e-5)
