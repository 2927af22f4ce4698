import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from facelift.cli import collect_inputs, main, output_names

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.png"
EXPORTED_FILES = {"mesh.glb", "mesh.obj", "mesh.mtl", "albedo.png", "texture.png", "visibility.png",
                  "albedo_pca.png", "displacement.png", "normal_map.png", "render.png", "params.json"}


def test_console_script_on_the_shipped_example(tmp_path):
    """The README's main command, run as a user would (console script in a subprocess)."""
    exe = Path(sys.executable).with_name("facelift")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "facelift.cli"]
    proc = subprocess.run(cmd + ["reconstruct", str(ASTRONAUT), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out" / "astronaut"
    assert {p.name for p in out.iterdir()} == EXPORTED_FILES
    assert json.loads((out / "params.json").read_text())["n_faces"] == 1
    import trimesh

    glb = trimesh.load(out / "mesh.glb", force="mesh")
    assert glb.visual.uv is not None and len(glb.faces) > 10000
    obj = trimesh.load(out / "mesh.obj", force="mesh")
    assert obj.visual.uv is not None and obj.visual.material.image is not None
    render = np.asarray(Image.open(out / "render.png"))
    assert render.shape == (512, 512, 3) and (render < 250).any(axis=2).mean() > 0.2


def test_batch_survives_bad_files_and_reports_them(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(ASTRONAUT, src / "a_good.png")
    (src / "b_not_an_image.jpg").write_text("this is text, not a JPEG")
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(src / "c_no_face.png")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    code = main(["reconstruct", str(src), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "b_not_an_image.jpg" in err and "c_no_face.png" in err and "No face" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_good"]
    assert {p.name for p in (out / "a_good").iterdir()} == EXPORTED_FILES


def test_missing_input_file_fails_with_a_message(tmp_path, capsys):
    code = main(["reconstruct", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "out")])
    assert code == 1
    assert "File not found" in capsys.readouterr().err


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["reconstruct", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    assert "no images" in capsys.readouterr().err


def test_output_names_are_safe_and_unique(tmp_path):
    names = output_names([Path("x/photo.jpg"), Path("y/photo.png"), Path("../../etc/pa ss wd.png"), Path(".jpg")])
    assert names == ["photo", "photo_2", "pa_ss_wd", "jpg"]
    (tmp_path / "d").mkdir()
    for n in ("b.JPG", "a.png", "c.txt"):
        (tmp_path / "d" / n).write_bytes(b"")
    assert [p.name for p in collect_inputs([str(tmp_path / "d")])] == ["a.png", "b.JPG"]


def test_evaluate_small_folder_writes_json_and_lists_failures(tmp_path, capsys):
    """`facelift evaluate` end to end on two photos: one face, one without (listed, not fatal)."""
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(ASTRONAUT, src / "a_face.png")
    (src / "b_skipped_by_limit.png").write_bytes(ASTRONAUT.read_bytes())
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(src / "c_no_face.png")
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(src), "--limit", "2", "--json", str(out), "--markdown", str(tmp_path / "e.md"),
                 "-q"])
    text = capsys.readouterr().out
    assert code == 0
    assert "fidelity L1, FAN albedo" in text and "FAILED" in text and "1 of 2 photos evaluated" in text
    result = json.loads(out.read_text())
    assert [im["image"] for im in result["images"]] == ["a_face.png"]
    assert [f["image"] for f in result["failures"]] == ["c_no_face.png"]
    assert result["summary"]["l1_fan"]["count"] == 1 and 0 < result["summary"]["l1_fan"]["mean"] < 1
    assert "| metric |" in (tmp_path / "e.md").read_text()


def test_evaluate_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err


def test_benchmark_prints_every_stage_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--size", "256", "--repeat", "1", "--batch", "2", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    assert list(result["stages_ms"]) == ["decode", "landmarks", "fit", "unwrap", "fan", "drn", "lighting", "mesh",
                                         "render", "export"]
    for key in ("end_to_end_ms", "model_load_ms", "peak_rss_mb", "batch_throughput"):
        assert key in result and result[key]
    assert result["end_to_end_ms"]["p90"] >= result["end_to_end_ms"]["median"] > 0
    assert "photos/s" in text and "end to end" in text
