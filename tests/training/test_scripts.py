"""Smoke tests of the remaining training/ scripts on tiny data: evaluate.py with and without a
B-Net, make_val_grid.py, build_face_model.py, and train_bnet.py / train_drn.py run as scripts
(the way users start them), each a few seconds on CPU."""

import csv
import json
import math
import os
import subprocess
import sys

import build_face_model  # training/ is on sys.path via conftest
import evaluate
import make_val_grid
import numpy as np
import pytest
from PIL import Image, ImageOps

from training_support import FACE_MODEL, REPO

BNET_ROWS = {"pca", "fan", "fan_drn", "grad_fan", "grad_fan_drn", "fan_better_fraction", "fan_over_pca_ratio"}
LS_ROWS = {"pca_ls", "fan_ls", "fan_drn_ls", "grad_fan_ls", "grad_fan_drn_ls", "displacement_abs_mm",
           "fan_better_fraction_ls", "fan_over_pca_ratio_ls"}
OTHER_KEYS = {"samples", "resolution", "data", "albedo_diversity", "bnet", "bundle", "wall_seconds", "metric"}
STATS = {"mean", "median", "std"}


def _evaluate(bundle, out, *extra):
    evaluate.main(["--data", str(bundle.parent / "train"), "--bundle", str(bundle), "--out", str(out),
                   "--threads", "2", *extra])
    return json.loads(out.read_text())


def _finite_rows(metrics, rows):
    for k in rows:
        v = metrics[k]
        if isinstance(v, dict):
            assert set(v) == STATS, (k, v)
        values = list(v.values()) if isinstance(v, dict) else [v]
        assert all(math.isfinite(x) for x in values), (k, v)


# ---- evaluate.py --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_evaluate_without_bnet_computes_the_least_squares_rows(tiny, fresh_bundle, tmp_path):
    assert not (fresh_bundle / "bnet").exists()
    m = _evaluate(fresh_bundle, tmp_path / "m.json")
    assert set(m) == LS_ROWS | OTHER_KEYS
    assert m["bnet"] is None and m["samples"] == 8 and m["resolution"] == 128
    _finite_rows(m, LS_ROWS)
    assert set(m["albedo_diversity"]) == {"texture", "fan", "pca_ls"}
    assert all(len(v) == 3 for v in m["albedo_diversity"].values())


@pytest.mark.slow
@pytest.mark.integration
def test_evaluate_with_bnet_adds_the_bnet_rows(tiny, fresh_bundle, bnet_run, tmp_path):
    m = _evaluate(fresh_bundle, tmp_path / "m.json", "--bnet", str(bnet_run / "final"), "--limit", "4")
    assert set(m) == BNET_ROWS | LS_ROWS | OTHER_KEYS
    assert m["bnet"] == str(bnet_run / "final") and m["samples"] == 4
    _finite_rows(m, BNET_ROWS | LS_ROWS)
    assert set(m["albedo_diversity"]) == {"texture", "pca", "fan", "pca_ls"}
    shipped = REPO / "docs" / "training" / "val_metrics.json"
    if shipped.is_file():  # the committed figures stay readable with the same keys
        assert set(json.loads(shipped.read_text())) <= set(m)


def test_evaluate_finds_the_bundles_bnet_and_refuses_a_missing_one(fresh_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    (bundle / "bnet").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"components": {"bnet": "bnet"}}))
    assert evaluate.bundle_bnet(bundle) is None  # no weights in the folder
    (bundle / "bnet" / "model.safetensors").write_bytes(b"")
    assert evaluate.bundle_bnet(bundle) == str(bundle / "bnet")
    (bundle / "config.json").write_text(json.dumps({"components": {"bnet": None}}))
    assert evaluate.bundle_bnet(bundle) is None
    assert evaluate.bundle_bnet(fresh_bundle) is None
    with pytest.raises(SystemExit):
        _evaluate(fresh_bundle, tmp_path / "m.json", "--bnet", str(tmp_path / "missing"))


# ---- make_val_grid.py and build_face_model.py -------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_make_val_grid(fresh_bundle, tmp_path):
    images = tmp_path / "val"
    images.mkdir()
    Image.open(REPO / "examples" / "astronaut.png").convert("RGB").save(images / "a.png")
    Image.new("RGB", (200, 200), (120, 120, 120)).save(images / "blank.png")  # no face: skipped
    out = tmp_path / "grid.png"
    make_val_grid.main(["--bundle", str(fresh_bundle), "--images", str(images), "--n", "1", "--size", "48",
                        "--out", str(out)])
    grid = np.asarray(Image.open(out))
    assert grid.shape == (16 + 48, 48 * len(make_val_grid.COLUMNS), 3)
    assert grid[16:].std() > 5  # a face, not an empty row


@pytest.mark.slow
@pytest.mark.integration
def test_build_face_model(tmp_path):
    from facelift.face_model import FaceModel

    photos = tmp_path / "photos"
    photos.mkdir()
    img = Image.open(REPO / "examples" / "astronaut.png").convert("RGB")
    w, h = img.size
    img.save(photos / "a.png")  # four views of one face: enough for a 2-component smoke model
    ImageOps.mirror(img).save(photos / "b.png")
    img.rotate(8, resample=Image.BILINEAR).save(photos / "c.png")
    img.crop((w // 10, h // 10, w, h)).save(photos / "d.png")
    Image.new("RGB", (200, 200), (120, 120, 120)).save(photos / "blank.png")  # no face: listed, not fatal
    out = tmp_path / "face_model.safetensors"
    build_face_model.main(["--data", str(photos), "--out", str(out), "--n-shape", "2", "--workers", "1"])
    fm = FaceModel.load(out)
    base = FaceModel.load(FACE_MODEL)
    assert fm.config["n_images"] == 5 and fm.config["n_images_used"] == 4 and fm.config["n_images_failed"] == 1
    assert fm.n_shape == 2 and fm.mean_shape.shape == base.mean_shape.shape
    assert np.isfinite(fm.mean_shape).all() and np.isfinite(fm.uv).all()


# ---- train_bnet.py / train_drn.py as scripts ----------------------------------------------
def _run_script(name, tiny, out, *extra):
    cmd = [sys.executable, str(REPO / "training" / name), "--data", str(tiny["data"]), "--out", str(out),
           "--resolution", "128", "--batch-size", "4", "--max-steps", "2", "--threads", "2",
           "--set", f"face_model={tiny['face_model']}", "--set", "limit=4", *extra]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tiny["root"], env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert (out / "final" / "model.safetensors").is_file() and (out / "final" / "train_config.json").is_file()
    return rows


@pytest.mark.slow
@pytest.mark.integration
def test_train_bnet_script(tiny, tmp_path):
    from facelift.models import BNet

    rows = _run_script("train_bnet.py", tiny, tmp_path / "bnet")
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert BNet.from_pretrained(tmp_path / "bnet" / "final").n_albedo == 4


@pytest.mark.slow
@pytest.mark.integration
def test_train_drn_script(tiny, bnet_run, fresh_bundle, tmp_path):
    from facelift.models import DRN

    rows = _run_script("train_drn.py", tiny, tmp_path / "drn", "--set", f"bnet={bnet_run / 'final'}",
                       "--set", f"fan={fresh_bundle / 'fan'}")
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert DRN.from_pretrained(tmp_path / "drn" / "final").config["resolution"] == 128


# ---- detail_amplitude.py ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_detail_amplitude_without_relief_changes_nothing_and_with_it_matches_evaluate(tmp_path):
    import detail_amplitude

    from facelift import FaceLift
    from facelift.evaluation.masks import skin_mask
    from facelift.evaluation.runner import detail_metrics

    photo = REPO / "examples" / "astronaut.png"
    out = detail_amplitude.main([str(photo), "--weights", str(REPO / "checkpoints"), "--scales", "0,1",
                                 "--json", str(tmp_path / "amp.json")])
    assert json.loads((tmp_path / "amp.json").read_text()) == json.loads(json.dumps(out))
    none, shipped = out["scales"]["0.0"], out["scales"]["1.0"]
    assert none["photos"] == shipped["photos"] == 1
    assert none["e_grad_smooth_ratio"] == pytest.approx(1.0, abs=1e-6) and none["fine_std_mm"] == 0
    fl = FaceLift.from_pretrained(REPO / "checkpoints")
    rec = fl.reconstruct(photo)
    m = detail_metrics(rec, skin_mask(fl.face_model, rec.maps))
    assert shipped["e_grad_smooth_ratio"] == pytest.approx(m["e_grad_smooth_ratio"], rel=1e-6)
    assert shipped["fine_std_mm"] == pytest.approx(m["detail_fine_std_mm"], rel=1e-6)
    assert shipped["fine_std_mm"] > 0.05


# ---- diagnose_occlusion.py ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_diagnose_occlusion_scores_the_evaluations_occluders_as_evaluate_does(tmp_path):
    import diagnose_occlusion

    from facelift import FaceLift
    from facelift.evaluation.occluders import KINDS
    from facelift.evaluation.runner import evaluate_reconstruction, photo_seed

    photo = REPO / "examples" / "astronaut.png"
    out = diagnose_occlusion.main([str(photo), "--weights", str(REPO / "checkpoints"), "--json",
                                   str(tmp_path / "d.json")])
    assert json.loads((tmp_path / "d.json").read_text())["summary"] == json.loads(json.dumps(out["summary"]))
    rows = {r["kind"]: r for r in out["rows"]}
    assert sorted(rows) == sorted(KINDS) and not out["failures"]
    fl = FaceLift.from_pretrained(REPO / "checkpoints")
    rec = fl.reconstruct(photo)
    m = evaluate_reconstruction(fl, rec, rng=np.random.default_rng(photo_seed(0, photo)), photo_metrics=False)
    for kind, r in rows.items():  # the same occluders, the same FAN and PCA ratios as facelift evaluate
        assert r["fan"] == pytest.approx(m[f"occlusion_fan_{kind}"], rel=1e-5)
        assert r["pca"] == pytest.approx(m[f"occlusion_pca_{kind}"], rel=1e-5)
        assert 0 <= r["gate_in"] <= r["confidence_in"] + 1e-6  # the gate is capped by the confidence
        assert 0 <= r["gate_clean"] <= 1 and all(np.isfinite(r[k]) for k in diagnose_occlusion.KEYS)
        assert 0 <= r["fan_lowpass"] and 0 <= r["pca_lowpass"]
    # told exactly where the occluder is, with nothing else moved, the FAN leaks no more than unaided
    assert out["summary"]["all"]["oracle_all"] <= out["summary"]["all"]["fan"]
    assert out["summary"]["all"]["count"] == len(KINDS)


# ---- score_extra_occluders.py -------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_score_extra_occluders_runs_the_image_space_protocol_on_a_microphone_and_eyeglasses(tmp_path, capsys):
    import score_extra_occluders

    from facelift import FaceLift
    from facelift.evaluation.runner import image_occlusion, photo_seed

    photo = REPO / "examples" / "astronaut.png"
    assert score_extra_occluders.main([str(photo), "--weights", str(REPO / "checkpoints"), "--json",
                                       str(tmp_path / "m.json")]) == 0
    out = json.loads((tmp_path / "m.json").read_text())
    kinds = ("microphone", "eyeglasses")
    assert tuple(out["kinds"]) == kinds and not out["failures"] and len(out["images"]) == 1
    fl = FaceLift.from_pretrained(REPO / "checkpoints")
    try:
        m = image_occlusion(fl, fl.reconstruct(photo), np.random.default_rng(photo_seed(0, photo)), kinds=kinds)
    finally:
        fl.close()
    assert m["image_occlusion_texels_microphone"] > 200 and m["image_occlusion_texels_eyeglasses"] > 100
    for kind in kinds:  # the same draws and figures as the library's protocol
        for a in ("fan", "pca", "displacement_mm", "relief_added_mm"):
            assert out["summary"][f"{a}_{kind}"]["mean"] == pytest.approx(m[f"image_occlusion_{a}_{kind}"], rel=1e-6)
    assert "fan_eyeglasses" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        score_extra_occluders.main([str(photo), "--kinds", "scarf"])


def test_the_shipped_chain_lists_every_stage_in_order_and_each_script_it_calls_exists(tmp_path):
    """training/run_shipped.sh (DRY_RUN=1) on an empty data root: FAN v2 -> v2.1 -> DRN v3 on v2.1 ->
    v2.2 ... v2.6 -> v2.12 -> v2.13 -> v2.17 (the shipped FAN) -> bundle, each stage's input the previous stage's
    output; nothing is run or made."""
    import re

    env = {**os.environ, "DRY_RUN": "1"}
    for k in [k for k in env if re.fullmatch(r"FAN(_V2\d*)?|EXTRA", k)]:
        del env[k]
    out = subprocess.run(["bash", str(REPO / "training" / "run_shipped.sh"), str(tmp_path)], env=env,
                         capture_output=True, text=True, check=True).stdout
    labels = re.findall(r"^== (FAN v2(?:\.\d+)?|DRN v3|bundle)", out, re.M)
    assert labels == ["FAN v2", "FAN v2.1", "DRN v3", "FAN v2.2", "FAN v2.3", "FAN v2.4", "FAN v2.5", "FAN v2.6",
                      "FAN v2.12", "FAN v2.13", "FAN v2.17", "bundle"]
    assert f"ROBUST_PRIOR_WEIGHT=1e-4 bash training/prepare_uv256.sh {tmp_path} train val" in out
    assert f"FAN={tmp_path}/runs/fan_v21_ship bash training/run_drn_v3.sh" in out  # the DRN on v2.1
    assert f"FAN_V25={tmp_path}/runs/fan_v25b_256/final bash training/run_fan_v2_6.sh" in out
    assert f"FAN_V26={tmp_path}/runs/fan_v26_256/final bash training/run_fan_v2_12.sh" in out
    assert f"FAN_V212={tmp_path}/runs/fan_v212_256/final bash training/run_fan_v2_13.sh" in out
    assert f"FAN_V213={tmp_path}/runs/fan_v213_256/final bash training/run_fan_v2_17.sh" in out
    assert f"--fan {tmp_path}/runs/fan_v217_256/final --drn {tmp_path}/runs/drn_v3e_256/final" in out
    for script in set(re.findall(r"training/[\w/]+\.(?:sh|py)", out)):
        assert (REPO / script).is_file(), script
    assert list(tmp_path.iterdir()) == []
