"""evaluate_reconstruction on the shipped example with stand-in FANs whose answer is known."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from facelift.evaluation.runner import METRICS, collect_images, evaluate_reconstruction, image_occlusion

ASTRONAUT = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def rec(pipeline):
    return pipeline.reconstruct(ASTRONAUT)


def _with_fan(monkeypatch, pipeline, fn):
    """Every network replaced by `fn` of the texture, without a gate."""
    def run_unet(net, sources, with_gate=False):
        out = fn(sources["texture"])
        return (out, None) if with_gate else out

    monkeypatch.setattr(pipeline, "_run_unet", run_unet, raising=False)


@pytest.mark.slow
@pytest.mark.integration
def test_a_fan_that_copies_the_texture_scores_ratio_one(monkeypatch, pipeline, rec):
    _with_fan(monkeypatch, pipeline, lambda t: t.copy())
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0))
    for key in ("occlusion_fan", "occlusion_fan_sunglasses", "occlusion_fan_hand", "occlusion_fan_hair",
                "occlusion_lowpass_fan", "lighting_fan"):
        assert m[key] == pytest.approx(1.0, abs=1e-6), key


@pytest.mark.slow
@pytest.mark.integration
def test_a_fan_that_ignores_its_input_scores_ratio_zero(monkeypatch, pipeline, rec):
    _with_fan(monkeypatch, pipeline, lambda t: np.full_like(t, 0.5))
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0))
    assert m["occlusion_fan"] == 0.0 and m["lighting_fan"] == 0.0
    assert m["occlusion_lowpass_fan"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
@pytest.mark.integration
def test_a_pca_albedo_that_ignores_its_input_scores_ratio_zero(monkeypatch, pipeline, rec):
    real = pipeline._low_frequency

    def constant_albedo(maps):
        low, source = real(maps)
        return dataclasses.replace(low, albedo=np.full_like(low.albedo, 0.5)), source

    monkeypatch.setattr(pipeline, "_low_frequency", constant_albedo)
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0))
    assert m["occlusion_pca"] == pytest.approx(0.0, abs=1e-6)
    assert m["occlusion_lowpass_pca"] == pytest.approx(0.0, abs=1e-6)
    assert m["lighting_pca"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
@pytest.mark.integration
def test_fidelity_is_zero_when_the_render_reproduces_the_photo(monkeypatch, pipeline, rec):
    """An albedo equal to texture / shading of the smooth surface (the FAN's job: the renders
    with details use it x the smooth/detailed shading ratio) re-renders the photo exactly on
    visible skin."""
    from facelift.evaluation.runner import dense_normal_map
    from facelift.geometry.sh import irradiance

    shading = irradiance(dense_normal_map(rec, details=False), rec.sh)
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


# ---- photo-level metrics: the whole pipeline rerun on edited photos ----------------------

def _counting_reconstruct(monkeypatch, pipeline):
    calls = []
    real = pipeline.reconstruct

    def counted(image, face_index=0):
        calls.append(image)
        return real(image, face_index=face_index)

    monkeypatch.setattr(pipeline, "reconstruct", counted)
    return calls


def _constant_pca(monkeypatch, pipeline, value=0.5):
    real = pipeline._low_frequency

    def constant_albedo(maps):
        low, source = real(maps)
        return dataclasses.replace(low, albedo=np.full_like(low.albedo, value)), source

    monkeypatch.setattr(pipeline, "_low_frequency", constant_albedo)


@pytest.mark.slow
@pytest.mark.integration
def test_photo_metrics_of_a_copying_fan_are_one_and_of_a_constant_pca_zero(monkeypatch, pipeline):
    """FAN = texture: the albedo changes exactly as the texture does under every photo edit and
    occluder (ratio 1) and keeps all its detail (sharpness 1); a constant PCA albedo ignores them
    all (ratio 0) and has no detail (sharpness 0)."""
    from facelift.evaluation.image_occluders import KINDS
    from facelift.evaluation.perturbations import PERTURBATIONS

    _with_fan(monkeypatch, pipeline, lambda t: t.copy())
    _constant_pca(monkeypatch, pipeline)
    rec = pipeline.reconstruct(ASTRONAUT)
    calls = _counting_reconstruct(monkeypatch, pipeline)
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0))
    assert len(calls) == len(KINDS) + len(PERTURBATIONS)  # one rerun per occluder and per edit
    assert m["image_occlusion_lost"] == 0 and m["photo_consistency_lost"] == 0
    for kind in KINDS:
        assert m[f"image_occlusion_texels_{kind}"] > 200, kind
        assert m[f"image_occlusion_fan_{kind}"] == pytest.approx(1.0, abs=1e-9), kind
        assert m[f"image_occlusion_pca_{kind}"] == pytest.approx(0.0, abs=1e-9), kind
    for name in PERTURBATIONS:
        assert m[f"photo_consistency_fan_{name}"] == pytest.approx(1.0, abs=1e-9), name
        assert m[f"photo_consistency_pca_{name}"] == pytest.approx(0.0, abs=1e-9), name
    assert m["image_occlusion_fan"] == pytest.approx(1.0) and m["photo_consistency_fan"] == pytest.approx(1.0)
    assert m["image_occlusion_pca"] == 0.0 and m["photo_consistency_pca"] == 0.0
    assert m["sharpness_fan"] == pytest.approx(1.0) and m["sharpness_corr_fan"] == pytest.approx(1.0)
    assert m["sharpness_pca"] == 0.0 and m["sharpness_texels"] > 1000
    assert m["seconds_image_occlusion"] > 0 and m["seconds_photo_consistency"] > 0


@pytest.mark.slow
@pytest.mark.integration
def test_photo_metrics_of_a_half_copying_fan_are_one_half(monkeypatch, pipeline):
    """FAN = 0.5 x texture + 0.25 follows every change by half: ratio 0.5. Its relative detail
    0.5 (L - G) / (0.5 G + 0.25) is the texture's damped by a factor that varies (smoothly) with
    the local mean G: sharpness between 0 and 1, nearly (not exactly) perfect correlation."""
    _with_fan(monkeypatch, pipeline, lambda t: 0.5 * t + 0.25)
    rec = pipeline.reconstruct(ASTRONAUT)
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(1))
    assert m["image_occlusion_fan"] == pytest.approx(0.5, abs=1e-6)
    assert m["photo_consistency_fan"] == pytest.approx(0.5, abs=1e-6)
    assert 0.2 < m["sharpness_fan"] < 0.8 and 0.95 < m["sharpness_corr_fan"] < 1


@pytest.mark.slow
@pytest.mark.integration
def test_photo_metrics_switched_off_rerun_nothing(monkeypatch, pipeline, rec):
    calls = _counting_reconstruct(monkeypatch, pipeline)
    m = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0), photo_metrics=False)
    assert calls == []
    assert m["image_occlusion_fan"] is None and m["photo_consistency_pca"] is None
    assert m["seconds_photo_consistency"] is None
    assert m["sharpness_fan"] is not None  # always on
    on = evaluate_reconstruction(pipeline, rec, rng=np.random.default_rng(0), photo_metrics=True)
    for key in ("l1_fan", "occlusion_fan", "lighting_fan", "sharpness_fan"):  # the switch changes no other figure
        assert on[key] == m[key], key


@pytest.mark.integration
def test_image_occluder_region_is_where_the_occluder_is(pipeline, rec):
    """With the real pipeline: the texels scored for the sunglasses show them (dark) in the
    occluded photo's texture and lie around the eyes; with the FAN and PCA of the shipped weights
    both ratios are finite and positive."""
    from facelift.evaluation.image_occluders import make_image_occluder, occluder_uv_coverage, paste
    from facelift.evaluation.masks import REGIONS, region_mask

    occ = make_image_occluder("sunglasses", rec.image.shape, rec.face.points, np.random.default_rng(0))
    rec1 = pipeline.reconstruct(paste(rec.image, occ))
    region = (occluder_uv_coverage(occ, rec1) > 0.5) & (rec1.visibility > 0.5) & (rec.visibility > 0.5)
    luma = np.array([0.299, 0.587, 0.114])
    assert region.sum() > 500 and np.median((rec1.texture @ luma)[region]) < 0.2 < np.median((rec.texture @ luma)[region])
    model = pipeline.face_model
    eyes = region_mask(model.uv, REGIONS["right_eye"], 256) | region_mask(model.uv, REGIONS["left_eye"], 256)
    assert (region & eyes).sum() > 0.8 * eyes.sum()  # the lenses cover the eyes in UV too
    m = image_occlusion(pipeline, rec, np.random.default_rng(0), kinds=("sunglasses",))
    assert 0 < m["image_occlusion_pca_sunglasses"] and 0 < m["image_occlusion_fan_sunglasses"] < 1.5


@pytest.mark.slow
@pytest.mark.integration
def test_a_face_that_is_lost_in_the_edited_photo_is_not_scored(pipeline, rec):
    from facelift.evaluation.runner import _rerun

    assert _rerun(pipeline, rec, np.full_like(rec.image, 200)) is None  # no face at all
    x0, _, x1, _ = rec.face.box
    moved = np.roll(rec.image, int(0.7 * (x1 - x0)), axis=1)  # the same face, somewhere else
    assert _rerun(pipeline, rec, moved) is None
    assert _rerun(pipeline, rec, rec.image.copy()) is not None


@pytest.mark.slow
@pytest.mark.integration
def test_cli_no_photo_metrics_skips_them_and_says_so(tmp_path, capsys):
    import json

    from facelift.cli import main

    out = tmp_path / "e.json"
    assert main(["evaluate", str(ASTRONAUT), "--no-lpips", "--no-photo-metrics", "--json", str(out), "-q"]) == 0
    result = json.loads(out.read_text())
    assert result["config"]["photo_metrics"] is False
    assert result["summary"]["photo_consistency_fan"]["count"] == 0
    assert result["summary"]["sharpness_fan"]["count"] == 1
    assert "photo consistency ratio, FAN" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.integration
def test_detail_metrics_of_a_flat_drn_and_of_a_bumpy_one(monkeypatch, pipeline):
    """No displacement: E_grad is the same with and without it; texel-scale bumps: the
    fine-scale std is their amplitude and E_grad changes."""
    from facelift.evaluation.masks import skin_mask
    from facelift.evaluation.runner import detail_metrics

    real = pipeline._run_unet
    monkeypatch.setattr(pipeline.drn, "detail_gate", None)  # the displacement is the stripes as they are
    for amplitude in (0.0, 5e-4):
        def run_unet(net, sources, amplitude=amplitude, **kwargs):
            if net is pipeline.drn:
                R = sources["texture"].shape[0]
                j = np.arange(R)[None, :].repeat(R, 0)
                return (amplitude * np.where(j % 2 == 0, 1.0, -1.0))[..., None].astype(np.float32)
            return real(net, sources, **kwargs)

        monkeypatch.setattr(pipeline, "_run_unet", run_unet)
        rec = pipeline.reconstruct(ASTRONAUT)
        m = detail_metrics(rec, skin_mask(pipeline.face_model, rec.maps))
        assert m["image_min_side"] == 512
        if amplitude == 0:
            assert m["detail_fine_std_mm"] == pytest.approx(0.0, abs=1e-9)
            assert m["e_grad_ratio"] == pytest.approx(1.0, abs=1e-6)
            assert m["e_grad_smooth_ratio"] == pytest.approx(1.0, abs=1e-6)
        else:
            assert m["detail_fine_std_mm"] == pytest.approx(0.5, rel=0.05)
            assert m["detail_p99_mm"] == pytest.approx(0.5, rel=0.01)
            # stripes the photo does not have: with a detail-free albedo E_grad rises. With the
            # pipeline's albedos it falls: the details' shading and occlusion are divided out of the
            # albedo without details, so that ratio cannot tell details from stripes
            assert m["e_grad_smooth_ratio"] > 1.05
            assert m["e_grad_ratio"] < 1.0


def test_dilate_grows_a_mask_by_a_disk():
    from facelift.evaluation.runner import _dilate

    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    grown = _dilate(mask, 4)
    yy, xx = np.mgrid[:21, :21]
    r = np.hypot(yy - 10, xx - 10)
    assert grown[r <= 3.5].all() and not grown[r > 4.5].any()
    assert _dilate(mask, 0).sum() == 1


@pytest.mark.slow
@pytest.mark.integration
def test_relief_change_under_an_image_occluder_is_the_displacement_it_adds(monkeypatch, pipeline, rec):
    """A DRN that returns 0.2 mm everywhere on the clean photo and 0.5 mm on the edited one: the
    relief under the occluder is 0.5 mm and the relief added around it 0.3 mm; the same relief on
    both: none added."""
    real = pipeline._run_unet
    monkeypatch.setattr(pipeline.drn, "detail_gate", None)
    for edited_mm, change in ((0.5, 0.3), (0.2, 0.0)):
        calls = []

        def run_unet(net, sources, edited_mm=edited_mm, calls=calls, **kwargs):
            if net is pipeline.drn:
                calls.append(1)
                R = sources["texture"].shape[0]
                return np.full((R, R, 1), (0.2 if len(calls) == 1 else edited_mm) * 1e-3, np.float32)
            return real(net, sources, **kwargs)

        monkeypatch.setattr(pipeline, "_run_unet", run_unet)
        clean = pipeline.reconstruct(ASTRONAUT)
        m = image_occlusion(pipeline, clean, np.random.default_rng(0), kinds=("eyeglasses",))
        assert m["image_occlusion_texels_eyeglasses"] >= 16
        assert m["image_occlusion_displacement_mm_eyeglasses"] == pytest.approx(edited_mm, rel=1e-5)
        assert m["image_occlusion_relief_added_mm_eyeglasses"] == pytest.approx(change, abs=1e-6)
