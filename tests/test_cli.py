import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facelift.cli import collect_inputs, main, output_names

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.png"
EXPORTED_FILES = {"mesh.glb", "mesh.obj", "mesh.mtl", "albedo.png", "texture.png", "visibility.png", "skin_confidence.png",
                  "albedo_pca.png", "displacement.png", "normal_map.png", "normal_map_details.png", "render.png", "params.json",
                  "overlay.png", "landmarks.json", "depth.png"}


@pytest.mark.slow
@pytest.mark.integration
def test_console_script_on_the_shipped_example(tmp_path):
    """The README's main command, run as a user would (console script in a subprocess)."""
    exe = Path(sys.executable).with_name("facelift")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "facelift.cli"]
    proc = subprocess.run(cmd + ["reconstruct", str(ASTRONAUT), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == f"1 of 1 reconstructed into {tmp_path / 'out'}"
    assert proc.stderr.splitlines()[0] == "facelift: loading the models..."  # said before the wait
    # MediaPipe's native start-up lines (TFLite's XNNPACK note, absl's warnings) are filtered
    for noise in ("TensorFlow Lite", "absl::InitializeLog", "inference_feedback_manager", ".cc:"):
        assert noise not in proc.stderr, proc.stderr[-2000:]
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


@pytest.mark.slow
@pytest.mark.integration
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
    assert "facelift: skipped 1 file that is not an image by its extension: notes.txt\n" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_good"]
    assert {p.name for p in (out / "a_good").iterdir()} == EXPORTED_FILES


def test_missing_input_file_fails_with_a_message(tmp_path, capsys):
    code = main(["reconstruct", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "out")])
    assert code == 1
    assert "File not found" in capsys.readouterr().err


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["reconstruct", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "skipped" not in err
    (tmp_path / "empty" / "notes.txt").write_text("x")
    assert main(["reconstruct", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "skipped 1 file that is not an image by its extension: notes.txt" in err


@pytest.mark.slow
@pytest.mark.integration
def test_files_without_an_image_extension_are_listed_as_skipped(tmp_path, capsys):
    """A folder's non-image files are not tried, and not silently lost either: one line on
    stderr with their count and the first few names (relative to the folder); exit code as
    if they were not there."""
    src = tmp_path / "photos"
    _copy_astronauts(src, ["face.png"])
    for name in ("a.txt", "b.pdf", "c\nnewline.txt", "c.pts", "d", "sub/e.mat", "sub/f.heic"):
        (src / name).parent.mkdir(exist_ok=True)
        (src / name).write_text("not an image")
    out = tmp_path / "out"
    assert main(["reconstruct", str(src), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if "skipped" in line]
    assert skipped == [("facelift: skipped 7 files that are not images by their extension: "
                        "a.txt, b.pdf, c\\nnewline.txt, c.pts, d and 2 more")]  # the newline escaped
    assert "FAILED" not in captured.err
    assert captured.out.strip().splitlines()[-1] == f"1 of 1 reconstructed into {out}"
    _assert_only_complete_outputs(out, ["face"])
    skipped = []
    assert collect_inputs([str(src)], skipped) == [src / "face.png"]
    assert skipped == [Path(n) for n in ("a.txt", "b.pdf", "c\nnewline.txt", "c.pts", "d", "sub/e.mat",
                                          "sub/f.heic")]
    assert main(["reconstruct", str(src), "-o", str(out), "-q"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.slow
@pytest.mark.integration
def test_outputs_writes_only_what_is_asked(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", str(ASTRONAUT), "-o", str(out), "--outputs", "overlay, landmarks,obj", "-q"]) == 0
    assert {p.name for p in (out / "astronaut").iterdir()} == {"overlay.png", "landmarks.json", "mesh.obj", "mesh.mtl",
                                                               "albedo.png", "params.json"}
    import trimesh

    obj = trimesh.load(out / "astronaut" / "mesh.obj", force="mesh", process=False)
    assert len(obj.vertices) > 10000 and obj.visual.uv is not None
    assert main(["reconstruct", str(ASTRONAUT), "-o", str(out), "-q"]) == 0  # all, over the smaller export
    assert {p.name for p in (out / "astronaut").iterdir()} == EXPORTED_FILES


def test_unknown_outputs_are_refused_with_the_valid_names(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["reconstruct", str(ASTRONAUT), "-o", str(tmp_path / "out"), "--outputs", "glb,mesh"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --outputs: Unknown output 'mesh'. Valid: glb, obj, albedo," in err
    assert "overlay, landmarks, depth, params" in err
    assert not (tmp_path / "out").exists()


def test_output_names_are_safe_and_unique(tmp_path):
    names = output_names([Path("x/photo.jpg"), Path("y/photo.png"), Path("../../etc/pa ss wd.png"), Path(".jpg")])
    assert names == ["photo", "photo_2", "pa_ss_wd", "jpg"]
    (tmp_path / "d").mkdir()
    for n in ("b.JPG", "a.png", "c.txt"):
        (tmp_path / "d" / n).write_bytes(b"")
    assert [p.name for p in collect_inputs([str(tmp_path / "d")])] == ["a.png", "b.JPG"]


@pytest.mark.slow
@pytest.mark.integration
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


@pytest.mark.slow
@pytest.mark.integration
def test_benchmark_prints_every_stage_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["benchmark", "--size", "256", "--repeat", "1", "--batch", "2", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    assert list(result["stages_ms"]) == ["decode", "landmarks", "fit", "unwrap", "fan", "drn", "lighting", "mesh",
                                         "render", "export"]
    for key in ("end_to_end_ms", "reconstruct_call_ms", "reconstruct_between_exports_ms", "model_load_ms",
                "peak_rss_mb", "batch_throughput"):
        assert key in result and result[key]
    assert result["end_to_end_ms"]["p90"] >= result["end_to_end_ms"]["median"] > 0
    assert "photos/s" in text and "end to end" in text and "reconstruct() between exports" in text
    floor = result["floor_ms"]["median"]
    assert 0 < floor < result["reconstruct_less_decode_ms"]["median"]  # the floor is part of the run
    assert result["floor_ratio"] == result["reconstruct_less_decode_ms"]["median"] / floor
    assert "x the floor" in text


# ----------------------------------------------------------------------------- failures, summary, Ctrl-C

def _copy_astronauts(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(ASTRONAUT, folder / n)


def _assert_only_complete_outputs(out: Path, expected=None) -> list[str]:
    """Every entry of `out` is a complete output folder (no temporary or half-written one)."""
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []
    for n in names:
        assert not n.startswith("."), f"temporary folder left behind: {n}"
        assert {p.name for p in (out / n).iterdir()} == EXPORTED_FILES, n
    if expected is not None:
        assert names == expected
    return names


@pytest.mark.slow
@pytest.mark.integration
def test_each_failure_is_reported_as_it_happens_on_one_line(tmp_path, capsys, monkeypatch):
    from facelift import FaceLift
    from facelift.errors import FaceLiftError

    src = tmp_path / "photos"
    _copy_astronauts(src, ["a_good.png", "d_good.png"])
    (src / "b_not_an_image.jpg").write_text("this is text, not a JPEG")
    (src / "c_bad\nname.png").write_text("a newline in the name")
    (src / "e_two_lines.png").write_bytes(ASTRONAUT.read_bytes())
    original = FaceLift.reconstruct
    seen = {}  # what stderr held when each file started

    def spy(self, image, face_index=0):
        seen[Path(image).name] = capsys.readouterr().err
        if Path(image).name == "e_two_lines.png":
            raise FaceLiftError("first line\nsecond   line")
        return original(self, image, face_index=face_index)

    monkeypatch.setattr(FaceLift, "reconstruct", spy)
    out = tmp_path / "out"
    code = main(["reconstruct", str(src), "-o", str(out)])
    captured = capsys.readouterr()
    err = "".join(seen.values()) + captured.err
    assert code == 1
    # b's failure was printed before c started, c's before d started
    assert "FAILED " in seen["c_bad\nname.png"] and "b_not_an_image.jpg" in seen["c_bad\nname.png"]
    assert "c_bad\\nname.png" in seen["d_good.png"]
    failed = [line for line in err.splitlines() if line.startswith("FAILED ")]
    assert len(failed) == 3, err
    assert failed[0].startswith(f"FAILED {src / 'b_not_an_image.jpg'}: ") and "not an image" in failed[0]
    assert failed[1].startswith(f"FAILED {src}/c_bad\\nname.png: ")  # the name's newline shown escaped
    assert failed[2] == f"FAILED {src / 'e_two_lines.png'}: first line second line"
    assert captured.out.strip().splitlines()[-1] == f"2 of 5 reconstructed into {out}, 3 failed"
    listed = captured.err[captured.err.index("failed (3 of 5):"):].splitlines()[1:]
    assert [line.split(": ", 1)[0].strip() for line in listed] == \
        [str(src / "b_not_an_image.jpg"), f"{src}/c_bad\\nname.png", str(src / "e_two_lines.png")]
    assert listed[2] == f"  {src / 'e_two_lines.png'}: first line second line"
    _assert_only_complete_outputs(out, ["a_good", "d_good"])


@pytest.mark.slow
@pytest.mark.integration
def test_summary_line_and_exit_code_when_all_succeed(tmp_path, capsys):
    _copy_astronauts(tmp_path / "in", ["x.png", "y.png"])
    assert main(["reconstruct", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == f"2 of 2 reconstructed into {tmp_path / 'out'}"
    assert "FAILED" not in captured.err
    assert main(["reconstruct", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"]) == 0  # replaces its own
    assert capsys.readouterr().out == ""


@pytest.mark.slow
@pytest.mark.integration
def test_existing_user_folder_is_a_failure_not_a_loss(tmp_path, capsys):
    _copy_astronauts(tmp_path / "in", ["photo.png"])
    (tmp_path / "out" / "photo").mkdir(parents=True)
    (tmp_path / "out" / "photo" / "mine.txt").write_text("keep me")
    assert main(["reconstruct", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 1
    assert "not a FaceLift export" in capsys.readouterr().err
    assert (tmp_path / "out" / "photo" / "mine.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    assert main(["reconstruct", str(tmp_path / "in"), "-o", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["reconstruct", "export"])
@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_mid_batch_keeps_finished_folders_only(tmp_path, capsys, monkeypatch, where):
    """Ctrl-C during the third photo (inside reconstruct, or half-way through writing its
    files): exit 130, the two finished folders kept, no half-written one, failures and summary."""
    from facelift import FaceLift
    from facelift import export as ex

    src = tmp_path / "photos"
    _copy_astronauts(src, ["a.png", "c.png", "d.png", "e.png"])
    (src / "b_broken.png").write_bytes(ASTRONAUT.read_bytes()[:5000])  # truncated
    calls = {"n": 0}
    if where == "reconstruct":
        original = FaceLift.reconstruct

        def interrupt(self, image, face_index=0):
            calls["n"] += 1
            if calls["n"] == 4:  # a, b (fails), c, then d
                raise KeyboardInterrupt
            return original(self, image, face_index=face_index)

        monkeypatch.setattr(FaceLift, "reconstruct", interrupt)
    else:
        original = ex.save_png

        def interrupt(path, *args, **kwargs):
            if Path(path).parent.name.startswith(".d" + ".facelift-tmp-"):
                calls["n"] += 1
                if calls["n"] == 3:  # some of d's files are written by now
                    assert len(list(Path(path).parent.iterdir())) >= 3
                    raise KeyboardInterrupt
            return original(path, *args, **kwargs)

        monkeypatch.setattr(ex, "save_png", interrupt)
    out = tmp_path / "out"
    code = main(["reconstruct", str(src), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 130
    _assert_only_complete_outputs(out, ["a", "c"])
    assert [line for line in err.splitlines() if line.startswith("FAILED ")] == \
        [f"FAILED {src / 'b_broken.png'}: b_broken.png is damaged or incomplete (truncated) and cannot be read."]
    assert f"interrupted after 3 of 5 file(s): 2 reconstructed into {out}, 1 failed (listed above)" in err
    assert "Traceback" not in err


def test_ctrl_c_while_loading_exits_130_without_traceback(tmp_path, capsys, monkeypatch):
    from facelift import FaceLift

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(FaceLift, "from_pretrained", interrupted)
    assert main(["reconstruct", str(ASTRONAUT), "-o", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["facelift: loading the models...", "",
                                                            "facelift: interrupted"]
    assert not (tmp_path / "out").exists()


def _console_script() -> list[str]:
    exe = Path(sys.executable).with_name("facelift")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "facelift.cli"]


def _wait_for(predicate, proc, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"facelift ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _interrupt_when(args, predicate, timeout: float, what: str) -> str:
    """Run `facelift ARGS`, send SIGINT once predicate(proc) holds, assert exit 130; its stderr."""
    proc = subprocess.Popen(_console_script() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for(lambda: predicate(proc), proc, timeout, what)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    return err


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
@pytest.mark.slow
@pytest.mark.integration
def test_real_sigint_to_a_running_batch(tmp_path):
    """`facelift reconstruct folder/` in a subprocess, SIGINT as soon as an export's temporary
    folder appears (i.e. in the middle of writing one): exit 130, no traceback, only complete
    output folders, a summary."""
    src = tmp_path / "photos"
    _copy_astronauts(src, [f"p{i:02d}.png" for i in range(12)])
    out = tmp_path / "out"

    def writing(_proc) -> bool:
        return out.is_dir() and any(".facelift-tmp-" in p.name for p in out.iterdir())

    err = _interrupt_when(["reconstruct", str(src), "-o", str(out)], writing, 240, "the first export started")
    assert "interrupted after" in err, err[-2000:]
    names = _assert_only_complete_outputs(out)
    assert len(names) < 12


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.integration
def test_real_sigint_while_loading(tmp_path):
    """SIGINT while the process is importing torch / loading the weights: exit 130, no traceback."""
    def loading(proc) -> bool:
        try:
            return "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:
            return False

    err = _interrupt_when(["reconstruct", str(ASTRONAUT), "-o", str(tmp_path / "out")], loading, 120,
                          "torch started loading")
    assert "interrupted" in err, err[-2000:]
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- several faces

@pytest.mark.slow
@pytest.mark.integration
def test_several_faces_are_listed(tmp_path, capsys, shared_file):
    photo = shared_file("data/faces/eval/3ddfa_v2/trump_hillary.jpg")
    out = tmp_path / "out"
    assert main(["reconstruct", str(photo), "-o", str(out), "--face-index", "1"]) == 0
    text = capsys.readouterr().out
    assert "2 faces found" in text and "reconstructed face 1" in text and "--face-index" in text
    params = json.loads((out / "trump_hillary" / "params.json").read_text())
    assert params["n_faces"] == 2 and params["face_index"] == 1 and params["max_faces"] == 20
    assert [f["index"] for f in params["faces"]] == [0, 1]
    assert params["faces"][1]["box"] == params["face_box"]
    area = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in (f["box"] for f in params["faces"])]
    assert area[0] >= area[1]  # largest first
    assert main(["reconstruct", str(photo), "-o", str(out), "--face-index", "5"]) == 1
    err = capsys.readouterr().err
    assert "face_index=5, but 2 face(s) were found" in err and "1: " in err
    assert main(["reconstruct", str(photo), "-o", str(tmp_path / "one"), "--max-faces", "1", "-q"]) == 0
    assert json.loads((tmp_path / "one" / "trump_hillary" / "params.json").read_text())["n_faces"] == 1
