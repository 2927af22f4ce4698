"""The demo app's API, driven with gradio_client against a running `python app.py`.

The server (tests/app_server.py) is shared with the browser test; it needs the bundle in
checkpoints/ and an offscreen OpenGL driver, like the rest of the pipeline tests.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import ARTIFACTS, REPO, app_server

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

EXAMPLE = REPO / "examples" / "astronaut.png"
VIEW_PARAMETERS = ["yaw", "pitch", "light_azimuth", "light_elevation", "light_intensity", "details", "mode",
                   "lighting", "albedo"]


@pytest.fixture(scope="module")
def server(request):
    return app_server(request.config)


@pytest.fixture(scope="module")
def client(server):
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def reconstructed(client):
    start = time.perf_counter()
    out = client.predict(handle_file(str(EXAMPLE)), 0, api_name="/reconstruct")
    return out, time.perf_counter() - start



def _image(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _error_message(excinfo) -> str:
    return str(excinfo.value)


# ---- the API's shape (no server needed) -----------------------------------------------------

@pytest.mark.slow
def test_api_endpoints_and_parameters():
    import app

    named = app.demo.get_api_info()["named_endpoints"]
    assert {"/reconstruct", "/overlay", "/render", "/downloads", "/turntable"} <= set(named)
    params = {name: [p["parameter_name"] for p in info["parameters"]] for name, info in named.items()}
    assert params["/reconstruct"] == ["image", "face_index", "opacity"]  # the session state is not a parameter
    assert params["/overlay"] == ["opacity"]
    assert params["/render"] == VIEW_PARAMETERS
    assert params["/downloads"] == ["details"]  # the turntable is its own job
    assert params["/turntable"] == VIEW_PARAMETERS
    defaults = {p["parameter_name"]: p["parameter_default"] for p in named["/render"]["parameters"]}
    assert defaults["yaw"] == 0 and defaults["mode"] == "shaded" and defaults["albedo"] == "fan"
    assert len(named["/reconstruct"]["returns"]) == 11
    assert len(named["/downloads"]["returns"]) == 2
    # internal chain steps are not public endpoints
    assert not any(name.startswith(("/first_view", "/reset_faces", "/reconstruct_face", "/turntable_after",
                                    "/control_states", "/model_view")) for name in named)



@pytest.mark.slow
def test_importing_the_app_makes_no_folder_and_leaves_the_environment(tmp_path):
    """Importing the demo modules writes nothing: the sessions' work folder is made on first use,
    not at import, and gradio's analytics are off through gr.Blocks, not by writing
    GRADIO_ANALYTICS_ENABLED into the environment. Building the page (importing app.py) adds only
    gradio's own cache folder (gr.Examples copies the example photo into it)."""
    import subprocess
    import sys

    code = """if True:
        import json, os, tempfile
        from demo import config, handlers, http_guard, jobs, memory, photo, sessions, uploads
        seen = {"modules": sorted(os.listdir(tempfile.gettempdir()))}
        import app
        seen["app"] = sorted(os.listdir(tempfile.gettempdir()))
        root = sessions.work_root()
        seen["first_use"] = sorted(set(os.listdir(tempfile.gettempdir())) - set(seen["app"]))
        seen["root_in_tmp"] = str(root.parent) == tempfile.gettempdir()
        seen["env"] = os.environ.get("GRADIO_ANALYTICS_ENABLED")
        seen["analytics"] = app.demo.analytics_enabled
        print(json.dumps(seen))
    """
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_ANALYTICS_ENABLED", "GRADIO_TEMP_DIR")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["modules"] == [], seen  # the demo modules made nothing in the temporary folder
    assert seen["app"] == ["gradio"], seen  # the page: gradio's cache, nothing of ours
    assert seen["env"] is None and seen["analytics"] is False, seen
    assert seen["root_in_tmp"] and len(seen["first_use"]) == 1, seen
    assert seen["first_use"][0].startswith("facelift-app-"), seen
    assert [p.name for p in tmp_path.iterdir()] == ["gradio"]  # and the work folder went at exit

# ---- against the running app -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.integration
def test_reconstruct_returns_every_map(reconstructed):
    out, seconds = reconstructed
    overlay, detected, texture, skin_confidence, albedo_pca, albedo_fan, displacement, normal_map, sphere, face, \
        summary = out
    photo = _image(detected)
    assert _image(overlay).shape[:2] == photo.shape[:2]  # the face over the photo, the photo's size (<= 768)
    assert photo.shape[2] == 3 and max(photo.shape[:2]) <= 768
    for path in (texture, skin_confidence, albedo_pca, albedo_fan, normal_map):
        assert _image(path).shape == (256, 256, 3)
    disp = _image(displacement)
    assert disp.shape[1] > disp.shape[0]  # the map plus its colour bar
    assert _image(sphere).shape == (256, 256, 3)
    assert face["choices"] == [["Face 1", 0]] and face["value"] == 0
    assert face["visible"] is False  # no choice to make: the selector stays hidden
    assert "Face 1 of 1" in summary
    (ARTIFACTS / "api_timings.json").write_text(json.dumps({"reconstruct_api_s": round(seconds, 3)}))


@pytest.mark.slow
@pytest.mark.integration
def test_render_uses_the_sessions_reconstruction(client, reconstructed):
    front = _image(client.predict(yaw=0, api_name="/render"))
    assert front.shape == (512, 512, 3)
    times = []
    for yaw in (30, -30):
        start = time.perf_counter()
        turned = _image(client.predict(yaw=yaw, api_name="/render"))
        times.append(time.perf_counter() - start)
        assert np.abs(turned.astype(int) - front.astype(int)).mean() > 2
    normals = _image(client.predict(yaw=0, mode="normals", api_name="/render"))
    assert np.abs(normals.astype(int) - front.astype(int)).mean() > 5
    photo_light = _image(client.predict(lighting="photo", api_name="/render"))
    assert photo_light.shape == (512, 512, 3)
    timings = json.loads((ARTIFACTS / "api_timings.json").read_text()) if (ARTIFACTS / "api_timings.json").exists() \
        else {}
    timings["render_api_s"] = [round(t, 3) for t in times]
    (ARTIFACTS / "api_timings.json").write_text(json.dumps(timings))


@pytest.mark.slow
@pytest.mark.integration
def test_overlay_endpoint(client, reconstructed):
    """/overlay: the face drawn over the photo in its pose, the opacity blending photo and render."""
    out, _ = reconstructed
    photo = _image(EXAMPLE)
    first = _image(out[0])
    none = _image(client.predict(0.0, api_name="/overlay"))
    full = _image(client.predict(1.0, api_name="/overlay"))
    assert none.shape == first.shape == photo.shape
    assert np.abs(none.astype(int) - photo).mean() < 6  # opacity 0: the photo (JPEG-encoded)
    changed = np.abs(full.astype(int) - none).max(axis=2) > 12
    assert 0.005 < changed.mean() < 0.2  # the face (about 90x105 px of 512x512) is drawn over, not the photo
    ys, xs = np.nonzero(changed)
    assert 180 < xs.mean() < 270 and 70 < ys.mean() < 180  # within the astronaut's face box
    assert np.abs(first.astype(int) - none).mean() < np.abs(full.astype(int) - none).mean()  # 0.7 lies between


@pytest.mark.slow
@pytest.mark.integration
def test_downloads(client, reconstructed):
    glb, files = client.predict(api_name="/downloads")
    names = {Path(f).name: Path(f) for f in files}
    assert Path(glb).name == "mesh.glb" and Path(glb).read_bytes()[:4] == b"glTF"
    # exactly what the page offers (no render.png; the turntable is its own job)
    from demo.config import DOWNLOAD_FILES

    assert sorted(names) == sorted(["mesh.glb", "astronaut_obj.zip", *DOWNLOAD_FILES])
    with zipfile.ZipFile(names["astronaut_obj.zip"]) as zf:
        assert sorted(zf.namelist()) == ["albedo.png", "mesh.mtl", "mesh.obj"]
    params = json.loads(names["params.json"].read_text())
    assert params["n_faces"] == 1 and len(params["sh_coefficients"]) == 27
    assert "render" not in params["outputs"] and "overlay" in params["outputs"]
    # overlay.png is photo | overlay | frontal render, drawn over the photo (not over black)
    figure = _image(names["overlay.png"])
    photo = _image(EXAMPLE)
    w = photo.shape[1]
    assert figure.shape == (photo.shape[0], 3 * w, 3)
    assert np.abs(figure[:, :w].astype(int) - photo).mean() < 3
    background = np.abs(figure[:, w:2 * w].astype(int) - photo).max(axis=2) < 8
    assert background.mean() > 0.3  # the photo shows around the face
    assert json.loads(names["landmarks.json"].read_text())["mediapipe"]["count"] == 478
    # the 3D view's GLB carries the details as its normal map, and drops it with "Geometric details" off
    import trimesh

    assert "normal_map_details.png" in names
    assert trimesh.load(glb, force="mesh").visual.material.normalTexture is not None
    smooth, _ = client.predict(details=False, api_name="/downloads")
    assert Path(smooth).name == "astronaut_no_details.glb"
    assert trimesh.load(smooth, force="mesh").visual.material.normalTexture is None
    gif = client.predict(api_name="/turntable")
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames >= 12


def test_control_states():
    """Light controls only where they apply; one place (the checkbox) for the details."""
    import app
    from demo import handlers

    def interactive(mode, lighting):
        return [u["interactive"] for u in handlers.control_states(mode, lighting)]

    # lighting radio, azimuth, elevation, intensity, albedo radio
    assert interactive("shaded", "directional") == [True, True, True, True, True]
    assert interactive("shaded", "photo") == [True, False, False, False, True]
    assert interactive("albedo", "directional") == [False, False, False, False, True]
    assert interactive("normals", "directional") == [False, False, False, False, False]
    assert "shaded_details" not in [value for _, value in app.MODES]


def test_faces_are_numbered_from_one():
    from demo import handlers

    one, two = handlers.face_selector(1), handlers.face_selector(2, 1)
    assert one.visible is False and two.visible is True and two.value == 1
    assert [label for label, _ in two.choices] == ["Face 1 (largest)", "Face 2"]
    message = handlers.no_such_face(3, 1)
    assert message.startswith("There is no face 4 in this photo: it has 1 face (Face 1, largest first)")
    assert "0..0" not in message and "face_index=3" in message
    assert "Face 1 to Face 2" in handlers.no_such_face(5, 2)


def test_overlay_blend_and_photo_kept_for_the_exports():
    from demo.photo import blend, with_photo

    photo = np.full((4, 6, 3), 200, np.uint8)
    render = np.zeros((4, 6, 3), np.uint8)
    render[1:3, 2:4] = 100  # premultiplied: full coverage there
    alpha = np.zeros((4, 6), np.uint8)
    alpha[1:3, 2:4] = 255
    layers = (photo, render, alpha)
    assert (blend(layers, 0.0) == photo).all()
    assert (blend(layers, 1.0)[1:3, 2:4] == 100).all() and (blend(layers, 1.0)[0] == 200).all()
    assert (blend(layers, 0.5)[1, 2] == 150).all()
    assert (blend(layers, 7) == blend(layers, 1.0)).all()  # clamped
    from types import SimpleNamespace

    assert with_photo(SimpleNamespace(photo=None), "rec") == "rec"


@pytest.mark.slow
@pytest.mark.integration
def test_sessions_are_separate_and_render_needs_a_reconstruction(server):
    fresh = Client(server.url, verbose=False)
    with pytest.raises(Exception) as excinfo:
        fresh.predict(yaw=10, api_name="/render")
    assert "Reconstruct first" in _error_message(excinfo)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height pixels (and holds none): the size check must come first."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("case", ["not_an_image", "no_face", "too_large", "bad_face_index"])
@pytest.mark.slow
@pytest.mark.integration
def test_clear_error_messages(server, tmp_path, case):
    c = Client(server.url, verbose=False)
    index = 0
    if case == "not_an_image":
        path, expected = tmp_path / "notes.png", "not an image FaceLift can read"
        path.write_text("this is not a picture\n")
    elif case == "no_face":
        path, expected = tmp_path / "wall.png", "No face was found"
        Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(path)
    elif case == "too_large":
        path, expected = _png_header_only(tmp_path / "huge.png", 10000, 8000), "more than the limit"
    else:
        path, expected, index = EXAMPLE, "There is no face 4 in this photo: it has 1 face", 3
    with pytest.raises(Exception) as excinfo:
        c.predict(handle_file(str(path)), index, api_name="/reconstruct")
    message = _error_message(excinfo)
    assert expected in message
    assert "Traceback" not in message


def two_faces(path: Path) -> Path:
    """The example photo next to a smaller copy of itself: two faces."""
    with Image.open(EXAMPLE) as im:
        big = im.convert("RGB")
    small = big.resize((384, 384))
    canvas = Image.new("RGB", (big.width + small.width, big.height), "white")
    canvas.paste(big, (0, 0))
    canvas.paste(small, (big.width, 64))
    canvas.save(path)
    return path


@pytest.mark.slow
@pytest.mark.integration
def test_several_faces_can_be_selected(server, tmp_path):
    c = Client(server.url, verbose=False)
    out = c.predict(handle_file(str(two_faces(tmp_path / "two.png"))), 1, api_name="/reconstruct")
    face, summary = out[9], out[10]
    assert face["choices"] == [["Face 1 (largest)", 0], ["Face 2", 1]] and face["value"] == 1
    assert face["visible"] is True
    assert "Face 2 of 2" in summary
    assert _image(c.predict(api_name="/render")).shape == (512, 512, 3)


def test_session_files_are_removed_with_the_session():
    from demo import sessions

    session = sessions.Session(rec=None, name="x")
    folders = [session.new_dir(), session.new_dir()]
    (folders[0] / "mesh.glb").write_bytes(b"glTF")
    assert all(f.is_dir() and f.parent == sessions.work_root() for f in folders)
    sessions.drop_session(session)  # what gr.State's delete_callback and a new reconstruction do
    assert not any(f.exists() for f in folders)
    sessions.drop_session(None)  # no reconstruction yet: nothing to do


def test_unexpected_errors_become_a_friendly_message(monkeypatch, caplog):
    import gradio as gr

    from demo import config, handlers
    from facelift.errors import NoFaceError

    class Broken:
        def reconstruct(self, image, face_index):
            raise RuntimeError("boom: an internal detail")

    class NoFace:
        def reconstruct(self, image, face_index):
            raise NoFaceError("No face was found in the 10x10 image.")

    monkeypatch.setattr(handlers, "get_pipeline", lambda: Broken())
    with pytest.raises(gr.Error) as excinfo:
        handlers.reconstruct(str(EXAMPLE), 0, 0.7, None)
    assert excinfo.value.message == config.GENERIC_ERROR
    assert "boom: an internal detail" in caplog.text  # the traceback stays in the server log
    monkeypatch.setattr(handlers, "get_pipeline", lambda: NoFace())
    with pytest.raises(gr.Error) as excinfo:
        handlers.reconstruct(str(EXAMPLE), 0, 0.7, None)
    assert excinfo.value.message == "No face was found in the 10x10 image."
    with pytest.raises(gr.Error, match="Upload a photo first"):
        handlers.reconstruct(None, 0, 0.7, None)
    with pytest.raises(gr.Error, match="face number"):
        handlers.reconstruct(str(EXAMPLE), "second", 0.7, None)


# ---- bounded memory and files with many sessions (in-process) ------------------------------

def test_turntable_and_export_folders_are_bounded_per_session():
    from demo import config, sessions

    session = sessions.Session(rec=None, name="x")
    made = []
    for _ in range(5):  # five clicks on "Redo turntable"
        with session.workdir("turntable", keep=config.TURNTABLES_KEPT) as folder:
            (folder / "x_turntable.gif").write_bytes(b"GIF89a")
            made.append(folder)
    for _ in range(3):  # /downloads called three times
        with session.workdir("export", keep=1) as folder:
            made.append(folder)
    kept = session.folders()
    assert kept == made[3:5] + made[7:8]  # the newest two turntables and the newest export
    assert [f for f in made if f.exists()] == kept
    # a folder still being written when the session closes goes when its handler finishes
    with session.workdir("turntable", keep=config.TURNTABLES_KEPT) as busy:
        sessions.drop_session(session)
        assert busy.is_dir() and not any(f.exists() for f in kept)
    assert not busy.exists() and session.folders() == []
    with pytest.raises(sessions.SessionExpired):
        session.new_dir()


def test_kept_reconstructions_are_bounded_least_recently_used_first(monkeypatch):
    import gradio as gr

    from demo import handlers, sessions

    kept = sessions.KeptReconstructions(limit=3)
    monkeypatch.setattr(sessions, "KEPT", kept)
    visitors = []
    for i in range(3):
        visitors.append(sessions.Session(rec=f"rec{i}", name=f"s{i}"))
        kept.add(visitors[-1])
        visitors[-1].new_dir()
    assert handlers._require(visitors[0])[1] == "rec0"  # used: now the most recent
    for i in (3, 4):
        visitors.append(sessions.Session(rec=f"rec{i}", name=f"s{i}"))
        kept.add(visitors[-1])
    assert len(kept) == 3
    assert [s.rec for s in visitors] == ["rec0", None, None, "rec3", "rec4"]
    assert visitors[1].folders() == [] and visitors[1].closed
    with pytest.raises(gr.Error, match="session expired: reconstruct again"):
        handlers._require(visitors[1])
    sessions.drop_session(visitors[3])  # gradio's delete_callback (state expiry)
    assert len(kept) == 2


def test_kept_reconstructions_are_bounded_per_client_address(monkeypatch):
    """Issue 17: a flood of sessions from one address kept 64 reconstructions of big photos
    (650 MB) for an hour; now one address keeps at most `per_client`, replacing its own."""
    from demo import handlers, sessions

    kept = sessions.KeptReconstructions(limit=5, per_client=2)
    monkeypatch.setattr(sessions, "KEPT", kept)
    visitor = sessions.Session(rec="visitor", name="v", address="203.0.113.1")
    kept.add(visitor)
    flood = [sessions.Session(rec=f"flood{i}", name=f"f{i}", address="198.51.100.1") for i in range(6)]
    for session in flood:
        kept.add(session)
    assert len(kept) == 3 and visitor.rec == "visitor"
    assert [s.rec for s in flood] == [None] * 4 + ["flood4", "flood5"]
    handlers._require(flood[4])  # used: the other one goes next
    kept.add(sessions.Session(rec="flood6", name="f6", address="198.51.100.1"))
    assert flood[5].rec is None and flood[4].rec == "flood4"
    unknown = [sessions.Session(rec=f"u{i}", name=f"u{i}") for i in range(3)]  # no address (direct calls): the total only
    for session in unknown:
        kept.add(session)
    assert len(kept) == 5 and all(s.rec for s in unknown) and visitor.rec is None  # least recently used overall


@pytest.mark.slow
@pytest.mark.load
def test_freed_memory_is_handed_back_after_heavy_jobs(monkeypatch):
    """After a heavy handler, failed or not, glibc's malloc_trim runs a moment later, once for
    the jobs that finished meanwhile (a burst of big photos otherwise kept ~700 MB)."""
    import sys

    from demo import handlers, memory

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    releaser = memory.MemoryReleaser(delay_s=0.2)
    monkeypatch.setattr(memory, "MEMORY", releaser)
    releaser.start()

    @memory.releases_memory
    def job(fail=False):
        if fail:
            raise ValueError("bad photo")
        return "done"

    assert job() == "done"
    with pytest.raises(ValueError):
        job(fail=True)
    deadline = time.monotonic() + 10
    while releaser.trims < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert releaser.trims == 1  # two jobs, one trim
    assert job.__name__ == "job" and handlers.reconstruct.__wrapped__.__name__ == "reconstruct"


@pytest.mark.slow
@pytest.mark.load
def test_many_sessions_keep_bounded_memory(monkeypatch):
    """Twelve visitors reconstruct in turn (gradio keeps every session's state): only the
    last KEPT reconstructions stay alive, and none keeps its full-resolution photo."""
    import gc
    import weakref

    from demo import handlers, sessions

    monkeypatch.setattr(sessions, "KEPT", sessions.KeptReconstructions(limit=4))
    # loaded first, as app.main() does: importing mediapipe keeps a traceback (sounddevice's
    # PortAudio OSError) whose frames pin the locals of whoever first loads the pipeline
    handlers.get_pipeline()
    states, alive = [], []
    with Image.open(EXAMPLE) as im:
        photo = np.asarray(im.convert("RGB"))
    for i in range(12):
        out = handlers.reconstruct(str(EXAMPLE), 0, 0.7, None)
        session = out[-1]
        assert out[1].shape[:2] == photo.shape[:2]  # the annotated photo is made before the photo is dropped
        assert out[0].shape == photo.shape and out[0].mean() > 50  # so is the face over the photo
        assert len(session.photo) < photo.nbytes and session.layers[0].shape == photo.shape
        assert session.rec.image.shape == photo.shape and session.rec.image.strides[:2] == (0, 0)  # 3 bytes
        states.append(session)
        alive.append(weakref.ref(session.rec))
    gc.collect()
    assert sum(r() is not None for r in alive) == 4
    assert [s.rec is not None for s in states] == [False] * 8 + [True] * 4
    # the kept ones still render and export (params.json reports the photo's size)
    newest = states[-1]
    assert handlers.render(newest, 20, 0, 30, 20, 1.0, True, "shaded", "directional", "fan").shape == (512, 512, 3)
    glb, files = handlers.downloads(newest, True)
    params = json.loads(Path(next(f for f in files if f.endswith("params.json"))).read_text())
    assert params["image_size"] == [photo.shape[1], photo.shape[0]]
    for s in states:
        sessions.drop_session(s)


# ---- warnings and file names --------------------------------------------------------------------

def _stub_rec(boxes, warnings=()):
    from types import SimpleNamespace

    return SimpleNamespace(faces=[SimpleNamespace(box=b) for b in boxes], warnings=list(warnings))


def test_reconstruction_warnings():
    from demo import handlers

    assert handlers.reconstruction_warnings(_stub_rec([(0, 0, 120, 140)]), 0) == []
    several = handlers.reconstruction_warnings(_stub_rec([(0, 0, 120, 140), (200, 0, 300, 100)]), 0)
    assert len(several) == 1 and "2 faces found" in several[0] and "Face selector" in several[0]
    assert handlers.reconstruction_warnings(_stub_rec([(0, 0, 120, 140), (200, 0, 300, 100)]), 1) == []
    small = handlers.reconstruction_warnings(_stub_rec([(0, 0, 60, 70)]), 0)
    assert len(small) == 1 and "60x70 pixels" in small[0]
    turned = "The face is turned about 55 degrees to the side: ..."  # FaceLift's own (Reconstruction.warnings)
    assert handlers.reconstruction_warnings(_stub_rec([(0, 0, 120, 140)], [turned]), 0) == [turned]


@pytest.mark.slow
@pytest.mark.integration
def test_several_faces_warn_which_face_was_used(monkeypatch, tmp_path):
    import gradio as gr

    from demo import handlers, sessions

    warned = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: warned.append(message))
    monkeypatch.setattr(sessions, "KEPT", sessions.KeptReconstructions(limit=2))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # the handler reads uploads only
    out = handlers.reconstruct(str(two_faces(tmp_path / "two.png")), 0, 0.7, None)
    assert len(warned) == 1 and warned[0].startswith("2 faces found: face 1 (the largest")
    warned.clear()
    handlers.reconstruct(str(EXAMPLE), 0, 0.7, out[-1])  # one frontal, large enough face: no warning
    assert warned == []


@pytest.mark.parametrize("raw, shown", [
    ("<img src=x onerror=alert(1)>.png", "img src_x onerror_alert(1)_.png"),
    ("/tmp/gradio/0123abcd/holiday photo (2).png", "holiday photo (2).png"),
    ("C:\\Users\\me\\x.png", "x.png"),
    ("evil\u202egnp.exe", "evil_gnp.exe"),
    ("a\nb\tc.png", "a b c.png"),
    ("", "The uploaded file"),
    (None, "The uploaded file"),
])
def test_display_name(raw, shown):
    from demo import uploads

    assert uploads.display_name(raw) == shown
    assert len(uploads.display_name("x" * 500 + ".png")) <= 48


# ---- against the running app: usable after an error, names shown safely ------------------------

@pytest.mark.slow
@pytest.mark.integration
def test_a_good_upload_works_after_a_bad_one_in_the_same_session(server, tmp_path):
    c = Client(server.url, verbose=False)
    bogus = tmp_path / "holiday.png"
    bogus.write_text("these bytes are not a picture\n")
    with pytest.raises(Exception, match="not an image FaceLift can read"):
        c.predict(handle_file(str(bogus)), 0, api_name="/reconstruct")
    with pytest.raises(Exception, match="Reconstruct first"):
        c.predict(api_name="/render")  # nothing was kept from the failed upload
    out = c.predict(handle_file(str(EXAMPLE)), 0, api_name="/reconstruct")
    assert "Face 1 of 1" in out[10] and _image(out[0]).shape == (512, 512, 3)
    assert _image(c.predict(yaw=20, api_name="/render")).shape == (512, 512, 3)
    # and after a failure once a face is kept, the kept one still renders
    with pytest.raises(Exception, match="not an image FaceLift can read"):
        c.predict(handle_file(str(bogus)), 0, api_name="/reconstruct")
    assert _image(c.predict(yaw=-20, api_name="/render")).shape == (512, 512, 3)


@pytest.mark.parametrize("kind", ["text", "tiny_image"])
@pytest.mark.slow
@pytest.mark.integration
def test_uploaded_file_names_are_shown_sanitised(server, tmp_path, kind):
    """The client-supplied name reaches the message only as letters, digits and ` ._,()+-`."""
    c = Client(server.url, verbose=False)
    name = "<img src=x onerror=alert(1)>\u202eevil " + "long" * 40 + ".png"
    path = tmp_path / name
    if kind == "text":
        path.write_text("not a picture\n")
        expected = "is not an image FaceLift can read"
    else:
        Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(path, format="PNG")
        expected = "20x20 pixels"
    with pytest.raises(Exception) as excinfo:
        c.predict(handle_file(str(path)), 0, api_name="/reconstruct")
    message = _error_message(excinfo)
    assert expected in message
    shown = message.split(" is ")[0].split(": ")[-1]
    for bad in ("<", ">", "=", "\u202e", "/tmp", "gradio"):
        assert bad not in message, (bad, message)
    assert len(shown) <= 48 and shown.startswith("img src_x onerror_alert(1)"), shown


def test_malloc_arenas_are_limited_on_glibc(monkeypatch):
    """What keeps the server's RSS from creeping up under load (tests/test_load.py measures it)."""
    import platform

    from demo import memory

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert memory.limit_malloc_arenas() is False  # the environment variable wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert memory.limit_malloc_arenas() is True


# ---- a hostile visitor: only uploaded files are read (issue 17) ---------------------------------

NOT_AN_UPLOAD = ("FaceLift only reads photos uploaded to this page. Upload the photo (or pick an example) "
                 "and press Reconstruct.")
SERVER_FILE = REPO / "checkpoints" / "albedo_pca.png"  # a real image on the server, outside the uploads


def _raw_reconstruct(server, image, face_index=0, timeout=30.0, headers=None, session_hash=None):
    """POST /gradio_api/call/reconstruct with a hand-made JSON payload, as a script would (no
    upload, no FileData check on the client): (seconds, event, data) of the streamed answer.
    A job refused before it is queued (an input check or a limit, run by gradio's validator)
    comes back as event "refused" with {"error": message}."""
    import httpx

    url = server.url + "gradio_api/call/reconstruct"
    body = {"data": [image, face_index, 0.7], **({"session_hash": session_hash} if session_hash else {})}
    start = time.perf_counter()
    with httpx.Client(timeout=timeout) as http:
        response = http.post(url, json=body, headers=headers or {})
        if response.status_code != 200:
            detail = response.json().get("detail")
            if isinstance(detail, list):  # validator results, one per input
                detail = next((d["message"] for d in detail if not d.get("is_valid", True)), None)
            return time.perf_counter() - start, "refused", {"error": detail, "status": response.status_code}
        text = http.get(f"{url}/{response.json()['event_id']}").text
    events = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("event:")]
    data = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("data:")]
    return time.perf_counter() - start, events[-1], json.loads(data[-1]) if data else None


def _hostile_paths(server, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    planted = server.upload_dir / "planted-by-a-test"  # what a bug elsewhere might leave there
    planted.mkdir(exist_ok=True)
    if not (planted / "fifo.png").exists():
        os.mkfifo(planted / "fifo.png")
        (planted / "link.png").symlink_to(SERVER_FILE)
        (planted / "folder.png").mkdir()
    server_file = str(SERVER_FILE)
    return {
        "server file": {"path": server_file},
        "server file named .svg": {"path": server_file, "orig_name": "x.svg"},
        "server file relative": {"path": "checkpoints/albedo_pca.png"},
        "missing file named .svg": {"path": "/nonexistent/facelift/x.png", "orig_name": "x.svg"},
        "folder named .svg": {"path": str(REPO), "orig_name": "x.svg"},
        "/etc/passwd": {"path": "/etc/passwd", "orig_name": "x.png"},
        "/proc/self/fd/0": {"path": "/proc/self/fd/0"},
        "/proc/self/fd/3": {"path": "/proc/self/fd/3"},
        "/proc/self/fd/3 named .svg": {"path": "/proc/self/fd/3", "orig_name": "x.svg"},
        "FIFO": {"path": str(fifo)},
        "FIFO in the upload folder": {"path": str(planted / "fifo.png")},
        "symlink out of the upload folder": {"path": str(planted / "link.png")},
        "folder in the upload folder": {"path": str(planted / "folder.png"), "orig_name": "x.svg"},
        "the upload folder itself": {"path": str(server.upload_dir), "orig_name": "x.svg"},
        "escape with ..": {"path": f"{server.upload_dir}/../../{server_file}"},
        "NUL byte": {"path": str(server.upload_dir / "a\x00.png")},
        "no path": {"orig_name": "x.png"},
    }


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.slow
@pytest.mark.integration
def test_server_files_pipes_and_proc_paths_are_refused_with_one_message(server, tmp_path):
    """Issue 17: `{"path": ...}` without gradio's FileData `meta` used to reach the pipeline:
    a server file came back as the "Detected face", FaceLift's messages told what exists
    ("File not found", "is a folder", ...), and a FIFO or /proc/self/fd/N held a worker forever."""
    for name, payload in _hostile_paths(server, tmp_path).items():
        seconds, event, data = _raw_reconstruct(server, payload)
        assert event in ("error", "refused"), (name, data)  # refused before it is even queued
        assert data["error"] == NOT_AN_UPLOAD, (name, data)
        assert seconds < 5, (name, seconds)
    # ... and with gradio's FileData meta gradio refuses them itself, the same words whether the
    # file exists or not (it quotes only the path sent)
    answers = []
    for path in (str(SERVER_FILE), "/nonexistent/facelift/x.png", "/proc/self/fd/3", str(tmp_path / "pipe.png")):
        seconds, event, data = _raw_reconstruct(server, {"path": path, "orig_name": "x.svg",
                                                         "meta": {"_type": "gradio.FileData"}})
        assert event in ("error", "refused") and seconds < 5, (path, data)
        answers.append(None if data["error"] is None else data["error"].replace(path, "PATH"))
    assert len(set(answers)) == 1, answers
    # no worker was left blocked: two FIFO requests at once, then a normal upload still works
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _raw_reconstruct(server, {"path": str(tmp_path / "pipe.png")}), range(2)))
    assert [a[2]["error"] for a in answers] == [NOT_AN_UPLOAD] * 2
    out = Client(server.url, verbose=False).predict(handle_file(str(EXAMPLE)), 0, api_name="/reconstruct")
    assert "Face 1 of 1" in out[10]


@pytest.mark.slow
@pytest.mark.integration
def test_uploaded_files_and_examples_are_still_read(server):
    """What the page sends: a file uploaded to /gradio_api/upload, or a shipped example."""
    import httpx

    seconds, event, data = _raw_reconstruct(server, {"path": str(EXAMPLE)})
    assert event == "complete" and "Face 1 of 1" in str(data), data
    with httpx.Client(timeout=30) as http, open(EXAMPLE, "rb") as fh:
        uploaded = http.post(server.url + "gradio_api/upload", files={"files": ("me.png", fh, "image/png")}).json()
    assert Path(uploaded[0]).is_relative_to(server.upload_dir)
    for payload in ({"path": uploaded[0]}, {"path": uploaded[0], "orig_name": "me.png",
                                            "meta": {"_type": "gradio.FileData"}}):
        seconds, event, data = _raw_reconstruct(server, payload)
        assert event == "complete" and "Face 1 of 1" in str(data), data


@pytest.mark.parametrize("face_index", ["inf", "-inf", "1e400", "nan", "NaN", 1e300, "second"])
@pytest.mark.slow
@pytest.mark.integration
def test_face_index_that_is_not_a_number_is_a_clear_message(server, face_index):
    seconds, event, data = _raw_reconstruct(server, {"path": str(EXAMPLE)}, face_index)
    assert event in ("error", "refused") and data["error"] is not None, data
    assert data["error"].startswith("The face selector must be a face number"), data


def test_checked_upload_in_process(tmp_path, monkeypatch):
    """checked_upload's order: the path as text first (no filesystem call outside the allowed
    folders), then resolved, then opened non-blocking and checked as a regular file."""
    from demo import config, uploads

    upload_dir = tmp_path / "uploads"
    (upload_dir / "abc").mkdir(parents=True)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(upload_dir))
    photo = upload_dir / "abc" / "photo.png"
    photo.write_bytes(EXAMPLE.read_bytes())
    assert uploads.checked_upload(str(photo)) == os.path.realpath(photo)
    assert uploads.checked_upload(str(EXAMPLE)) == str(EXAMPLE)

    touched = []
    real_open, real_realpath = os.open, os.path.realpath
    monkeypatch.setattr(uploads.os, "open", lambda p, *a, **k: touched.append(p) or real_open(p, *a, **k))
    monkeypatch.setattr(uploads.os.path, "realpath", lambda p, *a, **k: touched.append(p) or real_realpath(p, *a, **k))
    for outside in (str(SERVER_FILE), "/proc/self/fd/3", f"{upload_dir}/../x.png", str(upload_dir),
                    f"{upload_dir}x/a.png"):
        with pytest.raises(uploads.NotAnUpload):
            uploads.checked_upload(outside)
    assert not [p for p in touched if str(p).startswith(("/proc", str(SERVER_FILE))) or "x/a.png" in str(p)
                or str(p).endswith("../x.png")], touched
    monkeypatch.undo()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(upload_dir))
    os.mkfifo(upload_dir / "abc" / "fifo.png")
    (upload_dir / "abc" / "link.png").symlink_to(SERVER_FILE)
    (upload_dir / "abc" / "inner.png").symlink_to(photo)  # a symlink that stays inside is fine
    from limits import time_limit

    with time_limit(3, "checking a FIFO"):
        for bad in ("fifo.png", "link.png", "missing.png", ""):
            with pytest.raises(uploads.NotAnUpload):
                uploads.checked_upload(str(upload_dir / "abc" / bad))
    assert uploads.checked_upload(str(upload_dir / "abc" / "inner.png")) == str(photo.resolve())
    for not_a_path in (None, 3, b"/etc/passwd", "x" * 5000, "/tmp/a\x00b"):
        with pytest.raises(uploads.NotAnUpload):
            uploads.checked_upload(not_a_path)
    big = upload_dir / "abc" / "big.png"
    with open(big, "wb") as fh:
        fh.truncate(config.MAX_UPLOAD_BYTES + 1)  # sparse: no disk used
    from facelift.errors import ImageTooLargeError

    with pytest.raises(ImageTooLargeError, match="larger than 50 MB"):
        uploads.checked_upload(str(big))


@pytest.mark.slow
@pytest.mark.integration
def test_large_photos_are_downscaled_before_the_heavy_stages(monkeypatch, tmp_path):
    """Issue 17: a photo near the 50-megapixel limit peaked at +834 MB per request. The app
    reconstructs from a copy of at most MAX_SIDE pixels on the longer side (a JPEG is decoded
    at reduced scale), so the memory per request is bounded (README "The app")."""
    from demo import handlers, sessions

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    monkeypatch.setattr(sessions, "KEPT", sessions.KeptReconstructions(limit=2))
    monkeypatch.setattr(handlers, "MAX_SIDE", 1024)
    with Image.open(EXAMPLE) as im:
        big = im.convert("RGB").resize((3000, 2000))
    big.save(tmp_path / "big.jpg", quality=90)
    out = handlers.reconstruct(str(tmp_path / "big.jpg"), 0, 0.7, None)
    session = out[-1]
    assert session.rec.image.shape == (683, 1024, 3)
    x0, y0, x1, y1 = session.rec.faces[0].box  # found and fitted in the downscaled photo
    assert 0 <= x0 < x1 <= 1024 and 0 <= y0 < y1 <= 683
    assert "Face 1 of 1" in out[-2]
    sessions.drop_session(session)
    from demo import config

    assert handlers.MAX_SIDE >= 1024 and isinstance(handlers.MAX_SIDE, int)
    assert config.MAX_SIDE >= 1024 and isinstance(config.MAX_SIDE, int)  # the setting itself (FACELIFT_APP_MAX_SIDE)


def test_job_limits_per_session_and_address(monkeypatch):
    """job_refusal counts gradio's queued and running heavy events, and the jobs accepted a
    moment ago that are not in the queue yet (validators of a burst run concurrently)."""
    from types import SimpleNamespace

    from demo import jobs

    def request(session, address):
        return SimpleNamespace(session_hash=session, client=SimpleNamespace(host=address))

    queued = []
    monkeypatch.setattr(jobs, "_heavy_events", lambda: list(queued))
    monkeypatch.setattr(jobs, "_accepted", [])
    monkeypatch.setattr(jobs, "MAX_JOBS_PER_SESSION", 2)
    monkeypatch.setattr(jobs, "MAX_JOBS_PER_CLIENT", 3)
    assert jobs.job_refusal(request("a", "1.1.1.1")) is None
    assert jobs.job_refusal(request("a", "1.1.1.1")) is None  # accepted, not queued yet: counted
    assert "This page already has 2" in jobs.job_refusal(request("a", "1.1.1.1"))
    assert jobs.job_refusal(request("b", "1.1.1.1")) is None
    assert "from your address" in jobs.job_refusal(request("c", "1.1.1.1"))
    assert jobs.job_refusal(request("c", "2.2.2.2")) is None  # another address
    # once its events are in gradio's queue, an accepted job is counted once, not twice
    later = time.monotonic() + 1
    queued[:] = [SimpleNamespace(session_hash="a", request=request("a", "1.1.1.1"), enqueue_time=later)]
    assert "This page already has" not in (jobs.job_refusal(request("a", "1.1.1.1")) or "")
    # a job that started no longer counts as accepted (quick jobs in a row are not refused)
    queued.clear()
    jobs.job_started(request("a", "1.1.1.1"))
    assert jobs.job_refusal(request("a", "1.1.1.1")) is None
    jobs.job_started(request("a", "1.1.1.1"))
    jobs.job_started(request("a", "1.1.1.1"))
    # and they stop counting when they finish
    monkeypatch.setattr(jobs, "ACCEPTED_WINDOW_S", 0.0)
    assert jobs.job_refusal(request("a", "1.1.1.1")) is None


# ---- a hostile visitor: upload bytes, disk, the /reconstruct flood, headers (issue 17) -----------

def test_upload_allowance_per_address_in_process():
    from demo import http_guard

    allowance = http_guard.UploadAllowance(limit_bytes=1000, window_s=60)
    assert allowance.charge("1.1.1.1", 600, now=0.0) is None
    refusal = allowance.charge("1.1.1.1", 500, now=10.0)
    assert refusal.startswith("Your address has sent 0.0 MB to this page in the last 1 minute")
    assert "Try again in 1 minute" in refusal
    assert allowance.charge("2.2.2.2", 500, now=10.0) is None  # another address
    assert allowance.charge("1.1.1.1", 400, now=20.0) is None  # what fits still goes
    assert allowance.charge("1.1.1.1", 600, now=61.0) is None  # the first 600 left the window
    assert allowance.charge("1.1.1.1", 2000, now=500.0) is not None  # more than the whole allowance


def test_disk_budget_evicts_oldest_first_in_process(tmp_path, monkeypatch):
    from demo import http_guard

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    now = time.time()
    files = []
    for i, age in enumerate((500, 400, 300, 200, 0)):  # the last one was just written
        path = tmp_path / f"d{i}" / f"f{i}.bin"
        path.parent.mkdir()
        path.write_bytes(b"x" * 100)
        os.utime(path, (now - age, now - age))
        os.utime(path.parent, (now - age, now - age))
        files.append(path)
    budget = http_guard.DiskBudget(limit_bytes=400, min_age_s=60)
    budget.protected = {str(files[1])}  # there before the app served (gradio's copy of an example)
    in_use = {str(files[2])}            # named by a queued job
    assert budget.make_room(100, in_use) is True  # 500 + 100 > 400: f0 and f3 go (not f1, f2, nor young f4)
    assert [f.exists() for f in files] == [False, True, True, False, True]
    assert not files[0].parent.exists()  # the emptied upload folder too
    assert budget.reserved == 100
    assert budget.make_room(100, in_use) is False  # only protected, in-use or young files are left
    budget.release(100)
    assert budget.reserved == 0


def test_session_uploads_in_process(tmp_path, monkeypatch):
    from demo import http_guard, uploads

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    root = uploads.upload_root()
    data = [{"path": f"{root}/a/mine.png", "meta": {"_type": "gradio.FileData"}}, 0,
            {"path": "/etc/passwd"}, {"path": f"{root}/../x.png"}, [[{"path": f"{root}/b/shared.png"}]]]
    assert uploads.named_paths(data, root) == {f"{root}/a/mine.png", f"{root}/b/shared.png"}
    noted = http_guard.SessionUploads()
    noted.note("s1", [f"{root}/a/mine.png", f"{root}/b/shared.png"])
    noted.note("s2", [f"{root}/b/shared.png"])
    assert noted.forget("s1") == [f"{root}/a/mine.png"]  # the shared one stays while s2 lives
    assert noted.forget("s2") == [f"{root}/b/shared.png"]
    assert noted.forget("never seen") == []
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    outside.write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(outside)
    assert http_guard._delete_upload(str(tmp_path / "link.png"), root) is False and outside.exists()


def test_door_refusal_counts_only_jobs_without_a_validator(monkeypatch):
    import app
    from demo import jobs

    monkeypatch.setattr(jobs, "_heavy_events", lambda: [])
    monkeypatch.setattr(jobs, "_accepted", [])
    monkeypatch.setattr(jobs, "MAX_JOBS_PER_CLIENT", 2)
    reconstruct = next(fn for fn in app.demo.fns.values() if fn.api_name == "reconstruct")
    downloads = next(fn for fn in app.demo.fns.values() if fn.api_name == "downloads")
    render = next(fn for fn in app.demo.fns.values() if fn.api_name == "render")
    assert jobs.job_fn(None, {"fn_index": reconstruct._id}) is reconstruct
    assert jobs.job_fn("reconstruct", {}) is reconstruct and jobs.job_fn(None, {"fn_index": True}) is None
    assert jobs.door_refusal(downloads, "a", "1.1.1.1") is None  # its validator counts it
    assert jobs.door_refusal(render, "a", "1.1.1.1") is None and jobs._accepted == []
    assert jobs.door_refusal(reconstruct, "a", "1.1.1.1") is None
    assert jobs.door_refusal(reconstruct, "b", "1.1.1.1") is None
    assert "from your address" in jobs.door_refusal(reconstruct, "c", "1.1.1.1")
    jobs.door_joined("a", "1.1.1.1")  # gradio answered: the job is in its queue, counted there
    assert jobs.door_refusal(reconstruct, "c", "1.1.1.1") is None
    # quick calls without a session, one after the other, are not refused for the ones that are done
    monkeypatch.setattr(jobs, "_accepted", [])
    for _ in range(5):
        assert jobs.door_refusal(reconstruct, None, "3.3.3.3") is None
        jobs.door_joined(None, "3.3.3.3")
    assert jobs._accepted == [] and jobs.door_counts(reconstruct) and not jobs.door_counts(downloads)


# A server of its own with small limits, so that these tests stay small and fast
STRICT_ENV = {"FACELIFT_APP_UPLOAD_MB_PER_CLIENT": "1", "FACELIFT_APP_UPLOAD_WINDOW_S": "600",
              "FACELIFT_APP_UPLOAD_DISK_MB": "8", "FACELIFT_APP_EVICT_AFTER_S": "2",
              "FACELIFT_APP_MAX_JOBS_PER_CLIENT": "3", "FACELIFT_APP_MAX_JOBS_PER_SESSION": "2",
              "FACELIFT_APP_WARMUP": "0"}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def strict_server():
    from app_server import AppServer

    server = AppServer(env=STRICT_ENV, name="app_server_strict")
    try:
        yield server
    finally:
        server.stop()


def _upload(server, content: bytes, name: str = "photo.png", address: str = "10.0.0.1"):
    """POST /gradio_api/upload as a client at `address` (the loopback proxy's X-Forwarded-For,
    which uvicorn trusts from 127.0.0.1 by default): the response."""
    import httpx

    with httpx.Client(timeout=30) as http:
        return http.post(server.url + "gradio_api/upload", files={"files": (name, content, "image/png")},
                         headers={"X-Forwarded-For": address})


def _regular_files(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


@pytest.mark.slow
@pytest.mark.integration
def test_upload_bytes_per_address_are_capped(strict_server):
    """Issue 17: 20 uploads of 45 MB added 900 MB. Each address may send at most
    FACELIFT_APP_UPLOAD_MB_PER_CLIENT (here 1 MB) within the window; beyond it, 429 with a clear message."""
    chunk = os.urandom(400_000)
    start = time.perf_counter()
    assert _upload(strict_server, chunk, address="10.0.1.1").status_code == 200
    assert _upload(strict_server, chunk[::-1], address="10.0.1.1").status_code == 200
    before = _regular_files(strict_server.upload_dir)
    refused = _upload(strict_server, chunk[1:], address="10.0.1.1")
    assert refused.status_code == 429, refused.text
    assert refused.text.startswith("Your address has sent 0.8 MB to this page in the last 10 minutes; "
                                   "1.0 MB is the most it accepts. Try again in "), refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert "/" not in refused.text.split("minutes;")[1] and "Traceback" not in refused.text
    assert len(_regular_files(strict_server.upload_dir)) <= len(before)  # nothing stored for it
    import httpx

    # sent again at once (a flooder): answered without reading the body, the connection closed
    try:
        again = _upload(strict_server, chunk[3:], address="10.0.1.1")
        assert again.status_code == 429 and again.headers.get("connection") == "close", again.headers
    except httpx.TransportError:
        pass  # the client was still sending when the server closed: refused all the same
    assert len(_regular_files(strict_server.upload_dir)) <= len(before)
    assert _upload(strict_server, chunk[2:], address="10.0.1.2").status_code == 200  # another address
    assert time.perf_counter() - start < 20


@pytest.mark.slow
@pytest.mark.integration
def test_upload_folder_disk_budget_evicts_oldest_first(strict_server):
    """FACELIFT_APP_UPLOAD_DISK_MB (here 8 MB) bounds gradio's upload folder: the oldest files
    go first; files younger than FACELIFT_APP_EVICT_AFTER_S (2 s) are never evicted, and when only
    such files fill it, uploads get 503 with a clear message."""
    planted = strict_server.upload_dir / "planted-old"
    planted.mkdir(exist_ok=True)
    now = time.time()
    old = []
    for i in range(8):  # 8 MB of old files, oldest first: the folder is over its budget
        path = planted / f"old{i}.bin"
        path.write_bytes(os.urandom(MB))
        os.utime(path, (now - 3600 + i, now - 3600 + i))
        old.append(path)
    response = _upload(strict_server, os.urandom(300_000), address="10.0.2.1")
    assert response.status_code == 200, response.text
    assert Path(response.json()[0]).is_file()
    assert not old[0].exists()  # the oldest went first ...
    assert old[-1].exists() or not old[-2].exists()  # ... and in order
    assert sum(_regular_files(strict_server.upload_dir).values()) <= 8 * MB
    # young files are never evicted: filled with them, the folder takes no more
    young = strict_server.upload_dir / "planted-young"
    young.mkdir(exist_ok=True)
    (young / "young.bin").write_bytes(os.urandom(8 * MB + 1))
    try:
        refused = _upload(strict_server, os.urandom(100_000), address="10.0.2.2")
        assert refused.status_code == 503, refused.text
        assert refused.text == "The server has no room for more uploads right now; try again in a few minutes."
        assert (young / "young.bin").exists()
    finally:
        (young / "young.bin").unlink()
    assert _upload(strict_server, os.urandom(100_000), address="10.0.2.3").status_code == 200


def _unique_photo(path: Path) -> Path:
    """The example photo with some bytes after its end: a readable PNG of its own content (so its
    own folder in gradio's upload folder, which is named by the content's hash)."""
    path.write_bytes(EXAMPLE.read_bytes() + os.urandom(16))
    return path


def _wait_until(condition, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.slow
@pytest.mark.integration
def test_uploads_are_deleted_when_their_session_ends(strict_server, tmp_path):
    """A session's uploaded photo goes when the session ends (the tab or API client closes:
    gradio's unload), unless another open session uses the same file."""
    photo = _unique_photo(tmp_path / "mine.png")
    first = Client(strict_server.url, verbose=False, headers={"X-Forwarded-For": "10.0.3.1"})
    second = Client(strict_server.url, verbose=False, headers={"X-Forwarded-For": "10.0.3.2"})
    assert "Face 1 of 1" in first.predict(handle_file(str(photo)), 0, api_name="/reconstruct")[10]
    assert "Face 1 of 1" in second.predict(handle_file(str(photo)), 0, api_name="/reconstruct")[10]
    stored = list(strict_server.upload_dir.glob("*/mine.png"))
    assert len(stored) == 1  # the same content: one file, named by both sessions
    first.close()
    time.sleep(2)
    assert stored[0].exists()  # the second session still has it
    second.close()
    assert _wait_until(lambda: not stored[0].exists()), "the upload outlived its sessions"


@pytest.mark.slow
@pytest.mark.integration
def test_reconstruct_flood_from_one_address_is_capped(strict_server, tmp_path):
    """Issue 17: 80 concurrent /reconstruct calls with random session hashes from one client
    filled the queue and a normal visitor waited 227 s. At most FACELIFT_APP_MAX_JOBS_PER_CLIENT
    (here 3) heavy jobs per address wait or run; the rest get 429 at once, before anything is
    queued or read, and another visitor is served right behind the few accepted."""
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    # a normal request first: the model warm (FACELIFT_APP_WARMUP=0) and the time of one reconstruction
    _raw_reconstruct(strict_server, {"path": str(EXAMPLE)}, headers={"X-Forwarded-For": "10.0.4.2"}, timeout=120)
    single, event, data = _raw_reconstruct(strict_server, {"path": str(EXAMPLE)},
                                           headers={"X-Forwarded-For": "10.0.4.2"}, timeout=120)
    assert event == "complete", data

    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32))

    def flood(_, session=None, address="10.0.4.1"):
        """One /reconstruct call, its answer not awaited (the job runs all the same)."""
        body = {"data": [{"path": str(EXAMPLE)}, 0, 0.7], "session_hash": session or secrets.token_hex(8)}
        return http.post(strict_server.url + "gradio_api/call/reconstruct", json=body,
                         headers={"X-Forwarded-For": address})

    start = time.perf_counter()
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(flood, range(24)))
    flood_s = time.perf_counter() - start
    refused = [a for a in answers if a.status_code == 429]
    assert len(answers) - len(refused) <= 3, [a.status_code for a in answers]
    assert len(refused) >= 21 and flood_s < 10
    for answer in refused:
        assert answer.json()["detail"].startswith("Too many reconstructions from your address are waiting or running")
    # another visitor waits behind at most the 3 accepted, not 24
    seconds, event, data = _raw_reconstruct(strict_server, {"path": str(EXAMPLE)},
                                            headers={"X-Forwarded-For": "10.0.4.3"}, timeout=120)
    assert event == "complete" and "Face 1 of 1" in str(data), data
    assert seconds < 8 * single + 3, (seconds, single)
    # one session (the same session hash) may have at most 2 waiting or running: three calls in a
    # row (milliseconds apart; one reconstruction takes far longer; the answers are not read, as
    # gradio streams a session's results through one channel)
    session = secrets.token_hex(8)
    answers = [flood(i, session=session, address="10.0.4.4") for i in range(3)]
    http.close()
    assert [a.status_code for a in answers] == [200, 200, 429], [a.text for a in answers]
    assert answers[2].json()["detail"].startswith("This page already has 2 reconstructions"), answers[2].text
    # with the cap at the door, a file that is not an image still gets FaceLift's message, not a bare 400
    notes = _upload(strict_server, b"this is not a picture\n", name="notes.png", address="10.0.4.5")
    assert notes.status_code == 200
    seconds, event, data = _raw_reconstruct(strict_server, {"path": notes.json()[0], "orig_name": "notes.png",
                                                            "meta": {"_type": "gradio.FileData"}},
                                            headers={"X-Forwarded-For": "10.0.4.5"})
    assert event == "error" and "notes.png is not an image FaceLift can read" in data["error"], data


@pytest.mark.slow
@pytest.mark.integration
def test_security_headers_on_pages_and_api(server):
    """Every response carries a Content-Security-Policy (frame-ancestors for the Space's page
    instead of X-Frame-Options), nosniff and a Referrer-Policy; gradio's analytics are off by default."""
    import httpx

    with httpx.Client(timeout=30) as http:
        responses = {
            "page": http.get(server.url),
            "config": http.get(server.url + "config"),
            "api info": http.get(server.url + "gradio_api/info"),
            "api call": http.post(server.url + "gradio_api/call/reconstruct", json={"data": [None, 0, 0.7]}),
            "not found": http.get(server.url + "gradio_api/nothing-here"),
        }
    for name, response in responses.items():
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "object-src 'none'" in csp, name
        assert "frame-ancestors 'self' https://huggingface.co https://*.hf.space" in csp, name
        assert response.headers.get("x-content-type-options") == "nosniff", name
        assert response.headers.get("referrer-policy") == "same-origin", name
        assert "x-frame-options" not in response.headers, name
    assert responses["config"].json()["analytics_enabled"] is False  # the server's env does not set it
