"""Which files a request may make the app read: only regular files uploaded to this page (gradio's
upload folder) or the shipped examples; the photo input that enforces it; file names made safe to show."""

from __future__ import annotations

import os
import re
import stat
import unicodedata

import gradio as gr
import PIL.Image

from demo.config import EXAMPLES_DIR, MAX_UPLOAD_BYTES, MAX_UPLOAD_MB, NOT_AN_UPLOAD
from facelift.errors import ImageTooLargeError

_UNSAFE_NAME = re.compile(r"[^\w .,()+\-]+")


def display_name(name, fallback: str = "The uploaded file") -> str:
    """A client-supplied file name made safe to show: its last path part, letters, digits
    and ` ._,()+-` only (no markup, control or bidi characters), at most 48 characters."""
    text = unicodedata.normalize("NFKC", str(name or "")).replace("\\", "/").rsplit("/", 1)[-1]
    text = _UNSAFE_NAME.sub("_", re.sub(r"\s+", " ", text)).strip(" ._")
    if len(text) > 48:
        text = text[:30].rstrip() + "…" + text[-15:].lstrip()
    return text or fallback


class PageError(gr.Error):
    """A gr.Error whose str() is its message (gr.Error's is its repr): where an input's check
    fails while gradio validates a job before queueing it, the visitor sees str()."""

    def __str__(self) -> str:
        return str(self.message)


class NotAnUpload(Exception):
    """An image input that is not a regular file in the upload folder or the examples."""


def inside(path: str, root: str) -> bool:
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
    if not any(inside(candidate, root) for root in roots):
        raise NotAnUpload
    try:
        real = os.path.realpath(candidate)
    except (OSError, ValueError):
        raise NotAnUpload from None
    if not any(inside(real, root) for root in roots):
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


def refuse_non_uploads(path) -> str:
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
    the instance: a gr.Image subclass would make gradio write a .pyi stub file next to this module.)"""
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
            return refuse_non_uploads(path) if path is not None else None
        # before gradio's preprocess, which opens the path: only uploads and examples, as regular files
        payload = payload.model_copy(update={"path": refuse_non_uploads(getattr(payload, "path", None))})
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


def upload_root() -> str:
    from gradio.utils import get_upload_folder

    return os.path.abspath(get_upload_folder())


def named_paths(data, root: str, depth: int = 0, found: set | None = None) -> set[str]:
    """The paths (as text, made absolute) inside `root` that a request's data names as {"path": ...}."""
    found = set() if found is None else found
    if depth > 8 or len(found) > 64:
        return found
    if isinstance(data, dict):
        path = data.get("path")
        if isinstance(path, str) and path and "\x00" not in path and len(path) <= 4096:
            path = os.path.abspath(path)
            if inside(path, root):
                found.add(path)
        items = data.values()
    elif isinstance(data, list):
        items = data
    else:
        return found
    for item in items:
        named_paths(item, root, depth + 1, found)
    return found
