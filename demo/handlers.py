"""The page's event handlers (also the API's endpoints: see app.py's docstring).

Each takes the session's state (a `Session`, or None before the first reconstruction) and the
controls' values; FaceLift's own errors become their message in the page, anything else a
friendly one (`_user_errors`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from demo import sessions
from demo.config import (
    APP_OUTPUTS,
    DOWNLOAD_FILES,
    EXAMPLES,
    EXPIRED,
    GENERIC_ERROR,
    MAX_SIDE,
    RENDER_SIZE,
    SMALL_FACE_PX,
    TURNTABLE_AMPLITUDE,
    TURNTABLE_FRAMES,
    TURNTABLE_SIZE,
    TURNTABLES_KEPT,
)
from demo.jobs import client_address, job_started
from demo.memory import MEMORY, releases_memory
from demo.photo import blend, keep_photo, lighten, overlay_layers, with_photo
from demo.sessions import Session, SessionExpired, drop_session
from demo.uploads import display_name, refuse_non_uploads
from facelift import FaceLiftError
from facelift import visualize as vis
from facelift.errors import FaceIndexError
from facelift.image import load_image
from facelift.pipeline import OVERLAY_OPACITY
from facelift.render import render_sh_sphere

log = logging.getLogger("facelift.app")

# ---- the model: loaded once, shared by every session -------------------------------------------

_pipeline = None
_pipeline_lock = threading.Lock()


def get_pipeline():
    """The shared FaceLift pipeline (loaded on first use; thread-safe)."""
    global _pipeline
    with _pipeline_lock:
        if _pipeline is None:
            from facelift import FaceLift

            start = time.perf_counter()
            _pipeline = FaceLift.from_pretrained(os.environ.get("FACELIFT_WEIGHTS") or None)
            log.info("FaceLift loaded from %s in %.1f s", _pipeline.source, time.perf_counter() - start)
        return _pipeline


def warm_up() -> None:
    """Load the model and make the first example's result end to end (kept: `EXAMPLE_RESULTS`),
    so the first visitor does not wait. The other examples follow in the background (app.py's `main`)."""
    get_pipeline()
    if EXAMPLES:
        start = time.perf_counter()
        EXAMPLE_RESULTS.get(0).rec.render(size=RENDER_SIZE)
        log.info("warm-up reconstruction in %.1f s", time.perf_counter() - start)


# ---- messages ---------------------------------------------------------------------------------

@contextmanager
def _user_errors(what: str, upload=None):
    """FaceLift's own errors -> their message in the page; anything else -> a friendly one
    (the traceback goes to the server log). The uploaded file's server path and name, which
    FaceLift's messages may quote, are replaced by a sanitised display name."""
    try:
        yield
    except gr.Error:
        raise
    except SessionExpired:
        raise gr.Error(EXPIRED) from None
    except FaceLiftError as exc:
        message = str(exc)
        if upload:
            path = Path(str(upload))
            for text in (repr(str(path)), str(path), path.name):
                message = message.replace(text, display_name(path.name))
        raise gr.Error(message, title="FaceLift") from None
    except Exception:
        log.error("%s failed:\n%s", what, traceback.format_exc())
        raise gr.Error(GENERIC_ERROR) from None


def _face_index(value) -> int:
    """The face selector's value (an int, or the text typed into it) as an index; a clear
    message for anything that is not a finite number ("inf", "1e400", NaN, text)."""
    if value in (None, ""):
        return 0
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or abs(number) > 10_000:
        shown = display_name(str(value)[:48], "that")
        raise gr.Error(f"The face selector must be a face number (face_index 0 is Face 1, the largest), "
                       f"not {shown}.") from None
    return int(number)


def face_choices(n: int) -> list[tuple[str, int]]:
    """The Face selector's choices: "Face 1 (largest)", "Face 2", ... (values from 0)."""
    return [(f"Face {i + 1}" + (" (largest)" if i == 0 and n > 1 else ""), i) for i in range(n)]


def face_selector(n: int, index: int = 0) -> gr.Dropdown:
    """The Face selector: shown only when there is a choice (two faces or more)."""
    return gr.Dropdown(choices=face_choices(n), value=index, visible=n > 1)


def no_such_face(index: int, n: int) -> str:
    """FaceIndexError in the words of the page: faces numbered from 1 (the API's face_index from 0)."""
    faces = f"{n} face{'s' if n != 1 else ''} (Face 1{f' to Face {n}' if n > 1 else ''}, largest first)"
    return (f"There is no face {index + 1} in this photo: it has {faces}. "
            f"In the API face_index counts from 0: face_index={index} would be face {index + 1}.")


def _require(state):
    """The session's Session and its reconstruction, or a message saying to reconstruct."""
    if not isinstance(state, Session):
        raise gr.Error(EXPIRED)
    try:
        return state, state.reconstruction()
    except SessionExpired:
        raise gr.Error(EXPIRED) from None


def reconstruction_warnings(rec, index: int) -> list[str]:
    """What a visitor should know about a reconstruction that did work: several faces (which
    one was used, how to pick another), a small face, and FaceLift's own warnings (a strongly
    turned head, a face partly cut off by the border)."""
    notes = []
    n = len(rec.faces)
    if n > 1 and index == 0:
        notes.append(f"{n} faces found: face 1 (the largest, box 1 in the photo) was reconstructed. "
                     f"Pick another one in the Face selector (API: face_index 0 to {n - 1} for Face 1 to Face {n}).")
    x0, y0, x1, y1 = rec.faces[index].box
    if min(x1 - x0, y1 - y0) < SMALL_FACE_PX:
        notes.append(f"The face is only {x1 - x0:.0f}x{y1 - y0:.0f} pixels: its texture and details will be "
                     f"blurry. A closer or larger photo (at least {SMALL_FACE_PX} pixels across the face) "
                     "gives a sharper result.")
    return notes + [str(w) for w in getattr(rec, "warnings", ())]


# ---- event handlers ----------------------------------------------------------------------------

@releases_memory
def reconstruct(image, face_index, opacity, state, request: gr.Request = None):
    """image (file path), face index and the overlay's opacity -> the face in the photo, the
    maps, the face selector and the kept reconstruction."""
    if not image:
        raise gr.Error("Upload a photo first, take one with the webcam, or pick an example.")
    index = _face_index(face_index)
    image = refuse_non_uploads(image)  # also checked before gradio's preprocess opens it; here for direct calls
    made = reconstruct_photo(image, index)
    return _results(made, made.rec, Path(str(image)).stem, index, opacity, state, request,
                    f"reconstructed in {made.seconds:.2f} s")


@dataclasses.dataclass
class Reconstructed:
    """A reconstruction and what the page shows of it before any view: the overlay's layers
    (`overlay_layers`) and the pictures of the maps (in the order of app.py's `maps`)."""
    rec: object
    layers: tuple
    pictures: tuple
    seconds: float
    photo: bytes | None = None  # the photo as a JPEG (`keep_photo`), once the reconstruction is lightened


def reconstruct_photo(image, index: int) -> Reconstructed:
    """Face `index` of the photo file `image`, reconstructed, with its pictures."""
    start = time.perf_counter()
    with _user_errors("reconstruct", upload=image):
        photo = load_image(image, max_side=MAX_SIDE)  # the same checks and messages as the pipeline's own
        try:
            rec = get_pipeline().reconstruct(photo, index)
        except FaceIndexError:
            raise gr.Error(no_such_face(index, len(get_pipeline().detect(photo))), title="FaceLift") from None
        del photo
        seconds = time.perf_counter() - start
        mask = rec.maps.mask
        layers = overlay_layers(rec)
        pictures = (
            vis.draw_faces(rec.image, rec.faces, rec.face_index),
            vis.texture_with_visibility(rec.texture, rec.visibility, mask),
            vis.confidence_image(rec.skin_confidence, mask),
            vis.on_background(rec.albedo_pca, mask),
            vis.on_background(rec.albedo, mask),
            vis.displacement_image(rec.displacement, mask, size=384),
            vis.normal_map_image(rec.normal_map, mask),
            render_sh_sphere(rec.sh, 256, background=vis.BACKGROUND),
        )
    log.info("reconstruct: %.0f ms (%s)", seconds * 1000, rec.timings)
    return Reconstructed(rec, layers, pictures, seconds)


def _results(made: Reconstructed, rec, name: str, index: int, opacity, state, request, how: str) -> tuple:
    """The reconstruct handlers' outputs for `rec` (`made.rec` or a copy of it), kept in a new
    Session that replaces the page's earlier one."""
    for note in reconstruction_warnings(rec, index):
        gr.Warning(note)
    n = len(rec.faces)
    yaw, pitch, roll = rec.fit.yaw_pitch_roll()
    info = (f"**Face {index + 1} of {n}** · {how} · head pose yaw {yaw:+.0f}°, "
            f"pitch {pitch:+.0f}°, roll {roll:+.0f}° · albedo: {rec.albedo_source}, "
            f"lighting: {rec.albedo_pca_source.replace('_', ' ')}")
    drop_session(state)
    session = Session(rec, name, photo=made.photo or keep_photo(rec.image), layers=made.layers,
                      address=client_address(request))
    lighten(rec)
    sessions.KEPT.add(session)  # looked up here: tests give sessions a KEPT of their own
    overlay = blend(made.layers, opacity if opacity is not None else OVERLAY_OPACITY)
    return (overlay, *made.pictures, face_selector(n, index), info, session)


# ---- the shipped examples: made once for every visitor, so that a click shows the result at once --

class ExampleResults:
    """Each example's `Reconstructed` (face 1), made on first use and then kept for every session
    (the reconstruction lightened: its photo kept as a JPEG). `warm_up` makes the first one at
    start and app.py's `main` the others in the background; a click before then makes (or waits
    for) its own. Each session gets a copy of the reconstruction (`session_copy`), so that its
    views and exports are its own; the arrays are shared, read only. About 20 MB of memory per
    example."""

    def __init__(self, paths):
        self.paths = list(paths)
        self._made: dict[int, Reconstructed] = {}
        self._locks = [threading.Lock() for _ in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> Reconstructed:
        with self._locks[i]:
            if i not in self._made:
                made = reconstruct_photo(self.paths[i], 0)
                made.photo = keep_photo(made.rec.image)
                lighten(made.rec)
                self._made[i] = made
            return self._made[i]

    @staticmethod
    def session_copy(made: Reconstructed):
        return dataclasses.replace(made.rec, _meshes=dict(made.rec._meshes))

    def make_all(self) -> None:
        """Make every example not made yet (the background thread of `make_all_in_background`)."""
        start = time.perf_counter()
        for i, path in enumerate(self.paths):
            try:
                self.get(i)
            except Exception:  # a broken example must not stop the others (nor the app)
                log.exception("could not make the example %s", path)
            finally:
                MEMORY.soon()
        log.info("examples ready (%d) in %.1f s", len(self._made), time.perf_counter() - start)

    def make_all_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.make_all, name="facelift-examples", daemon=True)
        thread.start()
        return thread


EXAMPLE_RESULTS = ExampleResults(EXAMPLES)


@releases_memory
def reconstruct_example(example, opacity, state, request: gr.Request = None):
    """A click on an example (gr.Dataset's (index, sample)) -> what `reconstruct` gives for it,
    from EXAMPLE_RESULTS: at once once made."""
    index = example[0] if isinstance(example, (tuple, list)) and example else example
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(EXAMPLE_RESULTS):
        raise gr.Error("There is no such example; pick one of the examples under the photo.")
    made = EXAMPLE_RESULTS.get(index)
    return _results(made, EXAMPLE_RESULTS.session_copy(made), Path(EXAMPLES[index]).stem, 0, opacity, state,
                    request, f"example, reconstructed once in {made.seconds:.2f} s and kept")


def overlay_view(state, opacity):
    """The kept face over its photo at `opacity` (0 to 1), at most OVERLAY_SIDE pixels a side."""
    session, _ = _require(state)
    layers = session.layers
    if layers is None:
        raise gr.Error(EXPIRED)
    return blend(layers, opacity)


def control_states(mode, lighting):
    """Which view controls apply: the light (and its choice) only in "shaded" mode, the light's
    sliders only under the directional light, the albedo choice not for the normals."""
    shaded = mode in ("shaded", "shaded_details")
    sliders = gr.update(interactive=shaded and lighting != "photo")
    return gr.update(interactive=shaded), sliders, sliders, sliders, gr.update(interactive=mode != "normals")


def render(state, yaw, pitch, light_azimuth, light_elevation, light_intensity, details, mode, lighting, albedo):
    """The kept reconstruction seen from (yaw, pitch) degrees, lit by a directional light
    (azimuth, elevation, intensity) or by the lighting estimated from the photo."""
    _, rec = _require(state)
    light = None if lighting == "photo" else (float(light_azimuth), float(light_elevation))
    with _user_errors("render"):
        start = time.perf_counter()
        image = rec.render(yaw=float(yaw), pitch=float(pitch), light=light, details=bool(details),
                           mode=mode, light_intensity=float(light_intensity), albedo=albedo,
                           size=RENDER_SIZE)
        log.debug("render: %.0f ms", (time.perf_counter() - start) * 1000)
    return image


def _turntable(session: Session, rec, folder: Path, yaw, pitch, light_azimuth, light_elevation, light_intensity,
               details, mode, lighting, albedo) -> str:
    light = None if lighting == "photo" else (float(light_azimuth), float(light_elevation))
    frames = vis.turntable_frames(
        rec.render, TURNTABLE_FRAMES, TURNTABLE_AMPLITUDE, pitch=float(pitch), light=light,
        details=bool(details), mode=mode, light_intensity=float(light_intensity), albedo=albedo,
        size=TURNTABLE_SIZE)
    return str(vis.save_gif(folder / f"{session.name}_turntable.gif", frames, fps=12))


@releases_memory
def downloads(state, details, request: gr.Request = None):
    """The kept reconstruction's files, as soon as they are written: the GLB for the 3D viewer
    (with or without the details) and the files to download (APP_OUTPUTS, the OBJ zipped). The
    turntable is another job (`turntable`), so it never holds these back."""
    job_started(request)
    if isinstance(state, Session) and state.closed:  # replaced by a newer reconstruction meanwhile
        return gr.skip(), gr.skip()
    session, rec = _require(state)
    with _user_errors("downloads"), session.workdir("export", keep=1) as folder:
        out = with_photo(session, rec).export(folder / session.name, outputs=APP_OUTPUTS)
        obj_zip = vis.obj_zip(out / "mesh.obj", folder / f"{session.name}_obj.zip")
        files = [out / "mesh.glb", obj_zip, *(out / f for f in DOWNLOAD_FILES if (out / f).is_file())]
        session.glbs = {True: out / "mesh.glb"}
        glb = _view_glb(session, rec, details)
    return str(glb), [str(f) for f in files]


def _view_glb(session: Session, rec, details) -> Path:
    """The latest export's GLB for the 3D view: the one with the details, or (made when first
    asked for) the smooth one without its detail normal map."""
    if bool(details) or False in session.glbs:
        return session.glbs[bool(details)]
    with session.workdir("glb", keep=1) as folder:
        session.glbs[False] = rec.export_glb(folder / f"{session.name}_no_details.glb", details=False)
    return session.glbs[False]


def model_view(state, details):
    """The GLB of the latest export, with or without the details, for the 3D view."""
    if not isinstance(state, Session) or state.closed or True not in state.glbs or state.rec is None:
        return gr.skip()  # no export yet: the downloads step picks the GLB
    with _user_errors("model view"):
        return str(_view_glb(state, state.rec, details))


@releases_memory
def turntable(state, yaw, pitch, light_azimuth, light_elevation, light_intensity, details, mode, lighting, albedo,
              request: gr.Request = None):
    """A turntable GIF of the kept reconstruction with the current view settings."""
    job_started(request)
    if isinstance(state, Session) and state.closed:  # replaced by a newer reconstruction meanwhile
        return gr.skip()
    session, rec = _require(state)
    with _user_errors("turntable"), session.workdir("turntable", keep=TURNTABLES_KEPT) as folder:
        return _turntable(session, rec, folder, yaw, pitch, light_azimuth, light_elevation,
                          light_intensity, details, mode, lighting, albedo)


def reset_faces():
    return face_selector(1)
