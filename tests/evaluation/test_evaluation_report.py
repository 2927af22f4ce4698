import json

import pytest

from facelift.evaluation import report


def _summary(**means):
    return {k: {"mean": v, "median": v, "count": 3} for k, v in means.items()}


def _run(**means):
    return {"config": {"images": "x", "limit": None, "seed": 0, "weights": "w", "trained": {"fan": True},
                       "albedo_pca_components": 80, "bnet": False},
            "summary": _summary(**means), "images": [], "failures": [],
            "counts": {"photos": 3, "evaluated": 3, "failed": 0}}


def _val(fan, pca=0.05, fan_drn=None, grad=0.015):
    return {"fan_ls": {"mean": fan}, "pca_ls": {"mean": pca}, "fan_drn_ls": {"mean": fan_drn or fan},
            "grad_fan_drn_ls": {"mean": grad}}


def test_without_ablations_says_how_to_make_them():
    text = report.build([("eval", _run(l1_fan=0.02, l1_pca=0.03))], figure=None)
    assert "## Ablations" in text
    assert "training/run_ablations.sh" in text
    assert "| variant |" not in text


def test_ablation_table_and_relative_changes():
    abl = {
        "fan_base": {"val": _val(0.020, pca=0.040), "eval": _run(l1_fan=0.030, l1_pca=0.035, occlusion_fan=0.5,
                                                                 occlusion_pca=0.4)},
        "fan_nogan": {"val": _val(0.030), "eval": _run(l1_fan=0.015, occlusion_fan=0.75)},
    }
    text = report.build([("eval", _run(l1_fan=0.02, l1_pca=0.03))], figure=None, ablations=abl)
    lines = text.splitlines()
    pca_row = next(line for line in lines if line.startswith("| PCA albedo only"))
    assert "0.0400" in pca_row and "0.0350" in pca_row and "0.4000" in pca_row
    nogan_row = next(line for line in lines if line.startswith("| FAN without the GAN"))
    assert "0.0300" in nogan_row and "0.0150" in nogan_row and "0.7500" in nogan_row
    finding = next(line for line in lines if line.startswith("- FAN without the GAN"))
    assert "val L1 +50.0 %" in finding
    assert "eval L1 -50.0 %" in finding
    assert "occlusion ratio +50.0 %" in finding
    assert "Not run:" in text and "FAN without flip features" in text.split("Not run:")[1]


def test_load_ablations_reads_files(tmp_path):
    (tmp_path / "fan_base.val.json").write_text(json.dumps(_val(0.02)))
    (tmp_path / "drn_pixel.eval.json").write_text(json.dumps(_run(l1_fan=0.03)))
    (tmp_path / "unrelated.val.json").write_text("{}")
    got = report.load_ablations(tmp_path)
    assert set(got) == {"fan_base", "drn_pixel"}
    assert got["fan_base"]["eval"] is None and got["fan_base"]["val"]["fan_ls"]["mean"] == 0.02
    assert report.load_ablations(tmp_path / "missing") == {}


def test_load_ablations_rejects_broken_json(tmp_path):
    (tmp_path / "fan_base.val.json").write_text("{not json")
    with pytest.raises(json.JSONDecodeError):
        report.load_ablations(tmp_path)


def test_main_writes_the_report(tmp_path):
    run = tmp_path / "eval.json"
    run.write_text(json.dumps(_run(l1_fan=0.02, l1_pca=0.03)))
    abl = tmp_path / "abl"
    abl.mkdir()
    (abl / "drn_base.val.json").write_text(json.dumps(_val(0.02, grad=0.020)))
    (abl / "drn_pixel.val.json").write_text(json.dumps(_val(0.02, grad=0.025)))
    out = tmp_path / "EVALUATION.md"
    assert report.main(["--run", f"eval={run}", "--ablations", str(abl), "-o", str(out)]) == 0
    text = out.read_text()
    assert "FAN better" in text
    assert "val E_grad + details +25.0 %" in text


def test_displacement_is_a_factor_not_a_verdict():
    base, pixel = _val(0.02), _val(0.02)
    base["displacement_abs_mm"], pixel["displacement_abs_mm"] = {"mean": 0.02}, {"mean": 0.3}
    lines = report._ablation_section({"drn_base": {"val": base, "eval": None},
                                      "drn_pixel": {"val": pixel, "eval": None}})
    finding = next(line for line in lines if line.startswith("- DRN with a pixel loss"))
    assert "val mean abs displacement mm x15.00" in finding


def test_new_metrics_are_compared_with_sharpness_higher_is_better():
    run = _run(image_occlusion_fan=0.6, image_occlusion_pca=0.8, photo_consistency_fan=0.9,
               photo_consistency_pca=0.6, sharpness_fan=0.7, sharpness_pca=0.35)
    text = report.build([("eval", run)], figure=None)
    finding = next(line for line in text.splitlines() if line.startswith("- **eval**"))
    assert "image-space occlusion ratio: FAN 0.6000 vs PCA 0.8000 (-25 %, FAN better)" in finding
    assert "photo consistency ratio: FAN 0.9000 vs PCA 0.6000 (+50 %, FAN worse)" in finding
    assert "sharpness ratio: FAN 0.7000 vs PCA 0.3500 (+100 %, FAN better)" in finding  # higher is sharper
    worse = report.build([("eval", _run(sharpness_fan=0.2, sharpness_pca=0.4))], figure=None)
    assert "(-50 %, FAN worse)" in worse
    assert "| image-space occlusion ratio, FAN (all kinds) | 0.6000 |" in text
    assert "| &nbsp;&nbsp;jpeg 30 | - | - | 0 |" in text  # a run without that key: a dash, not an error
    for words in ("**Image-space occlusion**", "**Photo consistency**", "**Sharpness**", "`--no-photo-metrics`"):
        assert words in text, words
