"""Smoke tests of the training scripts on tiny generated data: finite losses, the loss
falls when overfitting 4 samples, checkpoints resume and reload into the pipeline."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import build_albedo_model  # noqa: F401  (training/ is on sys.path via conftest)
import evaluate
import init_bundle
import numpy as np
import prepare_data
import pytest
import torch
import train_bnet  # noqa: F401

from facelift.errors import WeightsError
from facelift.models import DRN

import fit_lighting
from training_support import FACE_MODEL, REPO, STEPS
from training_support import train as _train

SMALL_FAN = ("--set", "percep_resolution=32", "--set", "ndf=16")  # keep the smoke tests fast on CPU


def _losses(run: Path, column: str) -> list[float]:
    with open(run / "losses.csv") as f:
        return [float(r[column]) for r in csv.DictReader(f)]


def _falls(values: list[float], k: int = 3) -> bool:
    return float(np.mean(values[-k:])) < float(np.mean(values[:k]))


@pytest.fixture(scope="module")
def fan_run(tiny, bnet_run, vgg_path):
    out = tiny["root"] / "fan"
    _train("fan", tiny, out, STEPS, "--lr", "1e-3", "--set", f"bnet={bnet_run / 'final'}",
           "--set", f"vgg={vgg_path}", *SMALL_FAN)
    return out


@pytest.fixture(scope="module")
def drn_run(tiny, bnet_run, fan_run):
    out = tiny["root"] / "drn"
    _train("drn", tiny, out, STEPS, "--lr", "1e-3", "--set", f"bnet={bnet_run / 'final'}",
           "--set", f"fan={fan_run / 'final'}")
    return out


# ---- data and albedo model ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_prepare_data_reports_failures_and_resumes(tmp_path):
    src = tmp_path / "photos" / "train"
    src.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "astronaut.png", src / "a.png")
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    from PIL import Image

    Image.new("RGB", (200, 200), (120, 120, 120)).save(src / "blank.png")
    args = ["--data", str(tmp_path / "photos"), "--split", "train", "--out", str(tmp_path / "uv"),
            "--resolution", "128", "--shard-size", "2", "--workers", "1"]
    prepare_data.main(args)
    out = tmp_path / "uv" / "train"
    index = json.loads((out / "index.json").read_text())
    failures = json.loads((out / "failures.json").read_text())
    assert index["count"] == 1 and index["photos"] == 3 and index["failed"] == 2
    assert set(failures["failures"]) == {"broken.jpg", "blank.png"}
    with np.load(out / index["shards"][0]["file"]) as z:
        assert z["texture"].shape[1:] == (128, 128, 3) and z["texture"].dtype == np.uint8
        assert z["visibility"].max() == 1 and np.isfinite(z["normal"].astype(np.float32)).all()
    mtime = (out / "shard_00000.npz").stat().st_mtime_ns
    prepare_data.main(args)  # resumable: finished shards are skipped
    assert (out / "shard_00000.npz").stat().st_mtime_ns == mtime


def test_albedo_model_in_face_model(tiny):
    from facelift.face_model import FaceModel

    fm = FaceModel.load(tiny["face_model"])
    assert fm.n_albedo == 4 and fm.albedo_resolution == 64
    assert np.isfinite(fm.albedo_basis).all() and 0.05 < fm.albedo_mean.mean() < 1
    assert len(fm.config["albedo_explained_variance"]) == 4
    assert (tiny["root"] / "pca.png").is_file()
    # the shape model is untouched
    base = FaceModel.load(FACE_MODEL)
    np.testing.assert_array_equal(fm.mean_shape, base.mean_shape)


def test_albedo_pca_recovers_low_rank_data_with_missing_texels():
    from facelift.training.albedo_pca import learn_albedo_pca

    g = torch.Generator().manual_seed(0)
    A, N = 16, 60
    mask = np.zeros((A, A), bool)
    mask[2:14, 2:14] = True
    basis = torch.randn(2, 3, A, A, generator=g) * 0.05
    basis = (basis + basis.flip(-1)) / 2  # faces are left-right symmetric; the PCA fills from the mirror
    coeff = torch.randn(N, 2, generator=g)
    albedo = (0.5 + torch.einsum("nk,kchw->nchw", coeff, basis)).clamp(0, 1)
    normal = torch.zeros(N, 3, A, A)
    normal[:, 2] = 1
    sh = torch.zeros(3, 9)
    sh[:, 0] = 2 / math.sqrt(math.pi)  # white ambient light, irradiance 1
    from facelift.geometry.sh import irradiance

    tex = albedo * irradiance(normal.permute(0, 2, 3, 1), sh).permute(0, 3, 1, 2)
    vis = (torch.rand(N, 1, A, A, generator=g) > 0.3).float() * torch.from_numpy(mask).float()
    res = learn_albedo_pca(tex * vis, vis, normal, mask, n_components=2, outer_iterations=2, log=lambda *_: None)
    assert res.explained_variance_ratio.sum() > 0.9
    assert res.history[-1] < 0.01


# ---- the three networks -------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.integration
def test_train_bnet_overfits_and_checkpoints(bnet_run):
    loss = _losses(bnet_run, "loss")
    assert len(loss) == STEPS and all(math.isfinite(v) for v in loss)
    assert _falls(_losses(bnet_run, "pixel"))
    cfg = json.loads((bnet_run / "final" / "train_config.json").read_text())
    assert cfg["w_a"] == 1.0 and cfg["lr"] == 3e-4 and cfg["_class"] == "BNetConfig"
    assert (bnet_run / "loss_curve.png").is_file() and (bnet_run / "state").is_dir()


@pytest.mark.slow
@pytest.mark.integration
def test_train_resumes(tiny, bnet_run):
    out = tiny["root"] / "bnet_resume"
    shutil.copytree(bnet_run, out)
    _train("bnet", tiny, out, STEPS + 1, "--lr", "3e-4")
    steps = _losses(out, "step")
    assert steps == list(range(1, STEPS + 2))
    assert json.loads((out / "progress.json").read_text())["step"] == STEPS + 1


@pytest.mark.slow
@pytest.mark.integration
def test_train_fan_overfits(fan_run):
    rows = {k: _losses(fan_run, k) for k in ("loss_g", "pixel", "percep", "loss_d", "adv")}
    assert all(math.isfinite(v) for vals in rows.values() for v in vals)
    assert _falls(rows["pixel"]) and _falls(rows["loss_g"])
    assert all(v > 0 for v in rows["percep"])


@pytest.mark.slow
@pytest.mark.integration
def test_fan_refuses_missing_vgg_weights(tiny, bnet_run, tmp_path):
    with pytest.raises(WeightsError, match="VGG"):
        _train("fan", tiny, tmp_path / "fan", 1, "--set", f"bnet={bnet_run / 'final'}",
               "--set", f"vgg={tmp_path / 'missing.safetensors'}")


@pytest.mark.slow
@pytest.mark.integration
def test_fan_and_drn_can_be_lit_by_the_least_squares_fit(tiny, bnet_run, fan_run, vgg_path, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    with pytest.raises(FileNotFoundError, match="fit_lighting"):
        _train("fan", {**tiny, "data": data}, tmp_path / "fan_ls", 1, "--set", f"bnet={bnet_run / 'final'}",
               "--set", f"vgg={vgg_path}", "--set", "lighting=least_squares", *SMALL_FAN)
    fit_lighting.main(["--data", str(data), "--face-model", str(tiny["face_model"])])
    with np.load(data / "lighting_ls.npz") as z:
        assert z["sh"].shape == (8, 3, 9) and np.isfinite(z["sh"]).all() and z["coefficients"].shape == (8, 4)
    _train("fan", {**tiny, "data": data}, tmp_path / "fan_ls", 2, "--set", f"bnet={bnet_run / 'final'}",
           "--set", f"vgg={vgg_path}", "--set", "lighting=least_squares", "--set", "real_samples=least_squares",
           *SMALL_FAN)
    _train("drn", {**tiny, "data": data}, tmp_path / "drn_ls", 2, "--set", f"bnet={bnet_run / 'final'}",
           "--set", f"fan={fan_run / 'final'}", "--set", "lighting=least_squares")
    for run, column in ((tmp_path / "fan_ls", "loss_g"), (tmp_path / "drn_ls", "loss")):
        assert all(math.isfinite(v) for v in _losses(run, column))
    with pytest.raises(ValueError, match="lighting"):
        _train("fan", tiny, tmp_path / "bad", 1, "--set", "lighting=sunshine")


@pytest.mark.slow
@pytest.mark.integration
def test_train_drn_overfits(drn_run):
    loss = _losses(drn_run, "loss")
    assert all(math.isfinite(v) for v in loss)
    assert _falls(loss)


@pytest.mark.slow
@pytest.mark.integration
def test_checkpoints_reload_into_the_pipeline(tiny, bnet_run, fan_run, drn_run):
    from facelift.pipeline import FaceLift

    bundle = tiny["root"] / "bundle"
    init_bundle.main(["--face-model", str(tiny["face_model"]), "--fan", str(fan_run / "final"),
                      "--drn", str(drn_run / "final"), "--bnet", str(bnet_run / "final"), "--bnet-half",
                      "--drn-detail-gate", "0.2", "--out", str(bundle)])
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg["trained"] == {"fan": True, "drn": True, "bnet": True}
    drn = DRN.from_pretrained(bundle / "drn")
    assert drn.detail_gate == 0.2
    for a, b in zip(drn.state_dict().values(), DRN.from_pretrained(drn_run / "final").state_dict().values()):
        torch.testing.assert_close(a, b)
    pipe = FaceLift.from_pretrained(bundle)
    try:
        assert pipe.bnet is not None and next(pipe.bnet.parameters()).dtype == torch.float32
        trained = type(pipe.fan).from_pretrained(str(fan_run / "final"))
        for a, b in zip(pipe.fan.state_dict().values(), trained.state_dict().values()):
            torch.testing.assert_close(a, b)
        rec = pipe.reconstruct(str(REPO / "examples" / "astronaut.png"))
        assert rec.albedo_source == "fan" and rec.albedo_pca_source == "bnet"
        assert np.isfinite(rec.albedo).all() and np.isfinite(rec.displacement).all()
    finally:
        pipe.close()
    metrics = evaluate.evaluate(tiny["data"], bundle / "bnet", bundle / "fan", bundle / "drn",
                                bundle / "face_model.safetensors", batch_size=4)
    assert metrics["samples"] == 8 and math.isfinite(metrics["fan"]["mean"]) and math.isfinite(
        metrics["pca"]["mean"])
    drn_max_mm = DRN.from_pretrained(bundle / "drn").config["max_rate"] * 1e3
    assert 0 <= metrics["displacement_abs_mm"]["mean"] <= drn_max_mm


@pytest.mark.slow
@pytest.mark.integration
def test_accelerate_two_process_cpu_run(tiny, bnet_run, vgg_path, tmp_path):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate launch is not available")
    out = tmp_path / "fan2"
    # accelerate 1.15: `--cpu` alone starts one process; `--multi_gpu` with no visible GPU starts
    # torch.distributed (gloo) CPU processes.
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "training" / "train_fan.py"),
           "--data", str(tiny["data"]), "--out", str(out), "--resolution", "128", "--batch-size", "2",
           "--max-steps", "2", "--threads", "1", "--set", f"face_model={tiny['face_model']}",
           "--set", f"bnet={bnet_run / 'final'}", "--set", f"vgg={vgg_path}", *SMALL_FAN]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "final" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert all(math.isfinite(v) for v in _losses(out, "loss_g"))


def test_training_without_data_says_what_to_pass(tmp_path):
    from facelift.training.config import FANConfig
    from facelift.training.loop import Run

    with pytest.raises(ValueError, match="--data"):
        Run(FANConfig(out=str(tmp_path / "run")))


def test_lr_decay_follows_a_half_cosine_to_the_final_ratio_then_stays(tiny, tmp_path):
    from facelift.training.config import BNetConfig
    from facelift.training.loop import Run

    def lrs(decay_steps, n=14):
        cfg = BNetConfig(data=str(tiny["data"]), out=str(tmp_path / f"run{decay_steps}"), batch_size=2, limit=4,
                         lr=1e-3, lr_decay_steps=decay_steps, lr_final_ratio=0.1)
        run = Run(cfg)
        net = torch.nn.Linear(2, 2)
        _, opt = run.prepare(net, torch.optim.Adam(net.parameters(), lr=cfg.lr))
        batches, out = run.batches(), []
        for _ in range(n):
            next(batches)
            out.append(opt.param_groups[0]["lr"])
            run.step += 1
        return out

    decayed = lrs(10)
    assert decayed[0] == pytest.approx(1e-3)
    assert decayed[5] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert decayed[10:] == pytest.approx([1e-4] * 4)
    assert all(a >= b for a, b in zip(decayed, decayed[1:]))
    assert lrs(0) == pytest.approx([1e-3] * 14)
    for bad in ({"lr_decay_steps": -1}, {"lr_final_ratio": 1.5}):
        with pytest.raises(ValueError, match="lr_decay_steps"):
            Run(BNetConfig(data=str(tiny["data"]), out=str(tmp_path / "bad"), **bad))
