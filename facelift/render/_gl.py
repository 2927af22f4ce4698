"""The OpenGL platform pyrender renders with, and its offscreen contexts.

Nothing happens on import. On first use (the first render), if neither `PYOPENGL_PLATFORM` nor
`DISPLAY` is set, EGL is selected (`os.environ["PYOPENGL_PLATFORM"]`). PyOpenGL binds its platform
when `OpenGL` is first imported, so a fallback to OSMesa is only possible before that: when we
chose EGL ourselves, the first render probes EGL with plain ctypes and switches to OSMesa if EGL
cannot create a context. Once OpenGL is imported (by us or anyone else) a failing platform can
only be reported.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

from ..errors import RenderError

INSTALL_HINT = (
    "Install an offscreen OpenGL driver: `apt-get install libegl1 libgl1-mesa-dri` (EGL, "
    "recommended, with PYOPENGL_PLATFORM=egl), or `apt-get install libosmesa6` together with "
    "PyOpenGL>=3.1.4 and PYOPENGL_PLATFORM=osmesa."
)

_backend_lock = threading.Lock()
_pyrender = None


# ---- OpenGL platform ------------------------------------------------------------------

def _egl_probe_error() -> str | None:
    """Create (and destroy) an EGL OpenGL 4.1 core context the way pyrender will, using
    ctypes only so PyOpenGL stays unimported. Returns None on success, else the reason."""
    c_int32, c_void_p, byref = ctypes.c_int32, ctypes.c_void_p, ctypes.byref
    try:
        egl = ctypes.CDLL(ctypes.util.find_library("EGL") or "libEGL.so.1")
    except OSError as e:
        return f"libEGL could not be loaded ({e})"
    egl.eglGetProcAddress.restype = c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    egl.eglGetDisplay.restype = c_void_p
    egl.eglGetDisplay.argtypes = [c_void_p]
    egl.eglInitialize.argtypes = [c_void_p, c_void_p, c_void_p]
    egl.eglChooseConfig.argtypes = [c_void_p, ctypes.POINTER(c_int32), ctypes.POINTER(c_void_p),
                                    c_int32, ctypes.POINTER(c_int32)]
    egl.eglBindAPI.argtypes = [ctypes.c_uint]
    egl.eglCreateContext.restype = c_void_p
    egl.eglCreateContext.argtypes = [c_void_p, c_void_p, c_void_p, ctypes.POINTER(c_int32)]
    egl.eglDestroyContext.argtypes = [c_void_p, c_void_p]

    query = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    platform_display = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if query and platform_display:
        query = ctypes.CFUNCTYPE(ctypes.c_uint, c_int32, ctypes.POINTER(c_void_p),
                                 ctypes.POINTER(c_int32))(query)
        n = c_int32(0)
        if not query(0, None, byref(n)) or n.value < 1:
            return "no EGL device found"
        devices = (c_void_p * n.value)()
        query(n.value, devices, byref(n))
        index = int(os.environ.get("EGL_DEVICE_ID", "0"))
        if index >= n.value:
            return f"EGL_DEVICE_ID={index} but only {n.value} EGL device(s) exist"
        platform_display = ctypes.CFUNCTYPE(c_void_p, ctypes.c_uint, c_void_p, c_void_p)(platform_display)
        display = platform_display(0x313F, devices[index], None)  # EGL_PLATFORM_DEVICE_EXT
    else:
        display = egl.eglGetDisplay(None)
    if not display:
        return "no EGL display"
    if not egl.eglInitialize(display, None, None):
        return "eglInitialize failed"
    config_attributes = (c_int32 * 17)(
        0x3033, 0x0001,          # EGL_SURFACE_TYPE: EGL_PBUFFER_BIT
        0x3022, 8, 0x3023, 8, 0x3024, 8, 0x3025, 24,  # blue, green, red, depth sizes
        0x303F, 0x308E,          # EGL_COLOR_BUFFER_TYPE: EGL_RGB_BUFFER
        0x3040, 0x0008,          # EGL_RENDERABLE_TYPE: EGL_OPENGL_BIT
        0x3042, 0x0008,          # EGL_CONFORMANT: EGL_OPENGL_BIT
        0x3038)                  # EGL_NONE
    config, n_configs = c_void_p(), c_int32(0)
    if not egl.eglChooseConfig(display, config_attributes, byref(config), 1, byref(n_configs)) \
            or n_configs.value < 1:
        return "no EGL config for desktop OpenGL with a depth buffer"
    if not egl.eglBindAPI(0x30A2):  # EGL_OPENGL_API
        return "EGL cannot bind the desktop OpenGL API"
    context_attributes = (c_int32 * 7)(0x3098, 4, 0x30FB, 1, 0x30FD, 0x1, 0x3038)  # 4.1 core
    context = egl.eglCreateContext(display, config, None, context_attributes)
    if not context:
        return "eglCreateContext failed (no OpenGL 4.1 core profile driver)"
    egl.eglDestroyContext(display, context)
    return None


_platform_chosen_here = False


def _choose_platform() -> bool:
    """Select EGL when neither `PYOPENGL_PLATFORM` nor `DISPLAY` is set; True if it was chosen
    here (now or by an earlier call). Runs before OpenGL is first imported (PyOpenGL reads the
    variable then)."""
    global _platform_chosen_here
    if "PYOPENGL_PLATFORM" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["PYOPENGL_PLATFORM"] = "egl"
        _platform_chosen_here = True
    return _platform_chosen_here


def load_pyrender():
    global _pyrender
    with _backend_lock:
        if _pyrender is not None:
            return _pyrender
        if (_choose_platform() and os.environ.get("PYOPENGL_PLATFORM") == "egl"
                and "OpenGL" not in sys.modules):
            reason = _egl_probe_error()
            if reason is not None:
                if not ctypes.util.find_library("OSMesa"):
                    raise RenderError(f"No offscreen OpenGL context: EGL failed ({reason}) and "
                                      f"OSMesa is not installed. {INSTALL_HINT}")
                os.environ["PYOPENGL_PLATFORM"] = "osmesa"
        try:
            import pyrender
        except Exception as e:
            raise RenderError(f"Could not load OpenGL (PYOPENGL_PLATFORM="
                              f"{os.environ.get('PYOPENGL_PLATFORM')!r}): {e}. {INSTALL_HINT}") from e
        _pyrender = pyrender
        return pyrender


def release_context(platform) -> None:
    """Make the context current nowhere, so another thread can make it current next
    (pyrender's EGL `make_uncurrent` is a no-op)."""
    if type(platform).__name__ == "EGLPlatform":
        from OpenGL.EGL import EGL_NO_CONTEXT, EGL_NO_SURFACE, eglMakeCurrent

        eglMakeCurrent(platform._egl_display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT)
    else:
        platform.make_uncurrent()


def open_offscreen(pyrender, width: int, height: int):
    """A new pyrender OffscreenRenderer (its GL context made current nowhere), or a RenderError
    that says what to install."""
    try:
        osr = pyrender.OffscreenRenderer(width, height)
    except Exception as e:
        raise RenderError(
            f"Could not create an offscreen OpenGL context (PYOPENGL_PLATFORM="
            f"{os.environ.get('PYOPENGL_PLATFORM')!r}): {type(e).__name__}: {e}. "
            f"{INSTALL_HINT}") from e
    release_context(osr._platform)
    return osr


def delete_offscreen(osr) -> None:
    """Free an OffscreenRenderer's GL objects and context."""
    platform = osr._platform
    try:
        if type(platform).__name__ == "EGLPlatform":
            # pyrender's delete() calls eglTerminate on the display, which is shared by
            # every renderer in the process: destroy only our context.
            from OpenGL.EGL import eglDestroyContext

            platform.make_current()
            osr._renderer.delete()
            release_context(platform)
            eglDestroyContext(platform._egl_display, platform._egl_context)
        else:
            osr.delete()
    finally:
        osr._platform = osr._renderer = None  # makes its __del__ a no-op
