import json
from pathlib import Path

import numpy as np
import pytest

from facelift.errors import WeightsError
from facelift.face_model import FORMAT_VERSION, FaceModel

REPO = Path(__file__).resolve().parents[2]

SHIPPED = REPO / "checkpoints" / "face_model.safetensors"


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED} not built (training/build_face_model.py)")
    return FaceModel.load(SHIPPED)


def test_round_trip(synthetic_model, tmp_path):
    path = tmp_path / "m.safetensors"
    synthetic_model.save(path)
    loaded = FaceModel.load(path)
    for name in ("mean_shape", "shape_basis", "triangles", "uv", "mirror", "albedo_mean", "albedo_basis"):
        a, b = getattr(synthetic_model, name), getattr(loaded, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert loaded.config["name"] == "synthetic-ellipsoid"
    assert loaded.config["format_version"] == FORMAT_VERSION


def test_corrupted_file_names_it(synthetic_model, tmp_path):
    path = tmp_path / "broken.safetensors"
    synthetic_model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="broken.safetensors"):
        FaceModel.load(path)
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="broken.safetensors"):
        FaceModel.load(path)
    with pytest.raises(WeightsError, match="missing.safetensors"):
        FaceModel.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("value", [-1.0, 0, "bright", float("inf")])
def test_bad_light_brightness_is_refused(synthetic_model, value):
    import dataclasses

    with pytest.raises(WeightsError, match="albedo_light_brightness"):
        dataclasses.replace(synthetic_model, config={"albedo_light_brightness": value})


def test_wrong_format_version(synthetic_model, tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "future.safetensors"
    tensors = {k: np.ascontiguousarray(getattr(synthetic_model, k))
               for k in ("mean_shape", "shape_basis", "triangles", "uv", "mirror", "albedo_mean", "albedo_basis")}
    save_file(tensors, str(path), metadata={"config": json.dumps({"format_version": FORMAT_VERSION + 1})})
    with pytest.raises(WeightsError, match=r"future\.safetensors.*format version"):
        FaceModel.load(path)


def _texel_centres(R):
    i, j = np.mgrid[0:R, 0:R]
    return np.stack([(j + 0.5) / R, 1 - (i + 0.5) / R], -1)


@pytest.mark.parametrize("which", ["synthetic", "shipped"])
def test_texel_map_covers_layout(which, synthetic_model, request):
    model = synthetic_model if which == "synthetic" else request.getfixturevalue("shipped")
    R = 128
    tm = model.texel_map(R)
    assert tm is model.texel_map(R)
    # interpolating the UV coordinates themselves gives back each texel's centre
    got = tm.interpolate(model.uv.astype(np.float32))
    assert np.allclose(got[tm.mask], _texel_centres(R)[tm.mask], atol=1e-4)
    assert np.allclose(tm.bary[tm.mask].sum(-1), 1, atol=1e-5) and tm.bary[tm.mask].min() > -1e-5
    # the covered fraction matches the area of the layout
    t = model.uv[model.triangles].astype(np.float64)
    area = 0.5 * np.abs(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])).sum()
    assert tm.mask.mean() == pytest.approx(area, rel=0.03)


@pytest.mark.parametrize("which", ["synthetic", "shipped"])
def test_flipped_map_is_mirrored_face(which, synthetic_model, request):
    model = synthetic_model if which == "synthetic" else request.getfixturevalue("shipped")
    tm = model.texel_map(128)
    values = model.mean_shape.astype(np.float32)  # any per-vertex signal
    flipped = tm.interpolate(values)[:, ::-1]
    mirrored = tm.interpolate(values[model.mirror])
    both = tm.mask & tm.mask[:, ::-1]
    assert (tm.mask != tm.mask[:, ::-1]).mean() < 0.002
    err = np.abs(flipped[both] - mirrored[both]).max(-1)
    # exact wherever the triangulation is symmetric; quads split along the other diagonal
    # on one side (the synthetic grid, a few MediaPipe quads) differ by their curvature only
    assert err.max() < 1e-3
    if which == "shipped":
        assert (err < 1e-5).mean() > 0.9


def test_shipped_model_conventions(shipped):
    m = shipped
    assert m.n_vertices == 468 and m.triangles.shape == (898, 3)
    assert m.n_shape == m.config["n_shape"] >= 10
    assert np.linalg.norm(m.mean_shape[33] - m.mean_shape[263]) == pytest.approx(0.09, rel=1e-4)
    assert np.allclose(m.mean_shape.mean(0), 0, atol=1e-6)
    assert m.mean_shape[1, 2] > m.mean_shape[234, 2]  # nose tip towards +Z
    assert m.mean_shape[10, 1] > m.mean_shape[152, 1]  # forehead above chin
    assert m.mean_shape[263, 0] > 0  # subject's left eye at +X (image right)
    # basis scaled by std: components ordered, a few mm each, shapes stay plausible
    norms = np.linalg.norm(m.shape_basis.reshape(m.n_shape, -1), axis=1)
    assert np.all(np.diff(norms) <= 1e-6) and 1e-4 < norms[0] < 0.05
    ev = m.config["shape_explained_variance"]
    assert len(ev) == m.n_shape and 0.5 < m.config["shape_explained_variance_total"] <= 1
    # the learned albedo PCA (training/build_albedo_model.py): K components, ordered, skin-like mean
    k = m.n_albedo
    assert k == m.config["n_albedo"] >= 20 and m.albedo_basis.shape == (k, 3, 64, 64)
    assert m.albedo_mean.shape == (3, 64, 64) and 0.2 < float(m.albedo_mean[:, 16:48, 16:48].mean()) < 0.9
    assert 0.3 < m.light_brightness < 3  # learned under the white-light prior
    aev = m.config["albedo_explained_variance"]
    assert len(aev) == k and np.all(np.diff(aev) <= 0) and 0.5 < m.config["albedo_explained_variance_total"] <= 1
    assert np.isfinite(m.albedo_basis).all() and np.linalg.norm(m.albedo_basis[0]) > 0
    assert m.config["n_images_used"] > 9000
    assert SHIPPED.stat().st_size < 20e6
