from pathlib import Path

import numpy as np
import pytest

from facelift.face_model import FaceModel
from facelift.face_model.uv_layout import compute_uv_layout, layout_distortion

REPO = Path(__file__).resolve().parents[2]

BOUNDS = {"lscm": (1.2, 1.6), "cylindrical": (1.6, 1.6)}  # (angle_mean, area_mean) upper bounds


@pytest.fixture(scope="module")
def shipped():
    path = REPO / "checkpoints" / "face_model.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} not built (training/build_face_model.py)")
    return FaceModel.load(path)


def check_layout(uv, mirror, margin):
    assert uv.dtype == np.float32 and uv.shape == (len(mirror), 2)
    assert uv.min() >= margin - 1e-6 and uv.max() <= 1 - margin + 1e-6
    # uniform scale, centred: the longer side spans [margin, 1 - margin]
    span = uv.max(0) - uv.min(0)
    assert span.max() == pytest.approx(1 - 2 * margin, abs=1e-5)
    assert np.allclose(uv.max(0) + uv.min(0), 1.0, atol=1e-5)
    assert np.allclose(uv[:, 0], 1 - uv[mirror, 0], atol=1e-6)
    assert np.array_equal(uv[:, 1], uv[mirror, 1])
    assert np.all(uv[mirror == np.arange(len(mirror)), 0] == 0.5)


@pytest.mark.parametrize("method", ["lscm", "cylindrical"])
def test_shipped_layout(shipped, method):
    m = shipped
    uv = compute_uv_layout(m.mean_shape, m.triangles, m.mirror, method=method, margin=0.02)
    check_layout(uv, m.mirror, 0.02)
    d = layout_distortion(m.mean_shape, m.triangles, uv)
    assert d["flipped"] == 0
    assert d["angle_mean"] < BOUNDS[method][0] and d["area_mean"] < BOUNDS[method][1]
    assert d["coverage"] > 0.4
    # u grows with X, v with Y (ARCHITECTURE.md)
    assert np.corrcoef(uv[:, 0], m.mean_shape[:, 0])[0, 1] > 0.9
    assert np.corrcoef(uv[:, 1], m.mean_shape[:, 1])[0, 1] > 0.9


def test_shipped_model_uses_lscm(shipped):
    assert np.allclose(shipped.uv, compute_uv_layout(shipped.mean_shape, shipped.triangles, shipped.mirror),
                       atol=1e-6)
    assert shipped.config["uv_method"] == "lscm"
    assert shipped.config["uv_distortion"]["lscm"]["flipped"] == 0


def test_synthetic_layout(synthetic_model):
    # (the cylinder folds over near the poles of this 140-degree-tall ellipsoid, so LSCM only)
    m = synthetic_model
    uv = compute_uv_layout(m.mean_shape, m.triangles, m.mirror, method="lscm", margin=0.05)
    check_layout(uv, m.mirror, 0.05)
    d = layout_distortion(m.mean_shape, m.triangles, uv)
    assert d["flipped"] == 0
    assert d["angle_mean"] < 1.3 and d["area_mean"] < 1.6


def test_lscm_is_conformal_on_a_plane():
    # a flat, symmetric, irregular patch: LSCM reproduces it up to similarity exactly
    g = np.linspace(-1, 1, 7)
    x, y = np.meshgrid(g, g)
    x = x * (1 + 0.2 * y)
    v = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], -1)
    idx = np.arange(49).reshape(7, 7)
    tris = np.array([t for r in range(6) for c in range(6) for t in
                     ([idx[r, c], idx[r, c + 1], idx[r + 1, c + 1]], [idx[r, c], idx[r + 1, c + 1], idx[r + 1, c]])])
    mirror = idx[:, ::-1].ravel()
    uv = compute_uv_layout(v, tris, mirror)
    d = layout_distortion(v, tris, uv)
    assert d["angle_mean"] < 1.001 and d["area_mean"] < 1.001 and d["flipped"] == 0


def test_distortion_detects_flips():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float)
    tri = np.array([[0, 1, 2]])
    assert layout_distortion(v, tri, v[:, :2])["flipped"] == 0
    assert layout_distortion(v, tri, v[:, :2] * np.array([-1, 1]))["flipped"] == 1


def test_unknown_method(synthetic_model):
    m = synthetic_model
    with pytest.raises(ValueError, match="unknown UV method"):
        compute_uv_layout(m.mean_shape, m.triangles, m.mirror, method="spherical")
