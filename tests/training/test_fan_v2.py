"""FAN v2 (facelift.training.fan_v2, facelift.training.occlusion): the map operations on known
cases, the occluder generator, and a short run of the recipe on the tiny synthetic data."""

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facelift.geometry.sh import directional_light_sh, irradiance, light_direction
from facelift.training import fan_v2, occlusion
from facelift.training.occlusion import feature_anchors, random_occluders, random_sh

import fit_lighting
from training_support import train as _train


def _hemisphere(R=32):
    yy, xx = (np.mgrid[0:R, 0:R] + 0.5) / R * 2 - 1
    zz = np.sqrt(np.clip(1 - xx ** 2 - yy ** 2, 0, None))
    n = np.stack([xx, -yy, zz], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    vis = ((xx ** 2 + yy ** 2) < 0.8).astype(np.float32)
    return torch.from_numpy(n.astype(np.float32)).permute(2, 0, 1)[None], torch.from_numpy(vis)[None, None]


def _shading(normal, sh):
    return torch.from_numpy(irradiance(normal[0].permute(1, 2, 0).numpy(), sh).astype(np.float32)).permute(2, 0, 1)[None]


def test_delit_recovers_the_albedo_and_the_confidence_flags_an_occluder():
    normal, vis = _hemisphere()
    sh = directional_light_sh(light_direction(30, 20), intensity=0.8, ambient=0.5)
    shading = _shading(normal, sh)
    albedo = torch.full_like(shading, 0.6) * vis
    texture = albedo * shading
    d = fan_v2.delit(texture, shading, vis)
    ok = (vis > 0) & (shading > 0.05).all(1, keepdim=True)
    assert torch.allclose(d[ok.expand_as(d)], albedo[ok.expand_as(d)], atol=1e-5)
    occluded = texture.clone()
    occluded[..., 10:20, 10:20] = 0.0
    conf = fan_v2.confidence_map(occluded, albedo, shading, vis, torch.tensor([0.05]))
    assert conf.shape == vis.shape
    assert conf[..., 10:20, 10:20].max() == 0 and conf[vis.bool() & (conf > 0)].min() > 0.99


def test_relighting_with_the_same_light_is_the_identity_and_reestimation_finds_a_new_light():
    normal, vis = _hemisphere()
    sh = directional_light_sh(light_direction(0, 0), intensity=0.7, ambient=0.5)
    shading = _shading(normal, sh)
    albedo = torch.full_like(shading, 0.5)
    texture = albedo * shading * vis
    same = fan_v2.relit_texture(texture, shading, shading, vis)
    assert torch.allclose(same, texture, atol=1e-6)
    new_sh = directional_light_sh(light_direction(50, 10), intensity=0.7, ambient=0.5)
    new = fan_v2.relit_texture(texture, shading, _shading(normal, new_sh), vis)
    assert (new - texture).abs().max() > 0.05
    est = fan_v2.reestimate_sh(new, albedo, normal, vis, prior={}, stride=1)
    relit_shading = _shading(normal, est[0].numpy())
    m = vis.bool().expand_as(new)
    assert (albedo * relit_shading - new)[m].abs().mean() < 0.01  # the new light explains the relit texture


def test_random_occluders_stay_on_visible_texels_and_follow_the_probability():
    normal, vis = _hemisphere(64)
    tex = torch.rand(4, 3, 64, 64) * vis
    vis4 = vis.expand(4, 1, 64, 64)
    alpha, colour = random_occluders(tex, vis4, np.random.default_rng(0), probability=1.0)
    assert alpha.shape == (4, 1, 64, 64) and colour.shape == (4, 3, 64, 64)
    assert alpha.min() >= 0 and alpha.max() <= 1 and (alpha * (1 - vis4)).abs().max() == 0
    assert (alpha.flatten(1).sum(1) > 0).all()  # every sample got an occluder
    again, _ = random_occluders(tex, vis4, np.random.default_rng(0), probability=1.0)
    assert torch.equal(alpha, again)  # reproducible from the generator
    none, _ = random_occluders(tex, vis4, np.random.default_rng(0), probability=0.0)
    assert none.abs().max() == 0


def test_anchored_occluders_sit_on_the_anchors_and_anchor_prob_0_draws_as_before():
    R = 64
    tex, vis = torch.rand(8, 3, R, R), torch.ones(8, 1, R, R)
    anchors = np.array([[12.0, 50.0]])
    alpha, _ = random_occluders(tex, vis, np.random.default_rng(1), 1.0, anchors=anchors, anchor_prob=1.0)
    free, _ = random_occluders(tex, vis, np.random.default_rng(1), 1.0)
    yy, xx = np.mgrid[0:R, 0:R]
    a = alpha[:, 0].numpy().sum(0)
    centroid = np.array([(a * xx).sum(), (a * yy).sum()]) / a.sum()
    f = free[:, 0].numpy().sum(0)
    free_centroid = np.array([(f * xx).sum(), (f * yy).sum()]) / f.sum()
    assert np.linalg.norm(centroid - anchors[0]) < 0.2 * R < np.linalg.norm(free_centroid - anchors[0])
    assert a[40:60, 0:24].sum() > 0.5 * a.sum()  # most coverage around the anchor (x 12, y 50)
    same, _ = random_occluders(tex, vis, np.random.default_rng(1), 1.0, anchors=anchors, anchor_prob=0.0)
    assert torch.equal(same, free)


def _coherence(img):
    """How much one direction dominates the map's edges (structure tensor): 0 none, 1 one."""
    import cv2
    gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1)
    a, b, c = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    lo, hi = np.linalg.eigvalsh(np.array([[a, c], [c, b]]))
    return (hi - lo) / (hi + lo + 1e-9)


def test_locks_of_hair_are_thin_strands_that_flow_together_and_lock_prob_0_draws_as_before():
    import cv2
    R = 128
    tex, vis = torch.rand(6, 3, R, R), torch.ones(6, 1, R, R)
    locks, _ = random_occluders(tex, vis, np.random.default_rng(2), 1.0, max_count=1, lock_prob=1.0)
    free, _ = random_occluders(tex, vis, np.random.default_rng(2), 1.0, max_count=1)
    same, _ = random_occluders(tex, vis, np.random.default_rng(2), 1.0, max_count=1, lock_prob=0.0)
    assert torch.equal(same, free) and not torch.equal(locks, free)
    rng = np.random.default_rng(0)
    lock_maps = [occlusion._lock(R, rng) for _ in range(20)]
    strand_maps = [occlusion._shape("strands", R, rng) for _ in range(20)]
    # thin: a 5x5 erosion removes most of a lock
    kept = [cv2.erode(m, np.ones((5, 5), np.uint8)).sum() / m.sum() for m in lock_maps]
    assert np.mean(kept) < 0.4
    # together: one direction dominates a lock's edges, unlike the random walks of "strands"
    assert np.mean([_coherence(m) for m in lock_maps]) > 2 * np.mean([_coherence(m) for m in strand_maps])
    centred, _ = random_occluders(tex, vis, np.random.default_rng(3), 1.0, anchors=np.array([[30.0, 90.0]]),
                                  anchor_prob=1.0, lock_prob=1.0)
    a = centred[:, 0].numpy().sum(0)
    yy, xx = np.mgrid[0:R, 0:R]
    assert np.hypot((a * xx).sum() / a.sum() - 30, (a * yy).sum() / a.sum() - 90) < 0.25 * R


def test_an_extra_lock_goes_on_top_of_the_other_occluders():
    R = 64
    tex, vis = torch.rand(16, 3, R, R), torch.ones(16, 1, R, R)
    plain, _ = random_occluders(tex, vis, np.random.default_rng(4), 1.0, max_count=1)
    extra, _ = random_occluders(tex, vis, np.random.default_rng(4), 1.0, max_count=1, extra_lock_prob=1.0)
    none, _ = random_occluders(tex, vis, np.random.default_rng(4), 0.0, extra_lock_prob=1.0)
    assert float(none.sum()) == 0  # only occluded samples get one
    assert float(extra.sum()) > 1.2 * float(plain.sum())


def test_glasses_frames_are_thin_rims_around_the_eyes_and_frames_prob_0_draws_as_before():
    import cv2
    R = 128
    eyes = np.array([[40.0, 50.0], [88.0, 50.0]])
    tex, vis = torch.rand(8, 3, R, R), torch.ones(8, 1, R, R)
    plain, _ = random_occluders(tex, vis, np.random.default_rng(5), 1.0, max_count=1)
    same, _ = random_occluders(tex, vis, np.random.default_rng(5), 1.0, max_count=1, frames_prob=0.0, eyes=eyes)
    framed, _ = random_occluders(tex, vis, np.random.default_rng(5), 1.0, max_count=1, frames_prob=1.0, eyes=eyes)
    assert torch.equal(same, plain) and not torch.equal(framed, plain)
    assert float(framed.sum()) > float(plain.sum())
    rng = np.random.default_rng(0)
    for _ in range(20):
        rims, lenses, shadow = occlusion._frames(R, rng, eyes)
        on = (rims > 0.2).astype(np.uint8)  # (a rim one texel wide and blurred peaks below 0.5)
        assert on.sum() > 100 and cv2.erode(on, np.ones((7, 7), np.uint8)).sum() < 0.05 * on.sum()  # thin
        for x, y in eyes.astype(int):  # a rim around each eye, the eye itself behind a clear lens
            assert rims[y, x] < 0.2 and lenses[y, x] > 0.5
            assert rims[y, :x].max() > 0.2 and rims[y, x:].max() > 0.2
        assert rims[100:, :].max() < 0.2  # not down at the mouth
        assert 0 <= shadow.min() and shadow.max() <= 1 and (shadow * rims).max() < 1e-6 + 0.5
    # the composite: a lens tint never covers more than 0.25, the rims' shadow darkens the texture
    alpha, colour = random_occluders(tex, vis, np.random.default_rng(6), 1.0, max_count=1, frames_prob=1.0, eyes=eyes)
    assert alpha.min() >= 0 and alpha.max() <= 1 + 1e-5 and colour.min() >= 0 and colour.max() <= 1 + 1e-5
    with pytest.raises(ValueError, match="eyes"):
        random_occluders(tex, vis, np.random.default_rng(0), 1.0, frames_prob=0.5)
    with pytest.raises(ValueError, match="frames_prob"):
        random_occluders(tex, vis, np.random.default_rng(0), 1.0, frames_prob=1.5, eyes=eyes)


def test_eye_centres_lie_left_and_right_at_one_height():
    from facelift.face_model import FaceModel
    from facelift.training.occlusion import eye_centres

    model = FaceModel.load(Path(__file__).resolve().parents[2] / "checkpoints" / "face_model.safetensors")
    eyes = eye_centres(model, 256)
    assert eyes.shape == (2, 2) and eyes[0, 0] < 128 < eyes[1, 0]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 2 and abs(eyes[0, 0] + eyes[1, 0] - 256) < 4  # the layout is symmetric
    np.testing.assert_allclose(eye_centres(model, 128), eyes / 2, atol=0.5)


@pytest.mark.parametrize("kwargs", [{"lock_prob": -0.1}, {"lock_prob": 1.01}, {"extra_lock_prob": 2.0}])
def test_random_occluders_refuse_a_bad_lock_prob(kwargs):
    with pytest.raises(ValueError, match="lock_prob"):
        random_occluders(torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16), np.random.default_rng(0), 1.0, **kwargs)


@pytest.mark.parametrize("kwargs", [{"anchor_prob": 0.5}, {"anchor_prob": 1.5, "anchors": np.zeros((3, 2))},
                                    {"anchor_prob": 0.5, "anchors": np.zeros((0, 2))},
                                    {"anchor_prob": 0.5, "anchors": np.zeros(3)}])
def test_random_occluders_refuse_bad_anchors(kwargs):
    with pytest.raises(ValueError, match="anchor"):
        random_occluders(torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16), np.random.default_rng(0), 1.0, **kwargs)


def test_feature_anchors_are_the_layouts_inner_landmarks_left_right_symmetric():
    from facelift.face_model import FaceModel

    model = FaceModel.load(Path(__file__).resolve().parents[2] / "checkpoints" / "face_model.safetensors")
    R = 256
    a = feature_anchors(model, R)
    assert a.shape == (51, 2) and (a >= 0).all() and (a < R).all()
    mirrored = a * [-1, 1] + [R - 1, 0]
    nearest = np.linalg.norm(mirrored[:, None] - a[None], axis=-1).min(1)
    assert nearest.max() < 2.0  # the layout is mirror-symmetric and so is the iBUG inner set
    assert a[:, 1].std() > 0.1 * R  # brows to mouth, not one point


def test_random_sh_lights_the_front_of_the_face():
    sh = random_sh(16, np.random.default_rng(0))
    assert sh.shape == (16, 3, 9) and torch.isfinite(sh).all()
    front = irradiance(np.tile([[[0.0, 0.0, 1.0]]], (16, 1, 1)), sh.numpy())  # (16, 1, 3)
    assert (front > 0.1).all()


@pytest.fixture(scope="module")
def fan_v2_run(tiny, vgg_path):
    fit_lighting.main(["--data", str(tiny["data"]), "--face-model", str(tiny["face_model"]), "--method", "robust"])
    out = tiny["root"] / "fan_v2"
    _train("fan", tiny, out, 4, "--config", str(fan_v2_config()), "--lr", "3e-4", "--set", "grad_share_every=2")
    return out


def _fine_tune(tiny, out, config: str, steps: int, init_from):
    """`steps` steps of training/configs/`config` from the FAN in `init_from`; the rows of its losses.csv."""
    from training_support import REPO

    _train("fan", tiny, out, steps, "--config", str(REPO / "training" / "configs" / config), "--lr", "3e-4",
           "--set", "grad_share_every=1", "--set", f"init_from={init_from}")
    with open(out / "losses.csv") as f:
        return list(csv.DictReader(f))


def fan_v2_config():
    from training_support import REPO

    return REPO / "training" / "configs" / "fan_v2.json"


@pytest.mark.slow
@pytest.mark.integration
def test_fan_v2_trains_logs_every_term_and_loads_in_the_pipeline(fan_v2_run, tiny):
    with open(fan_v2_run / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    terms = ("pixel", "percep", "adv", "lowfreq", "consistency")
    for k in terms:
        assert all(math.isfinite(float(r[k])) for r in rows), k
        assert float(rows[-1][f"gshare_{k}"]) > 0, k  # every term reaches the albedo's gradient
    assert sum(float(rows[-1][f"gshare_{k}"]) for k in terms) == pytest.approx(1.0, abs=1e-3)
    summary = json.loads((fan_v2_run / "final" / "summary.json").read_text())
    assert summary["recipe"] == "v2" and summary["last_shares"]
    from facelift.models import FAN

    fan = FAN.from_pretrained(fan_v2_run / "final")
    assert fan.config["inputs"] == ["delit", "visibility", "confidence", "albedo_pca"]
    assert fan.config["output_activation"] == "gated" and fan.config["depth"] == 7
    # the 128-trained weights run at 256 (fine-tuning starts from them)
    fan256 = FAN(**{**fan.config, "resolution": 256})
    fan256.load_state_dict(fan.state_dict())
    assert fan256(torch.rand(1, 8, 256, 256)).shape == (1, 3, 256, 256)


@pytest.mark.slow
@pytest.mark.integration
def test_fan_v2_needs_the_robust_lighting_file(tiny, tmp_path, vgg_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    (data / "lighting_robust.npz").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="method robust"):
        _train("fan", {**tiny, "data": data}, tmp_path / "run", 1, "--config", str(fan_v2_config()))


@pytest.mark.slow
@pytest.mark.integration
def test_fan_v2_1_supervises_the_gate_and_takes_the_stiff_albedo(fan_v2_run, tiny, tmp_path, vgg_path):
    """The v2.1 config (stiff albedo input, gate supervision) trains from a v2 FAN whose fourth
    input it replaces, logs the gate term and its gradient share, and loads in the pipeline's shape."""
    out = tmp_path / "fan_v21"
    rows = _fine_tune(tiny, out, "fan_v2_1.json", 3, fan_v2_run / "final")
    assert len(rows) == 3
    assert all(math.isfinite(float(r["gate"])) and float(r["gate"]) > 0 for r in rows)
    assert float(rows[-1]["gshare_gate"]) > 0
    from facelift.models import FAN

    fan = FAN.from_pretrained(out / "final")
    assert fan.config["inputs"] == ["delit", "visibility", "confidence", "albedo_stiff"]
    y, gate = fan(torch.rand(1, 8, 128, 128), return_gate=True)
    assert y.shape == (1, 3, 128, 128) and gate.shape == (1, 1, 128, 128)
    assert ((gate >= 0) & (gate <= 1)).all()


def test_skin_fill_takes_a_face_s_skin_colour_under_a_shading_ramp():
    from facelift.training.occlusion import _fill

    R = 64
    tex = np.zeros((R, R, 3), np.float32)
    tex[:] = (0.8, 0.55, 0.45)
    vis = np.ones((R, R), bool)
    fill, valid = _fill("skin", R, np.random.default_rng(0), (tex, vis))
    assert valid is None and fill.shape == (R, R, 3)
    mean = fill.reshape(-1, 3).mean(0)
    assert np.allclose(mean / mean[0], np.array([0.8, 0.55, 0.45]) / 0.8, atol=0.03)  # the skin's hue
    assert fill[..., 0].std() > 0.01  # a ramp, not a flat patch


def test_refit_low_frequency_is_the_pipeline_fit_per_sample_and_keeps_the_fallback(tiny):
    """The training refit (cfg.refit) gives each sample exactly what `fit_low_frequency` gives the
    pipeline, a dark patch scores low confidence, and a sample with nothing visible keeps the
    fallback's entries instead of failing the batch."""
    from facelift.albedo import fit_low_frequency, pca_albedo
    from facelift.face_model import FaceModel

    model = FaceModel.load(tiny["face_model"])
    R = 64
    normal, vis = _hemisphere(R)
    sh = directional_light_sh(light_direction(20, 10), np.ones(3), intensity=1.0, ambient=0.4)
    albedo = torch.from_numpy(pca_albedo(model, None, R)).permute(2, 0, 1)[None]
    tex = (albedo * _shading(normal, sh)).clamp(0, 1) * vis
    patched = tex.clone()
    patched[..., 20:34, 20:34] = 0.05
    texture = torch.cat([tex, patched, tex])
    visibility = torch.cat([vis, vis, torch.zeros_like(vis)])
    normals = normal.expand(3, -1, -1, -1)
    K = model.n_albedo
    fallback = {"coefficients": torch.full((3, K), 7.0), "sh": torch.full((3, 3, 9), 7.0),
                "outlier_coefficients": torch.full((3, K), 7.0), "outlier_sh": torch.full((3, 3, 9), 7.0),
                "confidence": torch.full((3, 1, R, R), 0.5)}
    out = fan_v2.refit_low_frequency(model, texture, normals, visibility, fallback)
    for b in (0, 1):
        fit = fit_low_frequency(model, texture[b].permute(1, 2, 0).numpy(), normals[b].permute(1, 2, 0).numpy(),
                                visibility[b, 0].numpy() > 0.5)
        np.testing.assert_allclose(out["coefficients"][b].numpy(), fit.coefficients, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["sh"][b].numpy(), fit.sh, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["confidence"][b, 0].numpy(), fit.confidence, atol=1e-6)
    assert out["confidence"][1, 0, 22:32, 22:32].mean() < 0.1 < out["confidence"][0, 0, 22:32, 22:32].mean()
    for key, value in fallback.items():
        assert torch.equal(out[key][2], value[2]), key  # nothing visible: the fallback stays
        assert not torch.equal(out[key][0], value[0]), key
    assert torch.equal(fallback["sh"], torch.full((3, 3, 9), 7.0))  # the fallback itself is not written


@pytest.mark.slow
@pytest.mark.integration
def test_the_refit_in_worker_processes_gives_the_in_process_result(tiny, monkeypatch):
    """`refit_workers` (the GPU runs' setting) changes where the robust stage runs, not what it gives."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "2")  # refit_pool sets them for its workers; restored after the test
    from facelift.face_model import FaceModel

    model = FaceModel.load(tiny["face_model"])
    normal, vis = _hemisphere(48)
    rng = np.random.default_rng(0)
    texture = torch.from_numpy(rng.uniform(0.2, 0.8, (3, 3, 48, 48)).astype(np.float32)) * vis
    visibility = torch.cat([vis, vis, torch.zeros_like(vis)])
    K = model.n_albedo
    fallback = {"coefficients": torch.zeros(3, K), "sh": torch.zeros(3, 3, 9), "outlier_coefficients": torch.zeros(3, K),
                "outlier_sh": torch.zeros(3, 3, 9), "confidence": torch.zeros(3, 1, 48, 48)}
    normals = normal.expand(3, -1, -1, -1)
    serial = fan_v2.refit_low_frequency(model, texture, normals, visibility, fallback)
    pool = fan_v2.refit_pool(str(tiny["face_model"]), 2)
    try:
        parallel = fan_v2.refit_low_frequency(model, texture, normals, visibility, fallback, pool)
    finally:
        pool.shutdown()
    for key in serial:
        torch.testing.assert_close(parallel[key], serial[key], rtol=1e-5, atol=1e-6)
    assert torch.equal(parallel["sh"][2], fallback["sh"][2]) and not torch.equal(parallel["sh"][0], fallback["sh"][0])
    # fit_args (cfg.robust_prior_weight) reach the fit, in process and in the workers alike
    from facelift.albedo import fit_low_frequency

    args = {"robust_prior_weight": 1e-2}
    stiff = fan_v2.refit_low_frequency(model, texture, normals, visibility, fallback, fit_args=args)
    pool = fan_v2.refit_pool(str(tiny["face_model"]), 2)
    try:
        stiff_parallel = fan_v2.refit_low_frequency(model, texture, normals, visibility, fallback, pool, fit_args=args)
    finally:
        pool.shutdown()
    fit = fit_low_frequency(model, texture[0].permute(1, 2, 0).numpy(), normals[0].permute(1, 2, 0).numpy(),
                            vis[0].numpy() > 0.5, **args)
    np.testing.assert_allclose(stiff["outlier_coefficients"][0].numpy(), fit.outlier_coefficients, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stiff_parallel["outlier_coefficients"], stiff["outlier_coefficients"], rtol=1e-5,
                               atol=1e-6)
    assert not torch.allclose(stiff["outlier_coefficients"][0], serial["outlier_coefficients"][0])


@pytest.mark.slow
@pytest.mark.integration
def test_fan_v2_2_refits_caps_the_gate_in_the_loop_and_logs_the_inpainting_term(fan_v2_run, tiny, tmp_path,
                                                                                vgg_path):
    out = tmp_path / "fan_v22"
    rows = _fine_tune(tiny, out, "fan_v2_2.json", 2, fan_v2_run / "final")
    assert len(rows) == 2
    assert all(math.isfinite(float(r["inpaint"])) for r in rows)
    assert 0 <= float(rows[-1]["occluded"]) <= 1  # the share of occluded texels, logged as before
    assert float(rows[-1]["gshare_inpaint"]) > 0
    from facelift.models import FAN

    fan = FAN.from_pretrained(out / "final")
    assert fan.config["gate_by"] == "confidence"


@pytest.mark.slow
@pytest.mark.integration
def test_fan_v2_2_without_the_robust_confidence_trains_and_refuses_a_refit(fan_v2_run, tiny, tmp_path, vgg_path):
    """The ablation without the robust stage's skin confidence (training/run_fan_v2_2_ablations.sh,
    no_robust) trains; asking for it together with the refit, which needs that confidence, is refused."""
    from training_support import REPO

    cfg = ("--config", str(REPO / "training" / "configs" / "fan_v2_2.json"), "--set", f"init_from={fan_v2_run / 'final'}",
           "--set", "robust_confidence=false")
    with pytest.raises(ValueError, match="robust_confidence"):
        _train("fan", tiny, tmp_path / "refused", 1, *cfg)
    out = tmp_path / "no_robust"
    _train("fan", tiny, out, 2, *cfg, "--set", "refit=false", "--set", "gate_by=null", "--set", "grad_share_every=1")
    with open(out / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(math.isfinite(float(r["loss_g"])) for r in rows)
    assert float(rows[-1]["gshare_pixel"]) > 0
    assert json.loads((out / "train_config.json").read_text())["robust_confidence"] is False


def _config_change(before: str, after: str):
    """Two FAN configs of training/configs and the names of the fields that differ."""
    from facelift.training.config import FANConfig, load_config

    from training_support import REPO

    a, b = (load_config(FANConfig, str(REPO / "training" / "configs" / f"{n}.json"), []) for n in (before, after))
    return a, b, {k for k in vars(a) if getattr(a, k) != getattr(b, k)}


#: Each FAN v2 recipe against the one it was made from: the fields that differ, (before, after), and
#: nothing else (v2.7 and v2.8, which change the network too, have tests of their own below).
RECIPE_CHANGES = [
    pytest.param("fan_v2_2", "fan_v2_3", {"w_consistency": (3.0, 1.0)}, id="v2.3 a lighter consistency term"),
    pytest.param("fan_v2_3", "fan_v2_4", {"w_occluded": (0.5, 1.5), "lr_decay_steps": (0, 800)},
                 id="v2.4 a heavier occluded term, one cosine cycle"),
    pytest.param("fan_v2_4", "fan_v2_5", {"w_occluded": (1.5, 3.0), "lr_decay_steps": (800, 500)}, id="v2.5 heavier"),
    pytest.param("fan_v2_5", "fan_v2_6", {"w_occluded": (3.0, 5.0), "lr_decay_steps": (500, 600)}, id="v2.6 heavier"),
    pytest.param("fan_v2_6", "fan_v2_9", {"robust_prior_weight": (1e-4, 3e-4), "lr_decay_steps": (600, 300)},
                 id="v2.9 a stiffer outlier model in the refits"),
    pytest.param("fan_v2_9", "fan_v2_10", {"w_occluded": (5.0, 10.0), "w_gate": (0.05, 0.1)},
                 id="v2.10 the occluded texels weighted up"),
    pytest.param("fan_v2_9", "fan_v2_11", {"w_gate": (0.05, 0.5)}, id="v2.11 the gate term weighted up"),
    pytest.param("fan_v2_10", "fan_v2_12", {"occluder_anchor_prob": (0.0, 0.6), "lr_decay_steps": (300, 400)},
                 id="v2.12 most occluders on facial features"),
    pytest.param("fan_v2_12", "fan_v2_13", {"occluder_anchor_prob": (0.6, 0.9)}, id="v2.13 more of them"),
    pytest.param("fan_v2_13", "fan_v2_14", {}, id="v2.14 a third cycle of v2.13's recipe"),
    pytest.param("fan_v2_13", "fan_v2_15", {"occluder_lock_prob": (0.0, 0.35)},
                 id="v2.15 a third of the occluders locks of hair"),
    pytest.param("fan_v2_13", "fan_v2_16", {"occluder_extra_lock_prob": (0.0, 0.5)},
                 id="v2.16 a lock of hair on top of half the occluded samples' occluders"),
    pytest.param("fan_v2_13", "fan_v2_17", {"occluder_frames_prob": (0.0, 0.3)},
                 id="v2.17 glasses frames on top of 30 % of the occluded samples' occluders"),
    pytest.param("fan_v2_17", "fan_v2_18", {"occluder_extra_lock_prob": (0.0, 0.5)},
                 id="v2.18 v2.17's frames and v2.16's locks of hair"),
]


@pytest.mark.unit
@pytest.mark.parametrize("before, after, changes", RECIPE_CHANGES)
def test_each_recipe_changes_only_what_it_says(before, after, changes):
    a, b, changed = _config_change(before, after)
    assert changed == set(changes)
    assert {k: (getattr(a, k), getattr(b, k)) for k in changed} == changes
    assert b.lr_final_ratio == 0.1


@pytest.mark.unit
def test_v2_7_squares_the_confidence_cap_and_raises_the_occluded_and_perceptual_terms():
    a, b, changed = _config_change("fan_v2_6", "fan_v2_7")
    assert changed == {"gate_power", "w_occluded", "w_percep"}
    assert (a.gate_power, b.gate_power) == (1.0, 2.0)
    assert (a.w_occluded, b.w_occluded) == (5.0, 7.0) and (a.w_percep, b.w_percep) == (0.01, 0.05)
    assert fan_v2.build_fan(dataclasses.replace(b, init_from=None)).config["gate_power"] == 2.0


@pytest.mark.unit
def test_v2_8_prefills_untrusted_texels_with_the_stiff_albedo_and_raises_the_perceptual_term():
    a, b, changed = _config_change("fan_v2_6", "fan_v2_8")
    assert changed == {"prefill_from", "prefill_power", "w_percep"}
    assert (b.prefill_from, b.prefill_power) == ("albedo_stiff", 2.0) and (a.w_percep, b.w_percep) == (0.01, 0.05)
    fan = fan_v2.build_fan(dataclasses.replace(b, init_from=None))
    assert (fan.config["prefill_from"], fan.config["prefill_power"]) == ("albedo_stiff", 2.0)


@pytest.mark.unit
def test_the_kept_v2_4_probe_weights_load_as_the_pipelines_fan_shape():
    """training/probes/fan_v2_4 (float16 on disk) loads in float32 with the shipped FAN's architecture."""
    from facelift.models import FAN

    from training_support import REPO

    probe = FAN.from_pretrained(REPO / "training" / "probes" / "fan_v2_4")
    shipped = json.loads((REPO / "checkpoints" / "fan" / "config.json").read_text())
    assert all(probe.config[k] == v for k, v in shipped.items() if k != "_class_name")
    assert all(p.dtype == torch.float32 for p in probe.parameters())
    x = torch.rand(1, probe.config["in_channels"], 256, 256)
    with torch.no_grad():
        y = probe(x)
    assert y.shape == (1, 3, 256, 256) and torch.isfinite(y).all()
