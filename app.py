"""FaceLift demo: one photo in, a relightable 3D face out, in the browser (Gradio).

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)

UI wiring only: the reconstruction is `facelift.FaceLift`, the pictures `facelift.visualize`.
API endpoints (see README "The app"), per client session:

* ``/reconstruct``  (image, face_index) -> the maps; keeps the reconstruction in the session
* ``/render``       (yaw, pitch, light_azimuth, light_elevation, light_intensity, details, mode,
                     lighting, albedo) -> the 3D view of the kept reconstruction
* ``/overlay``      (opacity) -> the face drawn over the photo in its pose (the first result)
* ``/downloads``    (details) -> the GLB for the 3D viewer, the files to download
* ``/turntable``    (the view parameters) -> a turntable GIF (made after the downloads, or on request)
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import functools
import io
import logging
import math
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

# Gradio reports usage to its makers unless told not to: off unless the operator set it (before gradio is imported)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import numpy as np
import PIL.Image

from facelift import FaceLiftError
from facelift import visualize as vis
from facelift.errors import FaceIndexError, ImageTooLargeError
from facelift.image import load_image
from facelift.pipeline import OVERLAY_OPACITY
from facelift.render import DEFAULT_LIGHT, render_sh_sphere

log = logging.getLogger("facelift.app")

HERE = Path(__file__).resolve().parent
EXAMPLES_DIR = HERE / "examples"
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.glob("*.png"))
MAX_UPLOAD_MB = 50          # what gradio's upload route accepts (launch(max_file_size=...)), and what we read
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
# Photos are downscaled to at most this many pixels on the longer side before any heavy stage (a
# JPEG is decoded at reduced scale): the face needs no 50 megapixels, and the memory one
# reconstruction needs is bounded by it (README "The app": about +270 MB at 2048 px, +850 MB for
# a 50-megapixel photo at full size).
MAX_SIDE = int(os.environ.get("FACELIFT_APP_MAX_SIDE", "2048"))
RENDER_SIZE = 512          # the 3D view, pixels
TURNTABLE_SIZE = 320       # the turntable GIF, pixels
TURNTABLE_FRAMES = 24
TURNTABLE_AMPLITUDE = 35.0  # degrees of yaw either side
STATE_TTL_S = 3600          # a session's reconstruction (and its files) is dropped after an hour
# ... and at most this many reconstructions are kept in memory across all sessions (about 8 MB
# each): beyond it the least recently used one is dropped and its visitor asked to reconstruct again
MAX_KEPT = int(os.environ.get("FACELIFT_APP_MAX_SESSIONS", "64"))
# ... and at most this many per client address: a flood of sessions from one address (80 big photos
# kept 64 reconstructions, 650 MB, for an hour) then replaces its own, not other visitors'
MAX_KEPT_PER_CLIENT = int(os.environ.get("FACELIFT_APP_MAX_SESSIONS_PER_CLIENT", "8"))
TURNTABLES_KEPT = 2         # turntable folders kept per session (older ones are deleted; one export folder)
SMALL_FACE_PX = 80          # below this many pixels across the face, warn: blurry texture and details
CONCURRENCY = 2             # reconstructions at a time (the machine's cores are shared)
QUEUE_SIZE = 64             # requests waiting, all sessions together
# Heavy jobs (reconstruct, downloads, turntable) queued or running at once, per session and per client
# address (the address uvicorn reports: behind a reverse proxy, set FORWARDED_ALLOW_IPS to the
# proxy's address so that each visitor is told apart). One flooding client (many sessions from
# one address) cannot fill the queue for everyone else.
MAX_JOBS_PER_SESSION = int(os.environ.get("FACELIFT_APP_MAX_JOBS_PER_SESSION", "2"))
MAX_JOBS_PER_CLIENT = int(os.environ.get("FACELIFT_APP_MAX_JOBS_PER_CLIENT", "4"))
GENERIC_ERROR = "Something went wrong on the server while processing this photo. Please try again or use another photo."
# The one answer to any image input that is not a file uploaded to this page (or a shipped example):
# the same words whatever the path is (missing, a folder, a pipe, a server file), so that it tells
# nothing about the server's files.
NOT_AN_UPLOAD = ("FaceLift only reads photos uploaded to this page. Upload the photo (or pick the example) "
                 "and press Reconstruct.")
# "Geometric details" is the one switch for the details (the API still takes mode="shaded_details")
MODES = [("Albedo", "albedo"), ("Shaded", "shaded"), ("Normals", "normals")]
LIGHTING = [("Directional (sliders)", "directional"), ("Estimated from the photo", "photo")]
ALBEDOS = [("FAN", "fan"), ("PCA", "pca")]
OVERLAY_SIDE = 768          # the "In the photo" view (and /overlay), pixels on the longer side at most
PHOTO_JPEG_QUALITY = 95     # the kept photo (for overlay.png and depth.png in the downloads)
# what the downloads offer (facelift.export.OUTPUTS; "obj" brings mesh.mtl and albedo.png, zipped)
APP_OUTPUTS = ("glb", "obj", "texture", "visibility", "skin_confidence", "albedo_pca", "displacement", "normal_map",
               "normal_map_details", "overlay", "landmarks", "depth")
DOWNLOAD_FILES = ("albedo.png", "texture.png", "visibility.png", "skin_confidence.png", "albedo_pca.png",
                  "displacement.png", "normal_map.png", "normal_map_details.png", "overlay.png", "landmarks.json",
                  "depth.png", "params.json")
NOTICE = ("The weights are for non-commercial research only (trained on UTKFace, whose terms allow research "
          "use only). Your photo and its results are kept on the server for about an hour (at most 75 minutes) "
          "so that you can turn, relight and download the face, then deleted.")

_WORK_ROOT = Path(tempfile.mkdtemp(prefix="facelift-app-"))
atexit.register(shutil.rmtree, _WORK_ROOT, True)

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
    """Load the model and run one example end to end, so the first visitor does not wait."""
    pipe = get_pipeline()
    if EXAMPLES:
        start = time.perf_counter()
        pipe.reconstruct(EXAMPLES[0]).render(size=RENDER_SIZE)
        log.info("warm-up reconstruction in %.1f s", time.perf_counter() - start)


# ---- per-session state ---------------------------------------------------------------------------

class SessionExpired(Exception):
    """The session's reconstruction was dropped (replaced, expired or evicted)."""


class Session:
    """What a browser tab (or API client session) keeps: its reconstruction and its files.

    Files go to folders under _WORK_ROOT, one per export or turntable; gradio copies what a
    handler returns into its own cache, so only the newest export folder and the newest
    TURNTABLES_KEPT turntable folders are kept. `cleanup()` (a newer reconstruction, gr.State expiry, or eviction from KEPT)
    drops the reconstruction and deletes the folders; a folder still being written is deleted
    when its handler finishes."""

    def __init__(self, rec, name: str, photo: bytes | None = None, layers=None, address: str | None = None):
        self.rec = rec
        self.address = address  # the client's (`_client_address`), for KEPT's per-client limit
        self.name = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40] or "face"
        self.photo = photo    # the photo as a JPEG (`keep_photo`), for the exports drawn over it
        self.layers = layers  # what the opacity slider blends (`overlay_layers`)
        self.dirs: list[tuple[str, Path]] = []
        self.glbs: dict[bool, Path] = {}  # the latest export's GLB with / without the details
        self.closed = False
        self._busy: set[Path] = set()
        self._lock = threading.Lock()

    def reconstruction(self):
        rec = self.rec
        if rec is None:
            raise SessionExpired
        KEPT.touch(self)
        return rec

    def new_dir(self, kind: str = "export") -> Path:
        with self._lock:
            if self.closed:
                raise SessionExpired
            path = Path(tempfile.mkdtemp(dir=_WORK_ROOT))
            self.dirs.append((kind, path))
            return path

    @contextmanager
    def workdir(self, kind: str, keep: int | None = None):
        """A new folder for one handler's files; afterwards only the newest `keep` finished
        folders of this kind are kept (all are deleted if the session closed meanwhile)."""
        path = self.new_dir(kind)
        with self._lock:
            self._busy.add(path)
        try:
            yield path
        finally:
            with self._lock:
                self._busy.discard(path)
                done = [p for k, p in self.dirs if (k == kind or self.closed) and p not in self._busy]
                stale = done if self.closed else done[:-keep] if keep else []
                self._remove(stale)

    def _remove(self, paths) -> None:  # with self._lock held
        gone = set(paths)
        for path in gone:
            shutil.rmtree(path, ignore_errors=True)
        self.dirs = [(k, p) for k, p in self.dirs if p not in gone]

    def folders(self) -> list[Path]:
        return [p for _, p in self.dirs]

    def cleanup(self) -> None:
        with self._lock:
            self.closed = True
            self.rec = self.photo = self.layers = None  # the memory goes now, even if gradio keeps this object
            self._remove([p for _, p in self.dirs if p not in self._busy])
        KEPT.discard(self)


class KeptReconstructions:
    """The sessions holding a reconstruction, least recently used first, at most `limit`, and
    at most `per_client` of one client address: adding one more drops the oldest (of that
    address first; its visitor is asked to reconstruct again). This bounds memory whatever
    gradio does with sessions (its state lives an hour, or an hour after the tab closes, and
    gradio keeps up to 10,000 sessions)."""

    def __init__(self, limit: int, per_client: int | None = None):
        self.limit = max(1, int(limit))
        self.per_client = max(1, int(per_client)) if per_client is not None else self.limit
        self._sessions: OrderedDict[int, Session] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: Session) -> None:
        with self._lock:
            self._sessions[id(session)] = session
            evicted = []
            address = getattr(session, "address", None)
            if address is not None:
                same = [k for k, s in self._sessions.items() if getattr(s, "address", None) == address]
                evicted += [self._sessions.pop(k) for k in same[:-self.per_client]]
            while len(self._sessions) > self.limit:
                evicted.append(self._sessions.popitem(last=False)[1])
        for old in evicted:
            log.info("dropping the least recently used reconstruction (%d kept at most, %d per client address)",
                     self.limit, self.per_client)
            old.cleanup()

    def touch(self, session: Session) -> None:
        with self._lock:
            if id(session) in self._sessions:
                self._sessions.move_to_end(id(session))

    def discard(self, session: Session) -> None:
        with self._lock:
            if self._sessions.get(id(session)) is session:
                del self._sessions[id(session)]

    def __len__(self) -> int:
        return len(self._sessions)


KEPT = KeptReconstructions(MAX_KEPT, MAX_KEPT_PER_CLIENT)


def _drop_session(value) -> None:
    if isinstance(value, Session):
        value.cleanup()


def _lighten(rec):
    """Drop what a kept reconstruction no longer needs once its pictures are made: the
    full-resolution photo (up to MAX_SIDE, 12 MB; the session keeps it as a JPEG, `keep_photo`).
    Its shape stays (params.json reports it) through a zero-stride stand-in of 3 bytes."""
    rec.image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), rec.image.shape)
    return rec


# ---- the face in the photo ------------------------------------------------------------------------

def keep_photo(image: np.ndarray) -> bytes:
    """The photo as JPEG bytes (about a tenth of its pixels' size), for `with_photo`."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=PHOTO_JPEG_QUALITY)
    return buffer.getvalue()


def with_photo(session: "Session", rec):
    """The kept reconstruction with its photo back (from the session's JPEG), for the exports
    drawn over it (overlay.png, depth.png): a copy, so the full-size views it caches go with it."""
    if session.photo is None:
        return rec
    with PIL.Image.open(io.BytesIO(session.photo)) as im:
        image = np.asarray(im.convert("RGB"))
    return dataclasses.replace(rec, image=image, _meshes=dict(rec._meshes))


def overlay_layers(rec, side: int = OVERLAY_SIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo, face rendered in the photo's pose premultiplied by its coverage, coverage) as
    uint8, at most `side` pixels a side: all the opacity slider needs (`blend`), no render per move.
    Call before `_lighten` (it needs the photo)."""
    import cv2

    rec.dense_mesh(details=True)  # built once, shared with the copy below and the 3D view
    view = dataclasses.replace(rec, _meshes=dict(rec._meshes)).photo_view()  # a copy: its full-size view goes
    h, w = rec.image.shape[:2]
    k = min(1.0, side / max(h, w))
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small = (lambda a: a) if k == 1.0 else (lambda a: cv2.resize(a, size, interpolation=cv2.INTER_AREA))
    alpha = np.clip(small(view.alpha) * 255 + 0.5, 0, 255).astype(np.uint8)
    return small(np.ascontiguousarray(rec.image)), small(view.image), alpha


def blend(layers, opacity: float) -> np.ndarray:
    """The face over the photo at `opacity` (0: the photo alone, 1: the render where it covers
    the photo), as `Reconstruction.render_in_photo` draws it."""
    opacity = min(1.0, max(0.0, float(opacity)))
    photo, render, alpha = layers
    a = opacity * alpha[..., None].astype(np.float32) / 255.0
    out = opacity * render.astype(np.float32) + (1.0 - a) * photo.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


_UNSAFE_NAME = re.compile(r"[^\w .,()+\-]+")


def display_name(name, fallback: str = "The uploaded file") -> str:
    """A client-supplied file name made safe to show: its last path part, letters, digits
    and ` ._,()+-` only (no markup, control or bidi characters), at most 48 characters."""
    text = unicodedata.normalize("NFKC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE_NAME.sub("_", re.sub(r"\s+", " ", text)).strip(" ._")
    if len(text) > 48:
        text = text[:30].rstrip() + "…" + text[-15:].lstrip()
    return text or fallback


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


# ---- which files a request may make the app read ----------------------------------------------

class PageError(gr.Error):
    """A gr.Error whose str() is its message (gr.Error's is its repr): where an input's check
    fails while gradio validates a job before queueing it, the visitor sees str()."""

    def __str__(self) -> str:
        return str(self.message)


class NotAnUpload(Exception):
    """An image input that is not a regular file in the upload folder or the examples."""


def _inside(path: str, root: str) -> bool:
    root = root.rstrip(os.sep)
    return path.startswith(root + os.sep) and len(path) > len(root) + 1


def _allowed_roots() -> list[str]:
    """The folders an image input may come from: gradio's upload/cache folder (uploads,
    webcam and clipboard pictures, examples copied into the cache) and the shipped examples."""
    from gradio.utils import get_upload_folder

    roots = []
    for root in (get_upload_folder(), str(EXAMPLES_DIR)):
        for form in (os.path.abspath(root), os.path.realpath(root)):  # our own folders: safe to resolve
            if form not in roots and form != os.sep:
                roots.append(form)
    return roots


def checked_upload(path) -> str:
    """The resolved path of `path` if it is a regular file of at most MAX_UPLOAD_BYTES in one
    of `_allowed_roots()`; otherwise NotAnUpload (ImageTooLargeError when too large).

    The given path is checked as text first (made absolute and normalised: no filesystem call
    on it), so a server path, /proc/self/fd/N or a FIFO elsewhere is refused without being
    touched. Only then is it resolved (symlinks: the result must still lie inside) and opened
    non-blocking (a FIFO or device in the folder does not hang the worker) to check on the
    open file that it is a regular file and not too large."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > 4096:
        raise NotAnUpload
    candidate = os.path.abspath(path)  # string operations only (os.getcwd for a relative path)
    roots = _allowed_roots()
    if not any(_inside(candidate, root) for root in roots):
        raise NotAnUpload
    try:
        real = os.path.realpath(candidate)
    except (OSError, ValueError):
        raise NotAnUpload from None
    if not any(_inside(real, root) for root in roots):
        raise NotAnUpload  # a symlink out of the folder
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(real, flags)
    except OSError:
        raise NotAnUpload from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise NotAnUpload
    if info.st_size > MAX_UPLOAD_BYTES:
        raise ImageTooLargeError(f"The uploaded file is larger than {MAX_UPLOAD_MB} MB; use a smaller photo.")
    return real


def _refuse_non_uploads(path) -> str:
    try:
        return checked_upload(path)
    except NotAnUpload:
        raise PageError(NOT_AN_UPLOAD, title="Not an uploaded photo") from None
    except ImageTooLargeError as exc:
        raise PageError(str(exc), title="Image too large") from None


def photo_input(**kwargs) -> gr.Image:
    """A gr.Image that hands FaceLift the uploaded file untouched (type="filepath", no
    re-encoding) and turns files PIL cannot even open into a clear message; FaceLift's
    loader checks everything else (format, size limits, EXIF). (The preprocess is wrapped on
    the instance: a gr.Image subclass would make gradio write an app.pyi stub file.)"""
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    preprocess = image.preprocess

    def friendly_preprocess(payload):
        if payload is None:
            return None
        url = getattr(payload, "url", None)
        if isinstance(url, str) and url.startswith("data:"):  # a picture inside the request: gradio
            if len(url) > MAX_UPLOAD_BYTES * 4 // 3 + 1024:     # decodes it into its upload folder
                raise PageError(f"The picture is larger than {MAX_UPLOAD_MB} MB; use a smaller photo.",
                               title="Image too large")
            path = _call_preprocess(preprocess, payload)
            return _refuse_non_uploads(path) if path is not None else None
        # before gradio's preprocess, which opens the path: only uploads and examples, as regular files
        payload = payload.model_copy(update={"path": _refuse_non_uploads(getattr(payload, "path", None))})
        return _call_preprocess(preprocess, payload)

    image.preprocess = friendly_preprocess
    return image


def _call_preprocess(preprocess, payload):
    """gradio's own preprocess (it opens the file with PIL), its errors made into clear messages."""
    try:
        return preprocess(payload)
    except gr.Error:
        raise
    except PIL.Image.DecompressionBombError:
        name = display_name(getattr(payload, "orig_name", None), "The uploaded image")
        raise PageError(f"{name} is far too large (too many pixels); downscale it first.",
                       title="Image too large") from None
    except Exception:
        name = display_name(getattr(payload, "orig_name", None))
        raise PageError(f"{name} is not an image FaceLift can read, or it is damaged; "
                       "use a JPEG, PNG, WebP, BMP, TIFF, GIF or PPM photo.", title="Unreadable file") from None


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


def _face_choices(n: int) -> list[tuple[str, int]]:
    return [(f"Face {i + 1}" + (" (largest)" if i == 0 and n > 1 else ""), i) for i in range(n)]


def face_selector(n: int, index: int = 0) -> gr.Dropdown:
    """The Face selector: shown only when there is a choice (two faces or more)."""
    return gr.Dropdown(choices=_face_choices(n), value=index, visible=n > 1)


def no_such_face(index: int, n: int) -> str:
    """FaceIndexError in the words of the page: faces numbered from 1 (the API's face_index from 0)."""
    faces = f"{n} face{'s' if n != 1 else ''} (Face 1{f' to Face {n}' if n > 1 else ''}, largest first)"
    return (f"There is no face {index + 1} in this photo: it has {faces}. "
            f"In the API face_index counts from 0: face_index={index} would be face {index + 1}.")


EXPIRED = "Upload a photo and press Reconstruct first (or your session expired: reconstruct again)."


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

def releases_memory(handler):
    """A heavy handler after which freed memory is handed back to the system (`MemoryReleaser`),
    whether it succeeded or not."""
    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        finally:
            MEMORY.soon()
    return wrapper


@releases_memory
def reconstruct(image, face_index, opacity, state, request: gr.Request = None):
    """image (file path), face index and the overlay's opacity -> the face in the photo, the
    maps, the face selector and the kept reconstruction."""
    if not image:
        raise gr.Error("Upload a photo first, take one with the webcam, or pick an example.")
    index = _face_index(face_index)
    image = _refuse_non_uploads(image)  # also checked before gradio's preprocess opens it; here for direct calls
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
        outputs = (
            blend(layers, opacity if opacity is not None else OVERLAY_OPACITY),
            vis.draw_faces(rec.image, rec.faces, rec.face_index),
            vis.texture_with_visibility(rec.texture, rec.visibility, mask),
            vis.confidence_image(rec.skin_confidence, mask),
            vis.on_background(rec.albedo_pca, mask),
            vis.on_background(rec.albedo, mask),
            vis.displacement_image(rec.displacement, mask, size=384),
            vis.normal_map_image(rec.normal_map, mask),
            render_sh_sphere(rec.sh, 256, background=vis.BACKGROUND),
        )
    for note in reconstruction_warnings(rec, index):
        gr.Warning(note)
    n = len(rec.faces)
    yaw, pitch, roll = rec.fit.yaw_pitch_roll()
    info = (f"**Face {index + 1} of {n}** · reconstructed in {seconds:.2f} s · head pose yaw {yaw:+.0f}°, "
            f"pitch {pitch:+.0f}°, roll {roll:+.0f}° · albedo: {rec.albedo_source}, "
            f"lighting: {rec.albedo_pca_source.replace('_', ' ')}")
    log.info("reconstruct: %.0f ms (%s)", seconds * 1000, rec.timings)
    _drop_session(state)
    session = Session(rec, Path(str(image)).stem, photo=keep_photo(rec.image), layers=layers,
                      address=_client_address(request))
    _lighten(rec)
    KEPT.add(session)
    return (*outputs, face_selector(n, index), info, session)


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


# ---- per-session and per-client limits on queued work ------------------------------------------

def _client_address(request) -> str | None:
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def _heavy_events() -> list:
    """gradio's queued and running events of the heavy jobs (concurrency_id "heavy")."""
    queue = getattr(demo, "_queue", None)
    if queue is None:
        return []
    events = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
    events += [e for job in list(queue.active_jobs) if job for e in list(job)]
    return [e for e in events if getattr(e, "concurrency_id", None) == "heavy"]


# A job accepted by a validator enters gradio's queue a moment later; until then it is counted
# from here (validators run concurrently: without this, a burst would all see a queue below the limit).
_accepted: list[tuple[str | None, str | None, float]] = []  # (session hash, address, time.monotonic())
_accepted_lock = threading.Lock()
ACCEPTED_WINDOW_S = 3.0


def job_refusal(request) -> str | None:
    """Why a new heavy job of this request's session/client is refused now (None: accepted and
    counted): at most MAX_JOBS_PER_SESSION per session and MAX_JOBS_PER_CLIENT per address,
    waiting or running."""
    session, address = getattr(request, "session_hash", None), _client_address(request)
    with _accepted_lock:
        now = time.monotonic()
        events = _heavy_events()
        # an accepted job still counts here until an event of its session is in the queue (or a while passed)
        _accepted[:] = [(s, a, t) for s, a, t in _accepted if now - t < ACCEPTED_WINDOW_S and not any(
            e.session_hash == s and getattr(e, "enqueue_time", 0.0) >= t for e in events)]
        jobs = [(e.session_hash, _client_address(e.request)) for e in events] + [(s, a) for s, a, _ in _accepted]
        of_session = sum(1 for s, _ in jobs if session is not None and s == session)
        of_client = sum(1 for _, a in jobs if address is not None and a == address)
        if of_session >= MAX_JOBS_PER_SESSION:
            return (f"This page already has {of_session} reconstructions or exports waiting or running; "
                    "wait for them to finish, then try again.")
        if of_client >= MAX_JOBS_PER_CLIENT:
            return (f"Too many reconstructions from your address are waiting or running ({of_client}); "
                    "wait for them to finish, then try again.")
        _accepted.append((session, address, now))
    return None


def job_started(request) -> None:
    """A job accepted by `job_refusal` is running: it no longer counts as accepted (gradio counts
    it while it runs), so a quick job does not hold its place for ACCEPTED_WINDOW_S after it ends."""
    session = getattr(request, "session_hash", None)
    with _accepted_lock:
        for i, (s, _, _) in enumerate(_accepted):
            if session is not None and s == session:
                del _accepted[i]
                return


def _refuse_or_accept(refusal: str | None, n_inputs: int) -> list:
    if refusal is not None:
        log.info("refused a job at the queue: %s", refusal)
    return [gr.validate(refusal is None, refusal or "")] + [gr.validate(True, "")] * (n_inputs - 1)


def view_job_validator(state, yaw, pitch, light_azimuth, light_elevation, light_intensity, details, mode,
                       lighting, albedo, request: gr.Request):
    """Run by gradio before a turntable job is queued."""
    return _refuse_or_accept(job_refusal(request), 10)


def downloads_job_validator(state, details, request: gr.Request):
    """Run by gradio before a downloads job is queued."""
    return _refuse_or_accept(job_refusal(request), 2)


# ---- the HTTP layer (issue 17): upload bytes per address, the upload folder's disk budget, the
# job cap at the door for /reconstruct, uploads deleted with their session, security headers ------

_MB = 1024 * 1024
# Bytes one client address may send (uploads and request bodies) within a sliding window: 429 beyond it
UPLOAD_MB_PER_CLIENT = float(os.environ.get("FACELIFT_APP_UPLOAD_MB_PER_CLIENT", "200"))
UPLOAD_WINDOW_S = float(os.environ.get("FACELIFT_APP_UPLOAD_WINDOW_S", "600"))
# gradio's upload/cache folder is kept under this size: the oldest files go first, never one younger
# than EVICT_AFTER_S, one a queued or running job names, or one that was there before the app served
UPLOAD_DISK_MB = float(os.environ.get("FACELIFT_APP_UPLOAD_DISK_MB", "2048"))
EVICT_AFTER_S = float(os.environ.get("FACELIFT_APP_EVICT_AFTER_S", "60"))
MAX_BODY_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + _MB  # one request: a 50 MB photo as base64 in JSON, at most
# (name, value) on every response. The Gradio front end needs inline scripts and styles (its config
# and Svelte's styles), string evaluation (it does not start without it), blob:/data: pictures, its
# theme's Google fonts.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
    "style-src 'self' 'unsafe-inline' https://fonts.googleapis.com",
    "font-src 'self' data: https://fonts.gstatic.com",
    "img-src 'self' data: blob:",
    "media-src 'self' data: blob:",
    "connect-src 'self' data: blob:",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    # instead of X-Frame-Options (which cannot name several sites): embeddable in its Hugging Face Space page
    "frame-ancestors 'self' https://huggingface.co https://*.hf.space",
])
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_JOB_ROUTE = re.compile(r"/gradio_api/(?:queue/join|(?:call/v2|call|run|api)/(?P<api>[^/]+))/?$")
_UPLOAD_ROUTE = re.compile(r"/gradio_api/upload/?$")


def _mb(nbytes: float) -> str:
    mb = nbytes / _MB
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class UploadAllowance:
    """Bytes each client address may send within a sliding window (`charge`)."""

    def __init__(self, limit_bytes: float, window_s: float, max_clients: int = 10_000):
        self.limit, self.window, self.max_clients = int(limit_bytes), float(window_s), max_clients
        self._sent: OrderedDict[str, list[tuple[float, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def charge(self, address: str | None, nbytes: int, now: float | None = None) -> str | None:
        """None (and the bytes counted) if `address` may send `nbytes` more now; else why not."""
        now = time.monotonic() if now is None else now
        key = address or "unknown"
        with self._lock:
            sent = [(t, n) for t, n in self._sent.get(key, []) if now - t < self.window]
            used = sum(n for _, n in sent)
            if used + nbytes > self.limit:
                self._sent[key] = sent
                wait, freed = self.window, 0
                for t, n in sent:  # oldest first: when enough of it has left the window
                    freed += n
                    if used - freed + nbytes <= self.limit:
                        wait = t + self.window - now
                        break
                return (f"Your address has sent {_mb(used)} to this page in the last {_minutes(self.window)}; "
                        f"{_mb(self.limit)} is the most it accepts. Try again in {_minutes(wait)}.")
            self._sent[key] = sent + [(now, nbytes)]
            self._sent.move_to_end(key)
            while len(self._sent) > self.max_clients:
                self._sent.popitem(last=False)
        return None


def _upload_root() -> str:
    from gradio.utils import get_upload_folder

    return os.path.abspath(get_upload_folder())


def _files_under(root: str):
    """(mtime, size, path) of the regular files under `root` (symlinks are neither followed nor counted)."""
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield info.st_mtime, info.st_size, path


class DiskBudget:
    """gradio's upload/cache folder kept under `limit_bytes`: `make_room` evicts the oldest files
    that may go (older than `min_age_s`, not named by a queued or running job, not there before
    the app served: gradio's copies of the examples) and reserves room for a request underway."""

    def __init__(self, limit_bytes: float, min_age_s: float):
        self.limit, self.min_age = int(limit_bytes), float(min_age_s)
        self.reserved = 0
        self.protected: set[str] = set()
        self._lock = threading.Lock()

    def protect_existing(self) -> None:
        self.protected = {path for _, _, path in _files_under(_upload_root())}

    def make_room(self, nbytes: int, in_use=frozenset()) -> bool:
        """True (and `nbytes` reserved until `release`) if the folder has room for `nbytes` more."""
        root = _upload_root()
        with self._lock:
            files = sorted(_files_under(root))
            total = sum(size for _, size, _ in files)
            now, evicted = time.time(), 0
            for mtime, size, path in files:
                if total + self.reserved + nbytes <= self.limit:
                    break
                if now - mtime < self.min_age or path in in_use or path in self.protected:
                    continue
                try:
                    folder_is_old = now - os.lstat(os.path.dirname(path)).st_mtime >= self.min_age
                    os.unlink(path)
                except OSError:
                    continue
                total, evicted = total - size, evicted + 1
                if folder_is_old:  # not one an upload may be moving into now
                    _remove_empty_parent(path, root)
            if evicted:
                log.info("upload folder over its budget: evicted %d oldest files (%s left)", evicted, _mb(total))
            if total + self.reserved + nbytes > self.limit:
                return False
            self.reserved += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.reserved = max(0, self.reserved - nbytes)


def _remove_empty_parent(path: str, root: str) -> None:
    """The folder gradio made for one upload, once empty."""
    parent = os.path.dirname(path)
    if parent != root and _inside(parent, root):
        try:
            os.rmdir(parent)
        except OSError:
            pass


class SessionUploads:
    """Which files in the upload folder each session's jobs named, so that they go when the
    session ends (`delete_session_uploads`); bounded (sessions beyond `max_sessions` are forgotten:
    their files then go with the disk budget or gradio's hourly cleanup)."""

    def __init__(self, max_sessions: int = 10_000, max_files: int = 64):
        self.max_sessions, self.max_files = max_sessions, max_files
        self._files: OrderedDict[str, list[str]] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, session: str, paths) -> None:
        with self._lock:
            files = self._files.setdefault(session, [])
            files += [p for p in paths if p not in files]
            del files[:-self.max_files]
            self._files.move_to_end(session)
            while len(self._files) > self.max_sessions:
                self._files.popitem(last=False)

    def forget(self, session: str) -> list[str]:
        """The session's files that no other session named."""
        with self._lock:
            mine = self._files.pop(session, [])
            others = {p for files in self._files.values() for p in files}
        return [p for p in mine if p not in others]


UPLOAD_ALLOWANCE = UploadAllowance(UPLOAD_MB_PER_CLIENT * _MB, UPLOAD_WINDOW_S)
DISK = DiskBudget(UPLOAD_DISK_MB * _MB, EVICT_AFTER_S)
SESSION_UPLOADS = SessionUploads()


def _named_paths(data, root: str, depth: int = 0, found: set | None = None) -> set[str]:
    """The paths (as text, made absolute) inside `root` that a request's data names as {"path": ...}."""
    found = set() if found is None else found
    if depth > 8 or len(found) > 64:
        return found
    if isinstance(data, dict):
        path = data.get("path")
        if isinstance(path, str) and path and "\x00" not in path and len(path) <= 4096:
            path = os.path.abspath(path)
            if _inside(path, root):
                found.add(path)
        items = data.values()
    elif isinstance(data, list):
        items = data
    else:
        return found
    for item in items:
        _named_paths(item, root, depth + 1, found)
    return found


def _paths_in_jobs() -> set[str]:
    """The upload-folder paths that gradio's queued and running events name (never evicted)."""
    queue = getattr(demo, "_queue", None)
    if queue is None:
        return set()
    events = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
    events += [e for job in list(queue.active_jobs) if job for e in list(job)]
    root, found = _upload_root(), set()
    for event in events:
        _named_paths(getattr(getattr(event, "data", None), "data", None), root, found=found)
    return found


def _delete_upload(path: str, root: str) -> bool:
    """Delete one uploaded file (a regular file, resolved inside the upload folder) and its folder if empty."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    try:
        if not _inside(real, real_root) or not stat.S_ISREG(os.lstat(real).st_mode):
            return False
        os.unlink(real)
    except OSError:
        return False
    _remove_empty_parent(real, real_root)
    return True


def delete_session_uploads(request: gr.Request = None) -> None:
    """gradio's unload event (the tab closed, or an API client closed): the files this session's
    jobs named go now, unless another session named them too or a job still needs them."""
    session = getattr(request, "session_hash", None)
    if not session:
        return
    paths = SESSION_UPLOADS.forget(session)
    if not paths:
        return
    in_use, root = _paths_in_jobs(), _upload_root()
    deleted = sum(_delete_upload(p, root) for p in paths if p not in in_use and p not in DISK.protected)
    log.info("session ended: deleted %d of its %d uploaded files", deleted, len(paths))


def _job_fn(api_name: str | None, payload: dict):
    """The gradio event function a queue/call request asks for (None if unknown)."""
    if api_name is None:
        index = payload.get("fn_index")
        return demo.fns.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
    return next((fn for fn in demo.fns.values() if fn.api_name == api_name), None)


def door_counts(fn) -> bool:
    """Whether `door_refusal` counts this event function: the heavy jobs that no gradio validator
    counts (/reconstruct)."""
    return fn is not None and fn.concurrency_id == "heavy" and getattr(fn, "validator", None) is None


def door_refusal(fn, session: str | None, address: str | None) -> str | None:
    """`job_refusal` for the jobs `door_counts`, checked at the HTTP door, so that no input is
    preprocessed (a non-image upload still gets FaceLift's message from the job itself) and a
    refused job never enters the queue. An accepted one counts as accepted until `door_joined`."""
    if not door_counts(fn):
        return None
    from types import SimpleNamespace

    return job_refusal(SimpleNamespace(session_hash=session, client=SimpleNamespace(host=address)))


def door_joined(session: str | None, address: str | None) -> None:
    """gradio answered the request of a job `door_refusal` accepted: the job is in its queue (and
    counted there) or was refused or already done, so it no longer counts as accepted."""
    with _accepted_lock:
        for i in range(len(_accepted) - 1, -1, -1):
            if _accepted[i][:2] == (session, address):
                del _accepted[i]
                return


class _OnResponseStart:
    """A `send` that calls `callback` once: when the response starts, or at `close()` if it never did."""

    def __init__(self, send, callback):
        self.send, self.callback, self.called = send, callback, False

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            self.close()
        await self.send(message)

    def close(self) -> None:
        if not self.called:
            self.called = True
            self.callback()


def _with_security_headers(send):
    names = {name for name, _ in SECURITY_HEADERS}

    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = {**message, "headers": headers + SECURITY_HEADERS}
        await send(message)
    return send_with_headers


async def _read_body(receive, keep: bool = True) -> tuple[bytes, bool]:
    """The request's body (at most MAX_BODY_BYTES + 1 of it; nothing without `keep`: a refused
    body is only drained) and whether the client disconnected."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        if keep and size <= MAX_BODY_BYTES:
            chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replaying(body: bytes, receive):
    """A `receive` that gives the app the body already read, then the client's own messages."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


_last_refusal: dict[str | None, float] = {}  # address -> time.monotonic() of its last 429 for bytes
REFUSAL_GRACE_S = 10.0


def _refused_recently(address: str | None) -> bool:
    """Whether `address` had a byte-allowance 429 in the last REFUSAL_GRACE_S seconds (and note
    this one): its first refusal is drained so the client reads the message; the ones a flooder
    sends after it are answered at once and the connection closed, so its bodies cost nothing."""
    now = time.monotonic()
    last = _last_refusal.get(address)
    if len(_last_refusal) > 10_000:
        _last_refusal.clear()
    _last_refusal[address] = now
    return last is not None and now - last < REFUSAL_GRACE_S


async def _refuse(send, status: int, message: str, as_json: bool, retry_after_s: float | None = None,
                  close: bool = False) -> None:
    import json

    if as_json:
        body, kind = json.dumps({"detail": message, "error": message}).encode(), b"application/json"
    else:
        body, kind = message.encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after_s))).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


NO_ROOM = "The server has no room for more uploads right now; try again in a few minutes."


class HttpGuard:
    """ASGI middleware around the app gradio builds (`launch(app_kwargs=http_guard_kwargs())`):
    security headers on every response; on POSTs to gradio's API a per-address byte allowance
    (429), a size cap (413) and a Content-Length (411); room in the disk budget for uploads and
    large bodies (503); the per-session/address cap on queued heavy jobs for /reconstruct (429,
    JSON); and it notes which uploaded files each session's jobs name (`delete_session_uploads`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_security_headers(send)
        path = scope.get("path", "")
        if scope.get("method") != "POST" or "/gradio_api/" not in path:
            return await self.app(scope, receive, send)
        upload = _UPLOAD_ROUTE.search(path) is not None
        job = _JOB_ROUTE.search(path)
        as_json = not upload
        client = scope.get("client")
        address = client[0] if client else None
        length = _content_length(scope)
        if length is None:
            return await _refuse(send, 411, "Send the request with a Content-Length.", as_json)
        if length > MAX_BODY_BYTES:
            return await _refuse(send, 413, f"The request is larger than the {MAX_UPLOAD_MB} MB this page accepts.",
                                 as_json)
        refusal = UPLOAD_ALLOWANCE.charge(address, length)
        if refusal is not None:
            log.info("refused %s from %s: %s", path, address, refusal)
            if _refused_recently(address):  # a client that keeps sending: answer without taking its body
                return await _refuse(send, 429, refusal, as_json, retry_after_s=60, close=True)
            await _read_body(receive, keep=False)  # read (not kept) so that the client gets the answer, not a reset
            return await _refuse(send, 429, refusal, as_json, retry_after_s=60)
        if job is None and not upload:
            return await self.app(scope, receive, send)
        joined = None
        if job is not None:
            body, gone = await _read_body(receive)
            if gone:
                return
            receive = _replaying(body, receive)
            refusal, counted = await self._job_refusal(job["api"], body, address)
            if refusal is not None:
                log.info("refused a job at the door from %s: %s", address, refusal)
                return await _refuse(send, 429, refusal, True, retry_after_s=10)
            if counted is not None:
                send = joined = _OnResponseStart(send, lambda: door_joined(*counted))
        try:
            await self._with_room(scope, receive, send, upload, length, as_json)
        finally:
            if joined is not None:
                joined.close()

    async def _with_room(self, scope, receive, send, upload: bool, length: int, as_json: bool):
        """The app, once the disk budget has room for an upload or a large body (a picture inside it)."""
        if not upload and length <= 64 * 1024:
            return await self.app(scope, receive, send)
        import anyio

        if not await anyio.to_thread.run_sync(DISK.make_room, length, _paths_in_jobs()):
            log.warning("upload folder full (%s budget): refused %s", _mb(DISK.limit), scope.get("path"))
            if upload:
                await _read_body(receive, keep=False)
            return await _refuse(send, 503, NO_ROOM, as_json, retry_after_s=60)
        try:
            await self.app(scope, receive, send)
        finally:
            DISK.release(length)

    async def _job_refusal(self, api_name: str | None, body: bytes, address: str | None):
        """(why the job is refused or None, (session, address) if `door_refusal` counted it)."""
        import json

        try:
            if len(body) > _MB:
                import anyio

                payload = await anyio.to_thread.run_sync(json.loads, body)
            else:
                payload = json.loads(body)
        except ValueError:
            return None, None  # gradio answers malformed requests itself
        if not isinstance(payload, dict):
            return None, None
        session = payload.get("session_hash")
        session = session if isinstance(session, str) and session else None
        fn = _job_fn(api_name, payload)
        refusal = door_refusal(fn, session, address)
        if refusal is None and session is not None:
            paths = _named_paths(payload.get("data"), _upload_root())
            if paths:
                SESSION_UPLOADS.note(session, paths)
        return refusal, (session, address) if refusal is None and door_counts(fn) else None


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
            return length if length >= 0 else None
    return None


def http_guard_kwargs() -> dict:
    """launch(app_kwargs=...) for the FastAPI app gradio builds: HttpGuard inside gradio's own
    CORS and compression middleware, and the files already in the upload folder kept."""
    from starlette.middleware import Middleware

    DISK.protect_existing()
    return {"middleware": [Middleware(HttpGuard)]}


# ---- the page ----------------------------------------------------------------------------------

CSS = """
#title h1 {margin-bottom: 0}
#info {min-height: 1.5em}
#notice {font-size: 0.85em; opacity: 0.8}
#result {scroll-margin-top: 8px}
/* output pictures: the label above the picture, not over it */
.pic label[data-testid="block-label"].float {position: static; margin: 0 0 4px 0;}
.pic .image-container {height: calc(100% - 34px) !important;}
.pic .image-container img {height: 100%; width: 100%; object-fit: contain;}
"""

# On a narrow screen the results are below the photo: bring the first one (the face in the photo,
# its opacity slider and the summary) into sight as soon as Reconstruct is pressed, so the
# progress shows there.
SCROLL_TO_RESULT = """() => {
    const el = document.getElementById('result');
    if (!el) return;
    const r = el.getBoundingClientRect();
    if (r.top < 0 || r.bottom > window.innerHeight) el.scrollIntoView({block: 'start', behavior: 'instant'});
}"""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="FaceLift", delete_cache=(900, STATE_TTL_S)) as demo:
        state = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=_drop_session)
        gr.Markdown("# FaceLift\nOne photo in, a relightable 3D face out. Upload a portrait (or use the webcam, "
                    "or pick the example) and press **Reconstruct**; then turn and relight the face.",
                    elem_id="title")
        image_args = dict(format="png", interactive=False, buttons=["fullscreen"], elem_classes="pic")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                photo = photo_input(label="Photo", format="png", sources=["upload", "webcam", "clipboard"],
                                    height=290, elem_id="photo", elem_classes="pic")
                with gr.Row():
                    face = gr.Dropdown(choices=_face_choices(1), value=0, label="Face", allow_custom_value=True,
                                       scale=1, min_width=120, elem_id="face", visible=False)
                    button = gr.Button("Reconstruct", variant="primary", scale=1, min_width=120,
                                       elem_id="reconstruct")
                if EXAMPLES:
                    gr.Examples(examples=[[p] for p in EXAMPLES], inputs=[photo], label="Example")
                gr.Markdown(NOTICE, elem_id="notice")
            with gr.Column(scale=1, min_width=280, elem_id="result"):
                overlay = gr.Image(label="In the photo", format="jpeg", height=290, interactive=False,
                                   buttons=["download", "fullscreen"], elem_id="overlay", elem_classes="pic")
                opacity = gr.Slider(0, 1, value=OVERLAY_OPACITY, step=0.05, label="Opacity of the reconstruction",
                                    elem_id="opacity")
                info = gr.Markdown(label="Summary", elem_id="info")
            with gr.Column(scale=1, min_width=280):
                view = gr.Image(label="3D view", format="jpeg", height=290, interactive=False,
                                buttons=["download", "fullscreen"], elem_id="view", elem_classes="pic")
                mode = gr.Radio(MODES, value="shaded", label="Mode", elem_id="mode")
                with gr.Row():
                    details = gr.Checkbox(value=True, label="Geometric details", elem_id="details", min_width=100)
                    albedo = gr.Radio(ALBEDOS, value="fan", label="Albedo", elem_id="albedo", min_width=140)
            with gr.Column(scale=1, min_width=280):
                yaw = gr.Slider(-90, 90, value=0, step=1, label="Yaw (°)", elem_id="yaw")
                pitch = gr.Slider(-60, 60, value=0, step=1, label="Pitch (°)", elem_id="pitch")
                lighting = gr.Radio(LIGHTING, value="directional", label="Light", elem_id="lighting")
                light_azimuth = gr.Slider(-180, 180, value=DEFAULT_LIGHT[0], step=1, label="Light azimuth (°)",
                                          elem_id="light_azimuth")
                light_elevation = gr.Slider(-90, 90, value=DEFAULT_LIGHT[1], step=1, label="Light elevation (°)",
                                            elem_id="light_elevation")
                light_intensity = gr.Slider(0, 2, value=1.0, step=0.05, label="Light intensity",
                                            elem_id="light_intensity")

        with gr.Row(equal_height=False):
            model3d = gr.Model3D(label="Interactive 3D (GLB)", height=320, elem_id="model3d", scale=3,
                                 clear_color=(0.93, 0.93, 0.95, 1.0))
            files = gr.File(label="Downloads: GLB, OBJ zip, maps (PNG), overlay, landmarks, depth, params.json",
                            file_count="multiple", interactive=False, elem_id="downloads", scale=4)
            with gr.Column(scale=3, min_width=240):
                turntable_gif = gr.Image(label="Turntable (made after the downloads)", format="gif", height=280,
                                         interactive=False, buttons=["download", "fullscreen"], elem_id="turntable",
                                         elem_classes="pic")
                turntable_button = gr.Button("Redo turntable with the current view settings", size="sm",
                                             elem_id="turntable_button")
        gr.Markdown("### Maps in the UV layout\nDetected face: the landmarks and the face box (numbered from 1) "
                    "in the photo. Texture: the photo unwrapped, hatched where the photo does not "
                    "see the face. Skin confidence: how far the low-frequency face model explains each texel (dark on "
                    "occluders, hair, glasses, highlights). PCA albedo: the low-frequency albedo of the face model. FAN albedo: the "
                    "high-detail albedo. Displacement: the DRN's details along the normal. Lighting: the "
                    "lighting estimated from the photo, on a grey sphere.", elem_id="maps_caption")
        with gr.Row():
            detected = gr.Image(label="Detected face", height=230, elem_id="detected", **image_args)
            texture = gr.Image(label="Texture + visibility", height=230, elem_id="texture", **image_args)
            skin_confidence = gr.Image(label="Skin confidence", height=230, elem_id="skin_confidence", **image_args)
            albedo_pca = gr.Image(label="PCA albedo", height=230, elem_id="albedo_pca", **image_args)
        with gr.Row():
            albedo_fan = gr.Image(label="FAN albedo", height=230, elem_id="albedo_fan", **image_args)
            normal_map = gr.Image(label="Normal map", height=230, elem_id="normal_map", **image_args)
            sphere = gr.Image(label="Lighting", height=230, elem_id="sphere", **image_args)
            displacement = gr.Image(label="Displacement", height=230, elem_id="displacement", **image_args)

        view_inputs = [yaw, pitch, light_azimuth, light_elevation, light_intensity, details, mode, lighting, albedo]
        maps = [detected, texture, skin_confidence, albedo_pca, albedo_fan, displacement, normal_map, sphere]

        # reconstruct (the face in the photo and the maps) -> first 3D view -> downloads -> turntable:
        # each result appears as soon as it exists, and the turntable never holds back the files
        button.click(None, js=SCROLL_TO_RESULT)
        for public, trigger in ((True, button.click), (False, face.select)):
            visibility = "public" if public else "private"
            suffix = "" if public else "_face"
            trigger(reconstruct, [photo, face, opacity, state], [overlay, *maps, face, info, state],
                    api_name="reconstruct" if public else "reconstruct_face", api_visibility=visibility,
                    show_progress_on=[overlay, *maps], concurrency_id="heavy", concurrency_limit=CONCURRENCY) \
                .success(render, [state, *view_inputs], [view], api_name=f"first_view_{visibility}",
                         api_visibility="private", show_progress="minimal",
                         concurrency_id="render", concurrency_limit=2 * CONCURRENCY) \
                .success(downloads, [state, details], [model3d, files], api_name="downloads" + suffix,
                         api_visibility=visibility, show_progress_on=[model3d, files], concurrency_id="heavy",
                         concurrency_limit=CONCURRENCY, validator=downloads_job_validator) \
                .success(turntable, [state, *view_inputs], [turntable_gif], api_name=f"turntable_after_{visibility}",
                         api_visibility="private", show_progress_on=[turntable_gif], concurrency_id="heavy",
                         concurrency_limit=CONCURRENCY, validator=view_job_validator)
        opacity.change(overlay_view, [state, opacity], [overlay], api_name="overlay", trigger_mode="always_last",
                       show_progress="hidden", concurrency_id="render", concurrency_limit=2 * CONCURRENCY)
        # moving a slider re-renders the kept reconstruction (no networks)
        gr.on([c.change for c in view_inputs],
              render, [state, *view_inputs], [view], api_name="render", trigger_mode="always_last",
              show_progress="hidden", concurrency_id="render", concurrency_limit=2 * CONCURRENCY)
        # controls that do not apply are disabled
        gr.on([mode.change, lighting.change], control_states, [mode, lighting],
              [lighting, light_azimuth, light_elevation, light_intensity, albedo], api_name="control_states",
              api_visibility="private", queue=False, show_progress="hidden")
        details.change(model_view, [state, details], [model3d], api_name="model_view", api_visibility="private",
                       concurrency_id="render", concurrency_limit=2 * CONCURRENCY)
        turntable_button.click(turntable, [state, *view_inputs], [turntable_gif], api_name="turntable",
                               concurrency_id="heavy", concurrency_limit=CONCURRENCY, validator=view_job_validator)
        photo.change(reset_faces, None, [face], api_name="reset_faces", api_visibility="private", queue=False)
        demo.unload(delete_session_uploads)
    return demo


demo = build_demo()
demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Like MALLOC_ARENA_MAX=2 (which, when set, wins): glibc gives threads that allocate at
    once their own malloc arena, up to 8 per core, and with gradio's worker threads the memory
    freed by each reconstruction's large arrays stays scattered over them: the server's RSS
    crept up by 170 MB over 100 reconstructions in the load test, 50 MB with 2 arenas, at the
    same latency. Call before the worker threads start; True if applied."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL("libc.so.6").mallopt(-8, int(arenas)) == 1  # -8: M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False


class MemoryReleaser(threading.Thread):
    """Hands the heap memory freed by heavy jobs back to the system (glibc's malloc_trim) a
    moment after they finish, off the request path. glibc keeps freed chunks in its arenas (its
    mmap threshold rises to 32 MB after the first large free, so later large arrays come from
    the heap) and returns only the top of each heap by itself: after 6 concurrent 49-megapixel
    photos and 9 normal requests the server stayed 710 MB above its warm baseline, 150 MB with
    this (tests/memory_burst.py)."""

    def __init__(self, delay_s: float = 1.0):
        super().__init__(name="facelift-memory-release", daemon=True)
        self.delay_s = delay_s
        self._due = threading.Event()
        self.trims = 0
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else None
        except (OSError, AttributeError):  # not glibc
            self._trim = None

    def soon(self) -> None:
        """A heavy job finished (gradio is still encoding its outputs: hence the delay)."""
        if self._trim is not None:
            self._due.set()

    def run(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self.delay_s)  # jobs finishing meanwhile share this trim
            self._due.clear()
            self._trim(0)
            self.trims += 1


MEMORY = MemoryReleaser()


def _stop(signum, frame):
    raise KeyboardInterrupt  # gradio then closes the server, its cache and our temp files (atexit)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _stop)
    limit_malloc_arenas()
    MEMORY.start()
    if os.environ.get("FACELIFT_APP_WARMUP", "1") != "0":
        warm_up()
    else:
        get_pipeline()
    demo.launch(max_file_size="50mb", css=CSS, theme=gr.themes.Soft(), app_kwargs=http_guard_kwargs())


if __name__ == "__main__":
    main()
