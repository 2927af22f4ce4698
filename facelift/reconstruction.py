"""What `FaceLift.reconstruct` returns: the maps, the fit and the networks' predictions of one
face, and the views and files made from them (render, overlay, depth, GLB, export folder)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._blas import one_blas_thread
from ._version import __version__
from .fitting import FitResult
from .landmarks import Face
from .mesh import DenseMesh, DenseMeshBuilder
from .unwrap import UVMaps

RENDER_MODES = ("albedo", "shaded", "shaded_details", "normals")
GREY_ALBEDO = 0.7  # render(albedo="grey")
OVERLAY_OPACITY = 0.7  # render_in_photo, overlay.png


class ReconstructionContext:
    """What a Reconstruction needs from the pipeline that made it: the face model, the dense-mesh
    builder, one renderer shared by all its reconstructions (created on first use), and the
    weights' source and face limit for params.json."""

    def __init__(self, face_model, mesh_builder: DenseMeshBuilder, max_faces: int, source: str | None = None):
        self.face_model = face_model
        self.mesh_builder = mesh_builder
        self.max_faces = max_faces
        self.source = source
        self._renderer = None
        self._renderer_lock = threading.Lock()

    @property
    def renderer(self):
        with self._renderer_lock:
            if self._renderer is None:
                from .render import Renderer

                self._renderer = Renderer()
            return self._renderer

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()


#: Bounds of `Reconstruction.detail_shading_ratio`, and the irradiance below which it stays 1
DETAIL_SHADING_RATIO = (0.5, 2.0)
MIN_SHADING = 0.05


@dataclass
class UVPredictions:
    """What `FaceLift.predict_uv` returns: (R, R, C) float32 UV maps and the lighting."""

    albedo: np.ndarray  # FAN albedo (the PCA albedo without a FAN)
    albedo_pca: np.ndarray  # low-frequency PCA albedo
    sh: np.ndarray  # (3, 9) SH lighting
    skin_confidence: np.ndarray  # (R, R) in [0, 1]: how far the low-frequency model explains each texel
    displacement: np.ndarray  # (R, R) DRN displacement rate r_d in metres
    displacement_scale: float
    albedo_source: str
    albedo_pca_source: str
    #: the DRN's cavity term (per mm, and its sigma in texels; 0: none): `detail_occlusion`
    detail_cavity: tuple[float, float] = (0.0, 4.0)


@dataclass(eq=False)
class Reconstruction:
    """One reconstructed face. UV maps are (R, R, C) float32 numpy arrays (ARCHITECTURE.md)."""

    context: ReconstructionContext
    image: np.ndarray
    faces: list
    face_index: int
    fit: FitResult
    maps: UVMaps
    albedo: np.ndarray
    albedo_pca: np.ndarray
    displacement: np.ndarray
    displacement_scale: float
    sh: np.ndarray
    albedo_source: str
    albedo_pca_source: str
    vertices_model: np.ndarray
    timings: dict = field(default_factory=dict)
    #: (R, R) in [0, 1]: the robust low-frequency stage's weight of each texel, low where the
    #: photo shows what a face's skin cannot explain (occluders, hair, glasses, highlights)
    skin_confidence: np.ndarray | None = None
    #: what the user should know about this reconstruction (part of the face cut off,
    #: strong turn); also in params.json
    warnings: list = field(default_factory=list)
    #: the DRN's cavity term (per mm, sigma in texels; 0: none), see `detail_occlusion`
    detail_cavity: tuple[float, float] = (0.0, 4.0)
    _meshes: dict = field(default_factory=dict, repr=False)

    @property
    def face(self) -> Face:
        return self.faces[self.face_index]

    @property
    def texture(self) -> np.ndarray:
        return self.maps.texture

    @property
    def visibility(self) -> np.ndarray:
        return self.maps.visibility

    @property
    def normal_map(self) -> np.ndarray:
        return self.maps.normal

    def detail_normal_map(self) -> np.ndarray:
        """(R, R, 3) tangent-space normals of the DRN's details (x along +u, y along +v, z out;
        `facelift.mesh.detail_normal_map`): (0, 0, 1) everywhere without a DRN."""
        if "detail_normals" not in self._meshes:
            from .mesh import detail_normal_map

            self._meshes["detail_normals"] = detail_normal_map(self.displacement, self.maps.position, self.maps.mask)
        return self._meshes["detail_normals"]

    def detail_occlusion(self) -> np.ndarray:
        """(R, R) share of the light each texel receives because of the DRN's details
        (`facelift.mesh.detail_occlusion`): below 1 in creases, 1 everywhere without a DRN or
        for a DRN trained without a cavity term. The FAN albedo holds the photo's creases as
        they look; with the details off, renders divide this out of it, so the creases go with
        the geometry that explains them."""
        if "detail_occlusion" not in self._meshes:
            cavity, sigma = self.detail_cavity
            if self.displacement_scale > 0 and cavity > 0:
                from .mesh import detail_occlusion

                occ = detail_occlusion(self.displacement, self.maps.mask, cavity, sigma)
            else:
                occ = np.ones(self.displacement.shape[:2], np.float32)
            self._meshes["detail_occlusion"] = occ
        return self._meshes["detail_occlusion"]

    def uv_normals(self, details: bool = True) -> np.ndarray:
        """(R, R, 3) camera-space normals of the dense mesh on the UV grid, with the DRN's
        details or without (the unwrap's smooth normals where the mesh grid differs from it)."""
        key = ("uv_normals", bool(details) and self.displacement_scale > 0)
        if key not in self._meshes:
            normals = self.maps.normal.copy()
            mesh = self.dense_mesh(details=details)
            if mesh.resolution == normals.shape[0]:
                normals.reshape(-1, 3)[mesh.grid_index] = mesh.normals @ np.asarray(self.fit.rotation, np.float32).T
            self._meshes[key] = normals
        return self._meshes[key]

    def detail_shading_ratio(self) -> np.ndarray:
        """(R, R) SH irradiance of the smooth surface over that of the detailed one, under the
        light estimated from the photo (within DETAIL_SHADING_RATIO; 1 without details). The
        FAN's albedo explains the photo with smooth normals; with the details' normals, the
        albedo that explains it is the FAN's times this ratio."""
        if "detail_shading_ratio" not in self._meshes:
            ratio = np.ones(self.displacement.shape[:2], np.float32)
            if self.displacement_scale > 0:
                from .geometry.sh import irradiance

                smooth = irradiance(self.uv_normals(details=False), self.sh).mean(-1)
                detailed = irradiance(self.uv_normals(details=True), self.sh).mean(-1)
                ok = self.maps.mask & (smooth > MIN_SHADING) & (detailed > MIN_SHADING)
                ratio[ok] = np.clip(smooth[ok] / detailed[ok], *DETAIL_SHADING_RATIO)
            self._meshes["detail_shading_ratio"] = ratio
        return self._meshes["detail_shading_ratio"]

    def shown_albedo(self, albedo: str = "fan", details: bool = True) -> np.ndarray:
        """The albedo map a render uses. The photo is albedo x shading x the details' occlusion;
        the FAN's albedo explains it with smooth normals and no occlusion. With `details`, the
        FAN albedo x `detail_shading_ratio` (so under the photo's light the detailed face looks
        as the FAN's albedo on the smooth one: the photo), the PCA albedo or grey times the
        details' occlusion; without, that FAN albedo with the occlusion divided out (the
        creases' darkness goes with the geometry that explains it), the PCA albedo or grey."""
        if albedo not in ("fan", "pca", "grey"):
            raise ValueError(f"albedo must be 'fan', 'pca' or 'grey', got {albedo!r}")
        base = {"fan": self.albedo, "pca": self.albedo_pca}.get(albedo)
        if base is None:  # the geometry alone
            base = np.full_like(self.albedo, GREY_ALBEDO)
        if self.displacement_scale <= 0:
            return base
        occ = self.detail_occlusion()[..., None]
        if albedo == "fan":
            fan = base * self.detail_shading_ratio()[..., None]
            return np.clip(fan if details else fan / occ, 0.0, 1.0).astype(np.float32)
        return np.clip(base * occ, 0.0, 1.0).astype(np.float32) if details else base

    def dense_mesh(self, details: bool = True) -> DenseMesh:
        key = bool(details) and self.displacement_scale > 0
        if key not in self._meshes:
            self._meshes[key] = self.context.mesh_builder.build(
                self.vertices_model, self.displacement if key else None, smooth=self._meshes.get(False))
        return self._meshes[key]

    @one_blas_thread  # no BLAS worker left spinning beside the next reconstruction's networks
    def render(self, yaw: float = 0.0, pitch: float = 0.0, light=None, details: bool = True,
               size: int | tuple[int, int] = 512, mode: str = "shaded", light_intensity: float = 1.0, ambient: float = 0.35,
               albedo: str = "fan", frontal: bool = False) -> np.ndarray:
        """Render the face as an HxWx3 uint8 image.

        `light=None` relights with the SH lighting estimated from the photo (it turns with the
        face); `light=(azimuth, elevation)` in degrees is a directional light fixed to the
        viewer. `mode` is one of RENDER_MODES: "albedo", "shaded", "shaded_details" (shaded
        with the DRN details whatever `details` says) or "normals"; `details` applies the
        DRN displacement to the geometry; `albedo` picks "fan", "pca" or "grey" (a uniform
        albedo: the shape and its details alone). Yaw and pitch turn the face from its pose in
        the photo; with `frontal` they turn it from straight ahead (model space) instead.
        `size` is an int or (width, height).
        """
        mode, details, albedo_map = self._render_inputs(mode, details, albedo)
        mesh = self.dense_mesh(details)
        view = None
        if frontal:
            from .geometry.rotation import view_rotation

            view = view_rotation(yaw, pitch)
        return self.context.renderer.render(
            mesh.vertices, mesh.faces, mesh.uv, mesh.normals, albedo_map, yaw=yaw, pitch=pitch, mode=mode,
            light=light, light_intensity=light_intensity, ambient=ambient,
            sh=self.sh if light is None else None, rotation_of_face=self.fit.rotation, size=size, view=view)

    def _render_inputs(self, mode: str, details: bool, albedo: str):
        if mode not in RENDER_MODES:
            raise ValueError(f"mode must be one of {RENDER_MODES}, got {mode!r}")
        if mode == "shaded_details":
            mode, details = "shaded", True
        details = bool(details) and self.displacement_scale > 0
        return mode, details, self.shown_albedo(albedo, details)

    def photo_view(self, details: bool = True, mode: str = "shaded", albedo: str = "fan"):
        """The face as the photo's camera sees it, at the photo's size: the fitted weak-perspective
        projection (the fit's scale, rotation and translation), lit by the light estimated from
        the photo. A `facelift.render.PhotoView`: the image (premultiplied), its coverage and the
        camera-space depth of the surface (metres, larger = closer; NaN off the face)."""
        mode, details, albedo_map = self._render_inputs(mode, details, albedo)
        key = ("photo_view", bool(details), mode, albedo)
        if key not in self._meshes:
            from .render import PhotoView

            mesh = self.dense_mesh(details)
            h, w = self.image.shape[:2]
            k = _render_shrink(w, h)  # a photo larger than a render can be: rendered smaller, enlarged
            rw, rh = max(1, round(w * k)), max(1, round(h * k))
            view = self.context.renderer.render_photo_view(
                mesh.vertices, mesh.faces, mesh.uv, mesh.normals, albedo_map, scale=self.fit.scale * rw / w,
                translation=np.asarray(self.fit.translation) * [rw / w, rh / h], rotation=self.fit.rotation,
                size=(rw, rh), mode=mode, sh=self.sh)
            if (rw, rh) != (w, h):
                import cv2

                view = PhotoView(cv2.resize(view.image, (w, h), interpolation=cv2.INTER_LINEAR),
                                 cv2.resize(view.alpha, (w, h), interpolation=cv2.INTER_LINEAR),
                                 cv2.resize(view.depth, (w, h), interpolation=cv2.INTER_NEAREST))
            self._meshes[key] = view
        return self._meshes[key]

    def render_in_photo(self, opacity: float = OVERLAY_OPACITY, details: bool = True, mode: str = "shaded",
                        albedo: str = "fan") -> np.ndarray:
        """The reconstruction drawn over the photo in the photo's own pose and camera (see
        `photo_view`), `opacity` 0 (the photo alone) to 1 (the render alone where it covers the
        photo): an HxWx3 uint8 image of the photo's size."""
        opacity = float(opacity)
        if not 0.0 <= opacity <= 1.0:
            raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
        view = self.photo_view(details, mode, albedo)
        a = opacity * view.alpha[..., None]
        out = opacity * view.image.astype(np.float32) + (1.0 - a) * self.image.astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def overlay_figure(self, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
        """`photo | reconstruction over the photo | frontal render`, each panel the photo's size
        (H x 3W x 3 uint8): how well the face fits the photo, and the face it became."""
        h, w = self.image.shape[:2]
        k = _render_shrink(w, h)
        frontal = self.render(size=(max(1, round(w * k)), max(1, round(h * k))), frontal=True)
        if k < 1:
            import cv2

            frontal = cv2.resize(frontal, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.concatenate([np.asarray(self.image), self.render_in_photo(opacity), frontal], axis=1)

    def depth_map(self) -> np.ndarray:
        """(H, W) float32 in the photo's frame: camera-space Z of the fitted face surface (with
        the details) at each pixel, metres, larger = closer to the camera (docs/ARCHITECTURE.md:
        the weak-perspective camera has no depth of its own, so Z is relative to the model's
        origin); NaN off the face."""
        return self.photo_view().depth

    def landmarks(self) -> dict:
        """What landmarks.json holds: MediaPipe's 478 landmarks in the photo, the fitted model's
        68 iBUG points in the photo (pixels) and in model space (metres), and the pose."""
        from .face_model.ibug68 import IBUG68_FROM_MEDIAPIPE, model_landmarks68

        h, w = self.image.shape[:2]
        yaw, pitch, roll = self.fit.yaw_pitch_roll()
        points = np.asarray(self.face.points, np.float64)
        projected = self.fit.project(self.context.face_model)
        return {
            "image_size": [int(w), int(h)],
            "face_index": self.face_index,
            "convention": "image points (x, y) in pixels of the photo, x right, y down, origin at the top-left "
                          "corner of the top-left pixel; model points (X, Y, Z) in metres, X image-right, Y up, "
                          "Z towards the camera (docs/ARCHITECTURE.md)",
            "mediapipe": {
                "count": int(len(points)),
                "points": points.round(3).tolist(),
                "z": "MediaPipe's relative depth, in pixels like x (smaller = closer to the camera); "
                     "points 468-477 are the irises",
            },
            "model68": {
                "count": len(IBUG68_FROM_MEDIAPIPE),
                "convention": "iBUG 300-W 68 points in order (jaw 1-17, brows 18-27, nose 28-36, eyes 37-48, "
                              "mouth 49-68), read from the fitted model's vertices",
                "vertex_ids": IBUG68_FROM_MEDIAPIPE.tolist(),
                "points_2d": model_landmarks68(projected).round(3).tolist(),
                "points_3d": np.asarray(self.vertices_model, np.float64)[IBUG68_FROM_MEDIAPIPE].round(7).tolist(),
            },
            "pose": {
                "yaw_deg": round(yaw, 3), "pitch_deg": round(pitch, 3), "roll_deg": round(roll, 3),
                "scale": float(self.fit.scale),
                "translation": np.asarray(self.fit.translation, float).round(4).tolist(),
                "rotation": np.asarray(self.fit.rotation, float).round(6).tolist(),
                "convention": "x_img = s*(R@X)[0] + t[0]; y_img = -s*(R@X)[1] + t[1]; X in metres, s in pixels "
                              "per metre; R = R_y(yaw) @ R_x(pitch) @ R_z(roll)",
            },
        }

    def params(self) -> dict:
        fit = self.fit
        h, w = self.image.shape[:2]
        yaw, pitch, roll = fit.yaw_pitch_roll()
        return {
            "library_version": __version__,
            "weights": self.context.source,
            "image_size": [int(w), int(h)],
            "face_index": self.face_index,
            "n_faces": len(self.faces),
            "max_faces": int(self.context.max_faces),
            "faces": [_face_entry(i, f) for i, f in enumerate(self.faces)],
            "face_box": [round(float(v), 2) for v in self.face.box],
            "warnings": list(self.warnings),
            "pose": {
                "scale": float(fit.scale),
                "rotation": np.asarray(fit.rotation, float).round(6).tolist(),
                "translation": np.asarray(fit.translation, float).round(4).tolist(),
                "yaw_pitch_roll_deg": [round(float(a), 3) for a in (yaw, pitch, roll)],
                "convention": "x_img = s*(R@X)[0] + t[0]; y_img = -s*(R@X)[1] + t[1]; X in metres",
            },
            "fit_rms_error_px": float(fit.rms_error_px),
            "shape_coefficients": np.asarray(fit.shape_coefficients, float).round(6).tolist(),
            "sh_coefficients": np.asarray(self.sh, float).reshape(-1).round(6).tolist(),
            "sh_layout": "3x9, RGB-major, bands Y00,Y1-1,Y10,Y11,Y2-2,Y2-1,Y20,Y21,Y22",
            "albedo_source": self.albedo_source,
            "albedo_pca_source": self.albedo_pca_source,
            "displacement_scale": float(self.displacement_scale),
            "displacement_encoding": "value = round((r_d / scale + 1) / 2 * 65535), r_d in metres",
            "uv_resolution": int(self.albedo.shape[0]),
            "timings_ms": dict(self.timings),
        }

    def export_glb(self, path: str | os.PathLike, details: bool = True) -> Path:
        """Write the GLB alone: the smooth dense mesh with the albedo, and with `details` (and a
        DRN) the details as the material's tangent-space normal map, so they show in any glTF
        viewer whatever the mesh resolution (the OBJ of `export` carries them in its geometry);
        without, the albedo is `shown_albedo("fan", details=False)`."""
        from . import export as ex

        base = self.dense_mesh(details=False)
        details = bool(details) and self.displacement_scale > 0
        albedo_u8 = (np.clip(self.shown_albedo("fan", details), 0, 1) * 255 + 0.5).astype(np.uint8)
        normal_map = ex.normal_map_to_uint8(self.detail_normal_map()) if details else None
        return ex.export_glb(path, base.vertices, base.faces, base.uv, base.normals, albedo_u8, normal_map)

    @one_blas_thread
    def export(self, directory: str | os.PathLike, render_size: int = 512, outputs=None) -> Path:
        """Write meshes, maps, previews and params.json (EXPORT_FILES) into `directory`.

        `outputs` names what to write (`facelift.export.OUTPUTS`: "glb", "obj", "overlay",
        "landmarks", "depth", ...; an iterable or a comma-separated string); None writes
        everything. params.json is always written. An unknown name raises UnknownOutputError.

        The files are written into a temporary folder next to `directory` (named
        `.<name>.facelift-tmp-<pid>-...`) that is renamed to `directory` when complete, so
        `directory` is never half-written; on any error or Ctrl-C the temporary folder is
        removed. An existing `directory` is replaced only when it is empty or a previous FaceLift
        export (only EXPORT_FILES, with a params.json FaceLift wrote); anything else, e.g. a
        folder of the user's own files, raises OutputExistsError and is left untouched. The
        folder's mode follows the umask (0755 with the usual 022), and a `directory` name near
        the file system's 255-byte limit works (the temporary name is shortened, with a hash).
        Returns the folder's path.
        """
        from . import export as ex

        wanted = set(ex.select_outputs(outputs))
        directory = Path(os.path.abspath(os.fspath(directory)))  # "." and "out/" have a usable name
        with ex.export_folder(directory) as tmp:
            t = time.perf_counter()
            params = self.params()
            scale = self.displacement_scale if self.displacement_scale > 0 else 1.0
            params["displacement_scale"] = float(scale)
            if "glb" in wanted:
                self.export_glb(tmp / "mesh.glb")
            albedo_u8 = (np.clip(self.albedo, 0, 1) * 255 + 0.5).astype(np.uint8)
            if "obj" in wanted:
                mesh = self.dense_mesh(details=True)
                ex.export_obj(tmp, mesh.vertices, mesh.faces, mesh.uv, mesh.normals, albedo_u8)
            elif "albedo" in wanted:
                ex.save_png(tmp / "albedo.png", albedo_u8)
            maps = {"normal_map_details": lambda: ex.normal_map_to_uint8(self.detail_normal_map()),
                    "texture": lambda: self.texture, "visibility": lambda: self.visibility,
                    "skin_confidence": lambda: self.skin_confidence, "albedo_pca": lambda: self.albedo_pca,
                    "normal_map": lambda: ex.normal_map_to_uint8(self.normal_map),
                    "render": lambda: self.render(size=render_size), "overlay": self.overlay_figure}
            for name, image in maps.items():
                if name in wanted and not (name == "skin_confidence" and self.skin_confidence is None):
                    ex.save_png(tmp / f"{name}.png", image())
            if "displacement" in wanted:
                ex.save_png16(tmp / "displacement.png", ex.encode_displacement(self.displacement, scale))
            if "depth" in wanted:
                depth, offset = ex.encode_depth(self.depth_map())
                ex.save_png16(tmp / "depth.png", depth)
                params["depth_png"] = {
                    "metres_per_unit": ex.DEPTH_METRES_PER_UNIT, "offset_m": offset,
                    "encoding": "z = offset_m + value * metres_per_unit where value > 0; value 0 = no face",
                    "z": "camera-space Z of the fitted face surface (with the details) at the pixel centre, metres, "
                         "larger = closer to the camera, relative to the model's origin (the weak-perspective "
                         "camera has no absolute depth); pose.scale pixels per metre turns it into pixels",
                }
            if "landmarks" in wanted:
                (tmp / "landmarks.json").write_text(json.dumps(self.landmarks(), separators=(",", ":")) + "\n")
            params["outputs"] = [n for n in ex.OUTPUTS if n in wanted or n == "params"]
            params["timings_ms"]["export"] = round((time.perf_counter() - t) * 1000.0, 2)
            (tmp / "params.json").write_text(json.dumps(params, indent=2) + "\n")
        return directory

    @property
    def pipeline(self) -> ReconstructionContext:
        """The context (face model, mesh builder, renderer, source): the name of earlier versions."""
        return self.context


def _face_entry(index: int, face: Face) -> dict:
    """A detected face as listed in params.json: index (for face_index), box, size, and the
    detector's score where there is one (faces found by the full-range detector)."""
    x0, y0, x1, y1 = (float(v) for v in face.box)
    entry = {"index": index, "box": [round(v, 2) for v in (x0, y0, x1, y1)],
             "size_px": round(max(x1 - x0, y1 - y0), 1)}
    score = getattr(face, "score", None)
    if score is not None:
        entry["score"] = round(float(score), 4)
    return entry


def _render_shrink(width: int, height: int) -> float:
    """The factor (at most 1) that brings a photo within the largest render (render.renderer.MAX_SIZE)."""
    from .render.renderer import MAX_SIZE

    return min(1.0, MAX_SIZE / max(width, height))
