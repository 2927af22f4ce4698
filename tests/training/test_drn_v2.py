"""DRN v2 (facelift.training.drn_v2): its map operations on known cases, the age selection of
the data, and a short run of the recipe on the tiny synthetic data."""

import csv
import json
import math

import pytest
import torch

from facelift.training import drn_v2
from facelift.training.data import UVDataset, age_selection, utkface_age
from facelift.training.losses import gradient_loss

import fit_lighting
from training_support import REPO
from training_support import train as _train


def test_gaussian_blur_keeps_constants_and_ignores_what_is_outside_the_mask():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 4:28, 4:28] = 1
    x = torch.full((1, 3, 32, 32), 0.7) * mask + (1 - mask) * 5.0  # a bright outside must not leak in
    y = drn_v2.gaussian_blur(x, 2.0, mask)
    assert torch.allclose(y[mask.expand_as(y) > 0], torch.tensor(0.7), atol=1e-5)
    assert y[mask.expand_as(y) == 0].abs().max() == 0
    impulse = torch.zeros(1, 1, 33, 33)
    impulse[..., 16, 16] = 1
    assert drn_v2.gaussian_blur(impulse, 1.5).sum() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(drn_v2.gaussian_blur(impulse, 0), impulse)


def test_weighted_gradient_loss_is_e_grad_for_a_binary_weight():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    vis = (torch.rand(2, 1, 16, 16, generator=g) > 0.3).float()
    assert drn_v2.weighted_gradient_loss(a, b, vis) == pytest.approx(float(gradient_loss(a, b, vis)), rel=1e-6)
    assert drn_v2.weighted_gradient_loss(a, a, vis) == 0


def test_crease_prior_is_deeper_where_darker_and_zero_off_skin():
    tex = torch.full((1, 3, 32, 32), 0.5)
    tex[..., 16, 8:24] = 0.25  # a dark line
    trust = torch.ones(1, 1, 32, 32)
    trust[..., :, :4] = 0
    prior = drn_v2.crease_prior(tex, trust, mm=2.0, sigma=3.0)
    assert (prior[0, 0, 16, 8:24] < -0.5).all() and prior[0, 0, 6, :].abs().max() < 0.05  # mm below its surroundings
    assert prior[..., :4].abs().max() == 0
    assert drn_v2.crease_prior(torch.full_like(tex, 0.4), trust, 2.0, 3.0).abs().max() < 1e-6
    band = drn_v2.crease_prior(tex, trust, 2.0, 3.0, fine_sigma=1.0)  # a band pass: the line, spread a little
    assert (band[0, 0, 16, 10:22] < -0.2).all() and band[0, 0, 16, 12] > prior[0, 0, 16, 12]
    assert band[0, 0, 15, 12] < 0 < prior[0, 0, 15, 12]  # spread over the neighbours, no bright rim


def test_cavity_shading_darkens_a_crease_and_leaves_a_plane():
    mask = torch.ones(1, 1, 32, 32)
    flat = torch.full((1, 1, 32, 32), 1e-3)
    assert torch.allclose(drn_v2.cavity_shading(flat, mask, 0.3, 4.0), torch.ones_like(flat))
    crease = torch.zeros(1, 1, 32, 32)
    crease[..., 16, :] = -1e-3  # 1 mm deep
    shade = drn_v2.cavity_shading(crease, mask, 0.3, 4.0)
    assert 0.65 < shade[0, 0, 16, 16] < 0.8 and shade[0, 0, 8, 16] >= 1.0
    assert shade.min() >= 0.5 and shade.max() <= 1.5


def test_detail_statistics_of_texel_scale_stripes():
    j = torch.arange(64).view(1, 1, 1, 64).expand(1, 1, 64, 64)
    rate = torch.where(j % 2 == 0, 1e-3, -1e-3)  # +-1 mm
    weight = torch.ones(1, 1, 64, 64)
    stats = drn_v2.detail_statistics(rate, weight)
    assert stats["fine_std_mm"] == pytest.approx(1.0, rel=0.02) and stats["p99_mm"] == pytest.approx(1.0)
    assert drn_v2.detail_statistics(rate, torch.zeros_like(weight)) == {"fine_std_mm": 0.0, "p99_mm": 0.0}


def test_utkface_ages_select_samples_and_keep_their_lighting_rows(tiny, tmp_path):
    assert utkface_age("61_0_1_20170110.jpg.chip.jpg") == 61 and utkface_age("synthetic_000.png") is None
    select = age_selection(40, keep_younger=2)
    picked = [select(n) for n in ("20_a.jpg", "21_b.jpg", "22_c.jpg", "23_d.jpg", "45_e.jpg", "x.png")]
    assert picked == [False, True, False, True, True, True]
    fit_lighting.main(["--data", str(tiny["data"]), "--face-model", str(tiny["face_model"]), "--method", "robust"])
    full = UVDataset(tiny["data"], with_lighting="robust")
    odd = UVDataset(tiny["data"], with_lighting="robust", select=lambda n: int(n[-7:-4]) % 2 == 1)
    assert odd.names == full.names[1::2] and list(odd.rows) == list(range(1, len(full), 2))
    assert torch.equal(odd.robust["sh_lf"], full.robust["sh_lf"][1::2])
    assert torch.equal(odd.texture, full.texture[1::2])
    with pytest.raises(ValueError, match="selection"):
        UVDataset(tiny["data"], select=lambda n: False)


def test_fit_lightings_robust_prior_reaches_every_fit_and_is_recorded(tiny, tmp_path):
    import shutil

    import numpy as np

    from facelift.albedo import fit_low_frequency
    from facelift.face_model import FaceModel

    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    args = ["--data", str(data), "--face-model", str(tiny["face_model"]), "--method", "robust"]
    fit_lighting.main(args)
    with np.load(data / "lighting_robust.npz") as z:
        default = z["outlier_coefficients"]
    fit_lighting.main(args + ["--robust-prior-weight", "1e-2", "--workers", "2"])
    with np.load(data / "lighting_robust.npz") as z:
        stiffer = z["outlier_coefficients"]
    assert json.loads((data / "lighting_robust.json").read_text())["robust_prior_weight"] == 1e-2
    item = UVDataset(data)[0]
    tex, nrm = (item[k].permute(1, 2, 0).numpy() for k in ("texture", "normal"))
    fit = fit_low_frequency(FaceModel.load(tiny["face_model"]), tex, nrm, item["visibility"][0].numpy() > 0.5,
                            robust_prior_weight=1e-2)
    np.testing.assert_allclose(stiffer[0], fit.outlier_coefficients, atol=1e-5)
    assert np.abs(stiffer).sum() < np.abs(default).sum()  # a stronger prior pulls towards the mean


@pytest.fixture(scope="module")
def drn_v2_run(tiny):
    fit_lighting.main(["--data", str(tiny["data"]), "--face-model", str(tiny["face_model"]), "--method", "robust"])
    out = tiny["root"] / "drn_v2"
    _train("drn", tiny, out, 3, "--config", str(REPO / "training" / "configs" / "drn_v2.json"),
           "--set", f"fan={REPO / 'checkpoints' / 'fan'}", "--set", "grad_share_every=1", "--set", "min_age=null",
           "--set", "prior_steps=1")
    return out


@pytest.mark.slow
@pytest.mark.integration
def test_drn_v2_trains_logs_every_term_and_runs_in_the_pipeline(drn_v2_run, tiny):
    with open(drn_v2_run / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    terms = ("grad", "const", "smooth", "flat", "prior")
    for k in terms:
        assert all(math.isfinite(float(r[k])) for r in rows), k
    assert sum(float(rows[-1][f"gshare_{k}"]) for k in terms) == pytest.approx(1.0, abs=1e-3)
    assert float(rows[0]["gshare_prior"]) > 0.5  # the warm start ...
    last = {k: float(rows[-1][f"gshare_{k}"]) for k in terms}
    assert last["prior"] == 0 and last["grad"] > 0.2  # ... then E_grad
    assert all(float(r["fine_std_mm"]) >= 0 for r in rows)
    summary = json.loads((drn_v2_run / "final" / "summary.json").read_text())
    assert summary["recipe"] == "v2" and set(summary["last_detail_statistics"]) == {"fine_std_mm", "p99_mm"}
    from facelift.models import DRN

    drn = DRN.from_pretrained(drn_v2_run / "final")
    assert drn.config["inputs"] == drn_v2.V2_INPUTS and drn.config["upsample"] == "resize"
    assert drn(torch.rand(1, 14, 128, 128)).abs().max() <= drn.config["max_rate"]


@pytest.mark.slow
@pytest.mark.integration
def test_drn_v2_pixel_ablation_and_bad_detail_loss(tiny, tmp_path):
    config = str(REPO / "training" / "configs" / "drn_v2.json")
    common = ("--config", config, "--set", f"fan={REPO / 'checkpoints' / 'fan'}", "--set", "min_age=null")
    fit_lighting.main(["--data", str(tiny["data"]), "--face-model", str(tiny["face_model"]), "--method", "robust"])
    _train("drn", tiny, tmp_path / "pixel", 1, *common, "--set", "detail_loss=pixel")
    with open(tmp_path / "pixel" / "losses.csv") as f:
        assert math.isfinite(float(next(csv.DictReader(f))["grad"]))
    with pytest.raises(ValueError, match="detail_loss"):
        _train("drn", tiny, tmp_path / "bad", 1, *common, "--set", "detail_loss=l2")


@pytest.mark.slow
@pytest.mark.integration
def test_a_resumed_run_keeps_the_loss_file_columns(tiny, tmp_path):
    """Resuming at a step where the every-N-steps terms are not measured must not shift the
    CSV's columns (it once broke the loss plot at the first checkpoint after a resume)."""
    from facelift.training.loop import plot_losses

    fit_lighting.main(["--data", str(tiny["data"]), "--face-model", str(tiny["face_model"]), "--method", "robust"])
    args = ("--config", str(REPO / "training" / "configs" / "drn_v2.json"), "--set", f"fan={REPO / 'checkpoints' / 'fan'}",
            "--set", "min_age=null", "--set", "grad_share_every=2")
    _train("drn", tiny, tmp_path / "run", 3, *args)
    _train("drn", tiny, tmp_path / "run", 4, *args)  # resumes at step 3: no gradient shares measured there
    with open(tmp_path / "run" / "losses.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert len({len(r) for r in rows}) == 1
    header, last = rows[0], dict(zip(rows[0], rows[-1]))
    assert "gshare_grad" in header and last["gshare_grad"] == "" and math.isfinite(float(last["grad"]))
    plot_losses(tmp_path / "run" / "losses.csv", tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000
