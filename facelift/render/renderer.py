"""Offscreen rendering of a dense face mesh (pyrender, headless OpenGL).

Lighting is computed here, on the CPU, with the Lambertian SH model of the paper (eq. 3,
`geometry/sh.py`): per-vertex irradiance from the rotated normals. pyrender only rasterises,
interpolates the per-vertex irradiance and the albedo texture, z-buffers and culls back
faces (`RenderFlags.FLAT`: colour = albedo texture x vertex colour, no GL lighting).

View conventions (model space as in docs/ARCHITECTURE.md, X = image right, Y up, Z to
the viewer):

* The mesh is rotated about the centre of its bounding box by
  `V = Rx(pitch) @ Ry(yaw) @ rotation_of_face` (right-handed rotations, degrees;
  `geometry.rotation.view_rotation`).
  Positive `yaw` turns the face towards image-right (its nose moves right); positive
  `pitch` tilts it down (the nose moves down). `rotation_of_face` is the fitted `R`,
  so `yaw = pitch = 0` shows the face in the photo's pose.
* The camera is orthographic and frames the mesh's bounding sphere (about that centre)
  with a fixed margin, so renders at different yaw/pitch do not jump or rescale.
* `light=(azimuth, elevation)` in degrees is a white directional light fixed to the
  viewer: direction `(sin az cos el, sin el, cos az cos el)` towards the light, so
  `(0, 0)` is a headlight, azimuth +90 comes from image-right, elevation +90 from above.
  Irradiance = `ambient + light_intensity * max(n.l, 0)` through its order-2 SH
  approximation (`geometry.sh.directional_light_sh`), as in the paper's model.
* `sh` (3, 9) is the photo's lighting in the photo's camera space: it is evaluated on
  the normals after `rotation_of_face` only, so it stays attached to the face (and the
  photo's scene) while yaw/pitch orbit the viewer around it.

The OpenGL platform is chosen on the first render, not on import (`render._gl`).
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numpy as np

from ..errors import RenderError
from ..geometry.rotation import view_rotation
from ..geometry.sh import directional_light_sh, irradiance, light_direction
from ._gl import delete_offscreen, load_pyrender, open_offscreen, release_context

MODES = ("albedo", "shaded", "normals")
DEFAULT_LIGHT = (25.0, 25.0)
DEFAULT_AMBIENT = 0.35
FRAME_MARGIN = 1.05  # bounding-sphere radius -> half the visible extent
MAX_SIZE = 8192  # pixels a side of a render

# ---- lighting ---------------------------------------------------------------------------

def _irradiance(normals: np.ndarray, gamma) -> np.ndarray:
    return np.asarray(irradiance(normals, np.asarray(gamma, np.float32)), np.float32)


def _directional_irradiance(normals: np.ndarray, light, intensity: float, ambient: float) -> np.ndarray:
    """White light from (azimuth, elevation): order-2 SH of `intensity * max(n.l, 0) + ambient`."""
    gamma = directional_light_sh(light_direction(*light), (1.0, 1.0, 1.0),
                                         intensity, ambient)
    return _irradiance(normals, gamma)


def render_sh_sphere(sh: np.ndarray, size: int = 128, *, albedo: float = 0.75,
                     background=(255, 255, 255)) -> np.ndarray:
    """A sphere of grey `albedo` lit by `sh` (3, 9) in camera space, seen from the camera:
    (size, size, 3) uint8, anti-aliased rim on `background`."""
    sh = np.asarray(sh, np.float32)
    if sh.shape != (3, 9):
        raise ValueError(f"sh must be (3, 9), got {sh.shape}")
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, -c)  # y up
    r2 = x * x + y * y
    z = np.sqrt(np.clip(1 - r2, 0, 1))
    n = np.stack([x, y, z], -1) / np.maximum(np.sqrt(r2 + z * z), 1e-6)[..., None]
    colour = np.clip(albedo * _irradiance(n, sh), 0, 1) * 255
    coverage = np.clip((1 - np.sqrt(r2)) * size / 2 + 0.5, 0, 1)[..., None]
    out = coverage * colour + (1 - coverage) * np.asarray(background, np.float32)
    return (out + 0.5).astype(np.uint8)


# ---- inputs -----------------------------------------------------------------------------

def _albedo_rgba(albedo_map: np.ndarray) -> np.ndarray:
    a = np.asarray(albedo_map)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"albedo_map must be (H, W, 3), got {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    # RGBA keeps rows 4-byte aligned for any width (GL_UNPACK_ALIGNMENT)
    return np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], -1)


def _parse_size(size, default):
    if size is None:
        return default
    if np.isscalar(size):
        w = h = int(size)
    else:
        w, h = (int(s) for s in size)
    if w < 1 or h < 1 or w > MAX_SIZE or h > MAX_SIZE:
        raise ValueError(f"render size must be 1..{MAX_SIZE} pixels, got {size}")
    return w, h


# ---- renderer ---------------------------------------------------------------------------

class Renderer:
    """A reusable offscreen renderer. One GL context, created on first use and shared by
    all calls; calls from several threads are serialised (GL contexts are not thread-safe).
    Use as a context manager or call `close()`."""

    def __init__(self, width: int = 512, height: int = 512):
        self.width, self.height = _parse_size((width, height), None)
        self._lock = threading.Lock()
        # pyrender objects (untyped), created on first use
        self._offscreen: Any = None
        self._scene: Any = None
        self._camera_node: Any = None
        self._mesh_node: Any = None
        self._texture: Any = None
        self._texture_rgba: np.ndarray | None = None
        self._closed = False

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            if self._lock.acquire(blocking=False):
                try:
                    self._close_locked()
                finally:
                    self._lock.release()
        except Exception:
            pass

    def close(self) -> None:
        """Free the GL context. The renderer can still be used; it then opens a new one."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        osr, self._offscreen = self._offscreen, None
        self._scene = self._camera_node = self._mesh_node = None
        self._texture = self._texture_rgba = None
        if osr is None:
            return
        delete_offscreen(osr)

    def _ensure_context(self, pyrender, width: int, height: int):
        if self._offscreen is None:
            self._offscreen = open_offscreen(pyrender, width, height)
            self._scene = pyrender.Scene(ambient_light=np.zeros(3))
            self._camera_node = self._scene.add(pyrender.OrthographicCamera(1.0, 1.0))
        # framebuffers are resized by pyrender on the next render
        self._offscreen.viewport_width, self._offscreen.viewport_height = width, height
        return self._offscreen

    def _albedo_texture(self, pyrender, rgba: np.ndarray):
        if self._texture_rgba is None or not np.array_equal(self._texture_rgba, rgba):
            sampler = pyrender.Sampler(magFilter=pyrender.GLTF.LINEAR, minFilter=pyrender.GLTF.LINEAR,
                                       wrapS=pyrender.GLTF.CLAMP_TO_EDGE, wrapT=pyrender.GLTF.CLAMP_TO_EDGE)
            self._texture = pyrender.Texture(source=rgba, source_channels="RGBA", sampler=sampler)
            self._texture_rgba = rgba
        return self._texture

    def render(self, mesh_vertices, faces, uv, normals, albedo_map, *, yaw: float = 0.0,
               pitch: float = 0.0, mode: str = "shaded", light=None, light_intensity: float = 1.0,
               ambient: float = DEFAULT_AMBIENT, sh=None, rotation_of_face=None, size=None,
               background=(255, 255, 255), view=None) -> np.ndarray:
        """Render the mesh; returns an (H, W, 3) uint8 image.

        mesh_vertices (M, 3) model space, faces (T, 3), uv (M, 2) with v up, normals (M, 3)
        model space, albedo_map (R, R, 3) float in [0, 1] (or uint8) in the UV layout.
        `mode`: "albedo" (unlit), "shaded" (albedo x irradiance) or "normals" ((n + 1) / 2
        of the view-space normals). Shading uses `light` if given, else `sh`, else
        `DEFAULT_LIGHT`. `size` is an int, (width, height) or None for the renderer's size.
        `view` (3, 3), if given, replaces the view rotation of yaw, pitch and
        `rotation_of_face` (e.g. the identity: the face from the front); `sh` still turns
        with `rotation_of_face`.
        """
        vertices, faces, uv, normals = _check_mesh(mesh_vertices, faces, uv, normals, mode)
        width, height = _parse_size(size, (self.width, self.height))

        # ---- CPU: pose, framing, lighting (outside the lock) ----
        lo, hi = vertices.min(0), vertices.max(0)
        centre = (lo + hi) / 2
        radius = max(float(np.sqrt(((vertices - centre) ** 2).sum(1).max())), 1e-9)
        view = view_rotation(yaw, pitch, rotation_of_face) if view is None else _rotation(view, "view")
        positions = ((vertices - centre) @ view.T).astype(np.float32)
        colours, rgba = _vertex_colours(normals, view, albedo_map, mode, light, light_intensity, ambient, sh,
                                        rotation_of_face)
        half = radius * FRAME_MARGIN
        xmag, ymag = (half * width / height, half) if width >= height else (half, half * height / width)
        colour, _ = self._draw(positions, faces, uv, colours, rgba, width, height, xmag=xmag, ymag=ymag,
                               centre=(0.0, 0.0), camera_z=3 * radius, znear=radius, zfar=5 * radius,
                               background=np.append(np.asarray(background, np.float32) / 255.0, 1.0))
        return np.ascontiguousarray(colour[..., :3])

    def render_photo_view(self, mesh_vertices, faces, uv, normals, albedo_map, *, scale: float, translation,
                          rotation, size, mode: str = "shaded", light=None, light_intensity: float = 1.0,
                          ambient: float = DEFAULT_AMBIENT, sh=None) -> "PhotoView":
        """Render the mesh through the photo's weak-perspective camera (docs/ARCHITECTURE.md):
        model point X lands at image point `x = s (R X)[0] + t[0]`, `y = -s (R X)[1] + t[1]`
        (pixels, y down) of a `size` = (width, height) image, as `fitting.project_points` puts
        it. An orthographic camera looking down -Z of the photo's camera space, so the same
        culling and the same lighting (`sh` in camera space, `light` fixed to the viewer) as
        `render` at yaw = pitch = 0. Returns a `PhotoView` (colour, coverage, depth).
        """
        vertices, faces, uv, normals = _check_mesh(mesh_vertices, faces, uv, normals, mode)
        width, height = _parse_size(size, None)
        s = float(scale)
        t = np.asarray(translation, np.float64).reshape(-1)
        if not (np.isfinite(s) and s > 0) or t.shape != (2,) or not np.isfinite(t).all():
            raise ValueError(f"scale must be positive and translation (2,) finite, got {scale!r}, {translation!r}")
        view = _rotation(rotation, "rotation")
        positions = vertices @ view.T  # camera space, metres
        colours, rgba = _vertex_colours(normals, view, albedo_map, mode, light, light_intensity, ambient, sh, view)
        z_lo, z_hi = float(positions[:, 2].min()), float(positions[:, 2].max())
        margin = max(z_hi - z_lo, 1e-6)
        camera_z = z_hi + 2 * margin
        # the image centre (W/2, H/2) seen from camera space; a pixel is 1/s metres wide
        centre = ((width / 2 - t[0]) / s, (t[1] - height / 2) / s)
        colour, depth = self._draw(positions.astype(np.float32), faces, uv, colours, rgba, width, height,
                                   xmag=width / (2 * s), ymag=height / (2 * s), centre=centre, camera_z=camera_z,
                                   znear=margin, zfar=4 * margin, background=np.zeros(4, np.float32), rgba_out=True)
        covered = depth > 0
        z = np.full(depth.shape, np.nan, np.float32)
        z[covered] = camera_z - _orthographic_distance(depth[covered], margin, 4 * margin)
        return PhotoView(np.ascontiguousarray(colour[..., :3]), colour[..., 3].astype(np.float32) / 255.0, z)

    def _draw(self, positions, faces, uv, colours, rgba, width, height, *, xmag, ymag, centre, camera_z, znear,
              zfar, background, rgba_out: bool = False):
        """Rasterise `positions` with an orthographic camera at (centre, camera_z) looking down
        -Z: the (H, W, 3, or 4 with `rgba_out`) uint8 colour, row 0 at the top, and pyrender's
        depth (0 where nothing is drawn)."""
        camera_pose = np.eye(4)
        camera_pose[:2, 3] = centre
        camera_pose[2, 3] = camera_z
        pyrender = load_pyrender()
        with self._lock:
            osr = self._ensure_context(pyrender, width, height)
            material = pyrender.MetallicRoughnessMaterial(
                baseColorFactor=(1.0, 1.0, 1.0, 1.0), metallicFactor=0.0, roughnessFactor=1.0,
                baseColorTexture=None if rgba is None else self._albedo_texture(pyrender, rgba),
                alphaMode="OPAQUE", doubleSided=False)
            primitive = pyrender.Primitive(
                positions=positions, indices=faces.astype(np.uint32, copy=False),
                texcoord_0=None if rgba is None else uv, color_0=colours, material=material)
            scene = self._scene
            if self._mesh_node is not None:
                scene.remove_node(self._mesh_node)
            self._mesh_node = scene.add(pyrender.Mesh([primitive]))
            camera = self._camera_node.camera
            camera.xmag, camera.ymag = xmag, ymag
            camera.znear, camera.zfar = znear, zfar
            scene.set_pose(self._camera_node, camera_pose)
            scene.bg_color = background
            flags = pyrender.RenderFlags.FLAT | (pyrender.RenderFlags.RGBA if rgba_out else 0)
            try:
                return osr.render(scene, flags=flags)
            except Exception as e:
                raise RenderError(f"Rendering failed: {type(e).__name__}: {e}") from e
            finally:
                release_context(osr._platform)


class PhotoView(NamedTuple):
    """`Renderer.render_photo_view`: what the photo's camera sees of the mesh.

    image   (H, W, 3) uint8, premultiplied by `alpha` (black where nothing is drawn)
    alpha   (H, W) float32 in [0, 1], the share of each pixel the mesh covers (anti-aliased rim)
    depth   (H, W) float32, camera-space Z of the surface at the pixel centre (metres, larger =
            closer to the camera, origin at the model's origin); NaN where nothing is drawn
    """

    image: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray


def _orthographic_distance(linear: np.ndarray, znear: float, zfar: float) -> np.ndarray:
    """Distance from the camera of pyrender's depth values under an orthographic camera:
    pyrender "linearises" the depth buffer with the perspective formula, undone here, and
    the buffer of an orthographic camera is linear in the distance."""
    d = np.asarray(linear, np.float64)
    ndc = (zfar + znear - 2.0 * znear * zfar / d) / (zfar - znear)
    return znear + (ndc + 1.0) / 2.0 * (zfar - znear)


def _rotation(matrix, name: str) -> np.ndarray:
    r = np.asarray(matrix, np.float64)
    if r.shape != (3, 3) or not np.isfinite(r).all():
        raise ValueError(f"{name} must be a finite (3, 3) rotation, got shape {r.shape}")
    return r


def _check_mesh(mesh_vertices, faces, uv, normals, mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    vertices = np.asarray(mesh_vertices, np.float64)
    faces = np.asarray(faces)
    uv = np.asarray(uv, np.float32)
    normals = np.asarray(normals, np.float32)
    m = len(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or m == 0:
        raise ValueError(f"mesh_vertices must be (M, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0 or faces.max() >= m)):
        raise ValueError("faces must be (T, 3) indices into the vertices")
    if uv.shape != (m, 2) or normals.shape != (m, 3):
        raise ValueError(f"uv must be ({m}, 2) and normals ({m}, 3), got {uv.shape} and {normals.shape}")
    return vertices, faces, uv, normals


def _vertex_colours(normals, view, albedo_map, mode, light, light_intensity, ambient, sh, rotation_of_face):
    """Per-vertex RGBA colours (irradiance, or view-space normals; None for "albedo") and the
    albedo texture as RGBA (None for "normals")."""
    unit = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    n_view = unit @ view.T.astype(np.float32)
    rgba = None
    if mode == "normals":
        colours = (n_view + 1) / 2
    else:
        rgba = _albedo_rgba(albedo_map)
        if mode == "albedo":
            colours = None
        elif light is not None or sh is None:
            light = DEFAULT_LIGHT if light is None else tuple(float(a) for a in light)
            colours = _directional_irradiance(n_view, light, float(light_intensity), float(ambient))
        else:
            gamma = np.asarray(sh, np.float32)
            if gamma.shape != (3, 9):
                raise ValueError(f"sh must be (3, 9), got {gamma.shape}")
            face = np.eye(3) if rotation_of_face is None else np.asarray(rotation_of_face, float)
            colours = _irradiance(unit @ face.T.astype(np.float32), gamma)
    if colours is not None:
        colours = np.concatenate([colours, np.ones((len(unit), 1), np.float32)], 1).astype(np.float32)
    return colours, rgba
