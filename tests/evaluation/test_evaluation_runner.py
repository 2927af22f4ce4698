"""evaluate_reconstruction on the shipped example with stand-in FANs whose answer is known."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from facelift.evaluation.runner import METRICS, collect_images, evaluate_reconstruction

ASTRONAUT = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def rec(pipeline):
    return pipeline.reconstruct(ASTRONAUT)


def _with_fan(monkeypatch, pipeline, fn):
    monkeypatch.setattr(pipeline, "_run_unet", lambda net, sources: fn(sources["texture"]), raising=False)


def test_a_fan_that_copies_the_texture_scores_ratio_one(monkeypatch, pipeline, rec):
    _with_fan(monkeypatch, pipeline, lambda t: t.copy())
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0))
    for key in ("occlusion_fan", "occlusion_fan_sunglasses", "occlusion_fan_hand", "occlusion_fan_hair",
                "lighting_fan"):
        assert m[key] == pytest.approx(1.0, abs=1e-6), key


def test_a_fan_that_ignores_its_input_scores_ratio_zero(monkeypatch, pipeline, rec):
    _with_fan(monkeypatch, pipeline, lambda t: np.full_like(t, 0.5))
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0))
    assert m["occlusion_fan"] == 0.0 and m["lighting_fan"] == 0.0


def test_a_pca_albedo_that_ignores_its_input_scores_ratio_zero(monkeypatch, pipeline, rec):
    real = pipeline._low_frequency

    def constant_albedo(maps):
        low, source = real(maps)
        return dataclasses.replace(low, albedo=np.full_like(low.albedo, 0.5)), source

    monkeypatch.setattr(pipeline, "_low_frequency", constant_albedo)
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0))
    assert m["occlusion_pca"] == pytest.approx(0.0, abs=1e-6)
    assert m["lighting_pca"] == pytest.approx(0.0, abs=1e-6)


def test_fidelity_is_zero_when_the_render_reproduces_the_photo(monkeypatch, pipeline, rec):
    """An albedo equal to texture / shading re-renders the photo exactly on visible skin."""
    from facelift.evaluation.runner import detail_normal_map
    from facelift.shading import irradiance

    shading = irradiance(detail_normal_map(rec), rec.sh)
    ok = (shading > 0.05).all(-1)
    exact = np.where(ok[..., None], rec.texture / np.where(ok[..., None], shading, 1), 0).astype(np.float32)
    monkeypatch.setattr(rec, "albedo", exact)
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0))
    clipped = (exact * shading > 1).any(-1) | ~ok  # clipped or unlit texels are the only residue
    assert m["l1_fan"] < 0.01 + clipped.mean()
    assert m["l1_pca"] > m["l1_fan"] and m["l1_ratio"] < 1
    assert set(k for k, _ in METRICS if k != "seconds") <= set(m)
    assert m["nme"] is None and m["completion_fan"] is None  # no ground truth; a frontal photo


def test_collect_images_limit_is_evenly_spaced(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        for k in range(5):
            (tmp_path / sub / f"{k}.jpg").write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("")
    assert len(collect_images(tmp_path)) == 10
    four = collect_images(tmp_path, limit=4)
    assert len(four) == 4 and {p.parent.name for p in four} == {"a", "b"}
