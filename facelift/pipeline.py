"""FaceLift: the pipeline that wires the stages, and the Reconstruction it returns."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__, _hub
from .albedo import (LowFrequencyFit, confidence_for, fit_low_frequency, network_sources, pca_albedo,
                     stiff_pca_albedo)
from .errors import (ExtremePoseError, FaceCutOffError, FaceIndexError, FaceLiftError, ImageTooSmallError,
                     OutputError, OutputExistsError, WeightsError)
from ._jsonfile import read_json_file
from .export import OUTPUTS
from .face_model import FaceModel
from .fitting import FitResult, fit_shape
from .image import load_image
from .landmarks import Face, LandmarkDetector
from .mesh import DenseMesh, DenseMeshBuilder
from .unwrap import UVMaps, unwrap

BUNDLE_FORMAT_VERSION = 1
CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
DEFAULT_REPO_ID = _hub.DEFAULT_REPO_ID  # overridden by $FACELIFT_REPO_ID (see default_weights)
NETWORKS = ("bnet", "fan", "drn")
# what the pipeline feeds each network and expects back (config key -> value)
_NETWORK_INTERFACE = {"bnet": {"in_channels": 3}, "fan": {"out_channels": 3}, "drn": {"out_channels": 1}}
_MAX_CONFIG_BYTES = 1 << 20
MIN_FACE_SIZE = 40  # pixels across the face box
#: Faces looked for in a photo (largest first); `FaceLift(max_faces=...)` changes it.
DEFAULT_MAX_FACES = 20
#: Share of the face's landmarks that may lie outside the photo (a face cut off by the
#: border): beyond this the face is refused with FaceCutOffError; up to it, it is
#: reconstructed, the parts outside marked invisible, and a warning recorded.
MAX_OUTSIDE_FRACTION = 0.35
#: |yaw| in degrees beyond which a face is refused as a profile (ExtremePoseError), and
#: beyond which a warning is recorded. MediaPipe's landmarks flatten strong turns: a face
#: turned ~70 degrees fits at ~60, and beyond ~70 degrees MediaPipe usually finds no face.
MAX_YAW_DEG = 75.0
WARN_YAW_DEG = 45.0
WARN_PITCH_DEG = 45.0
#: What `Reconstruction.export` writes (`facelift.export.OUTPUTS`). A folder holding nothing but
#: these (with a params.json FaceLift wrote) is a previous export, which a new export may replace.
EXPORT_FILES = frozenset(f for files in OUTPUTS.values() for f in files)
_OS_CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # a file browser's, not the user's
TMP_MARK = ".facelift-tmp-"  # in the names of export's temporary folders: .<name>.facelift-tmp-<pid>-...
RENDER_MODES = ("albedo", "shaded", "shaded_details", "normals")
GREY_ALBEDO = 0.7  # render(albedo="grey")
OVERLAY_OPACITY = 0.7  # render_in_photo, overlay.png

DEFAULT_BUNDLE_CONFIG = {
    "format_version": BUNDLE_FORMAT_VERSION,
    "uv_resolution": 256,
    "mesh_resolution": 256,
    "mesh_subdivisions": 2,
    "components": {"face_model": "face_model.safetensors", "bnet": None, "fan": "fan", "drn": "drn"},
}


def default_weights() -> str:
    """`checkpoints/` next to the package when present, else the Hub repo id
    (``$FACELIFT_REPO_ID``, default DEFAULT_REPO_ID)."""
    if CHECKPOINTS_DIR.is_dir() and (CHECKPOINTS_DIR / "config.json").is_file():
        return str(CHECKPOINTS_DIR)
    return _hub.default_repo_id()


@contextmanager
def _timed(timings: dict, name: str):
    start = time.perf_counter()
    yield
    timings[name] = round((time.perf_counter() - start) * 1000.0, 2)


class FaceLift:
    """Photo -> relightable 3D face. Create with `FaceLift.from_pretrained()`."""

    def __init__(self, face_model: FaceModel, bnet=None, fan=None, drn=None, config: dict | None = None,
                 device: str | torch.device = "cpu", max_faces: int = DEFAULT_MAX_FACES):
        self.config = {**DEFAULT_BUNDLE_CONFIG, **(config or {})}
        self.face_model = face_model
        self.device = torch.device(device)
        self.bnet, self.fan, self.drn = (
            None if net is None else net.to(self.device).eval() for net in (bnet, fan, drn)
        )
        for net in (self.fan, self.drn):  # channels-last convolutions: ~1.6x faster U-Nets on a CPU
            if net is not None:
                net.to(memory_format=torch.channels_last)
        self.uv_resolution = int(self.config["uv_resolution"])
        if isinstance(max_faces, bool) or not isinstance(max_faces, int) or not 1 <= max_faces <= 100:
            raise ValueError(f"max_faces must be an integer from 1 to 100, got {max_faces!r}")
        self.max_faces = max_faces
        self.detector = LandmarkDetector(max_faces=max_faces)
        self.mesh_builder = DenseMeshBuilder(
            face_model, resolution=int(self.config["mesh_resolution"]),
            subdivisions=int(self.config["mesh_subdivisions"]))
        self.face_model.texel_map(self.uv_resolution)
        self._renderer = None
        self._renderer_lock = threading.Lock()
        self.source = None
        self.bundle_path: Path | None = None  # the local folder it was loaded from (set by from_pretrained)

    # ---- loading and saving ----------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None,
                        device: str | torch.device | None = None, *,
                        max_faces: int = DEFAULT_MAX_FACES) -> "FaceLift":
        """Load a bundle: a local directory, or a Hugging Face Hub model repo id.

        `name_or_path=None` loads `default_weights()`. A repo id is fetched with
        `huggingface_hub.snapshot_download` (only the bundle's files) into the Hub cache
        (`cache_dir`, else HF_HUB_CACHE) at `revision` (branch, tag or commit; default "main").
        `local_files_only=None` follows HF_HUB_OFFLINE; HF_ENDPOINT and HF_TOKEN are honoured.
        Only safetensors are read. Networks load as float32 on `device` (None: the CPU).
        `max_faces` caps the faces looked for in a photo (DEFAULT_MAX_FACES).
        Raises WeightsError, naming the file, when anything is missing, corrupted or incompatible.
        """
        try:
            device = torch.device("cpu" if device is None else device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from exc
        name = os.fspath(name_or_path) if name_or_path is not None else default_weights()
        path = Path(name).expanduser()
        if not path.is_dir():
            if path.exists():
                raise WeightsError(f"{name} is a file; a FaceLift bundle is a directory holding config.json.")
            if _looks_like_a_path(name):
                raise WeightsError(f"{name}: no such directory (and it is not a Hub repo id 'owner/name').")
            path = _download_bundle(name, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        config = _read_bundle_config(path)
        components = config["components"]
        face_model = FaceModel.load(path / components["face_model"])
        nets = {key: _load_network(path, key, components.get(key), face_model) for key in NETWORKS}
        pipe = cls(face_model, nets["bnet"], nets["fan"], nets["drn"], config=config, device=device,
                   max_faces=max_faces)
        pipe.source = str(name)
        pipe.bundle_path = path
        return pipe

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write this pipeline as a bundle that `from_pretrained` loads back identically:
        config.json (format and library version, components), face_model.safetensors, one
        folder per network (config.json, model.safetensors, README.md) and README.md (the
        model card: the source bundle's card when it had one, else a generated one)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        source = Path(self.bundle_path) if getattr(self, "bundle_path", None) else None
        source_components = self.config.get("components") or {}

        def source_card(sub: str | None) -> bytes | None:  # read before anything is overwritten
            card = source / sub / "README.md" if source is not None and sub else None
            return card.read_bytes() if card is not None and card.is_file() else None

        cards = {key: source_card(source_components.get(key)) for key in NETWORKS}
        bundle_card = source_card(".")
        card_images = {rel: (source / rel).read_bytes() for rel in _card_images(bundle_card, source)}
        components = {"face_model": "face_model.safetensors"}
        self.face_model.save(directory / components["face_model"])
        for key in NETWORKS:
            net = getattr(self, key)
            components[key] = key if net is not None else None
            if net is None:
                continue
            sub = directory / key
            sub.mkdir(exist_ok=True)
            (sub / "README.md").unlink(missing_ok=True)  # the mixin writes its card only where there is none
            if cards[key] is not None:
                (sub / "README.md").write_bytes(cards[key])
            net.save_pretrained(str(sub))
        if bundle_card is not None:
            (directory / "README.md").write_bytes(bundle_card)
            for rel, data in card_images.items():
                (directory / rel).parent.mkdir(parents=True, exist_ok=True)
                (directory / rel).write_bytes(data)
        else:
            (directory / "README.md").write_text(_model_card(components))
        config = {**self.config, "format_version": BUNDLE_FORMAT_VERSION, "components": components,
                  "library_version": __version__}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return directory

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None,
                    branch: str | None = None, create_pr: bool = False,
                    commit_message: str = "Upload FaceLift bundle"):
        """Upload this pipeline as a bundle to the Hub model repo `repo_id` (created if needed)
        in one commit, with `huggingface_hub.HfApi`. `token` defaults to HF_TOKEN / the login."""
        return _hub.push_bundle(self.save_pretrained, repo_id, token=token, private=private, branch=branch,
                                create_pr=create_pr, commit_message=commit_message)

    # ---- renderer (shared, lazily created) ----------------------------------------
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
        self.detector.close()

    # ---- the pipeline --------------------------------------------------------------
    def detect(self, image) -> list[Face]:
        return self.detector.detect(load_image(image))

    @torch.inference_mode()
    def reconstruct(self, image, face_index: int = 0) -> "Reconstruction":
        """Reconstruct face `face_index` (0 = the largest) of `image` (a path, file bytes, PIL
        image or array; see `facelift.image.load_image`).

        Refuses, with a FaceLiftError saying why, what cannot be reconstructed: no face, a face
        smaller than MIN_FACE_SIZE pixels, more than MAX_OUTSIDE_FRACTION of the face outside the
        photo (FaceCutOffError), or turned beyond MAX_YAW_DEG (ExtremePoseError). A face partly
        outside the photo or strongly turned is reconstructed from what is visible (the rest is
        marked invisible in `visibility`) and the reason is added to `Reconstruction.warnings`.
        """
        if isinstance(face_index, bool) or not isinstance(face_index, (int, np.integer)):
            raise FaceIndexError(f"face_index must be a whole number (0 = the largest face), got {face_index!r}.")
        face_index = int(face_index)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with _timed(timings, "decode"):
            rgb = load_image(image)
        with _timed(timings, "landmarks"):
            faces = self.detector.detect(rgb)
        if not 0 <= face_index < len(faces):
            listed = "; ".join(f"{i}: {_box_text(f.box)}" for i, f in enumerate(faces))
            raise FaceIndexError(
                f"face_index={face_index}, but {len(faces)} face(s) were found (valid: 0..{len(faces) - 1}, "
                f"largest first; boxes x0,y0-x1,y1 in pixels: {listed}).")
        face = faces[face_index]
        x0, y0, x1, y1 = face.box
        if min(x1 - x0, y1 - y0) < MIN_FACE_SIZE:
            raise ImageTooSmallError(
                f"The face is only {int(x1 - x0)}x{int(y1 - y0)} pixels; FaceLift needs at least "
                f"{MIN_FACE_SIZE} pixels across the face. Use a larger or closer photo.")
        warnings = check_face_in_image(face, rgb.shape[1], rgb.shape[0])
        model = self.face_model
        with _timed(timings, "fit"):
            fit = fit_shape(model, face.points[: model.n_vertices, :2])
        warnings += check_pose(fit)
        with _timed(timings, "unwrap"):
            verts_model = fit.vertices_model(model)
            verts_cam = verts_model @ fit.rotation.T
            maps = unwrap(rgb, verts_cam, fit.scale, fit.translation, model, resolution=self.uv_resolution)
        pred = self.predict_uv(maps, timings=timings)
        rec = Reconstruction(
            pipeline=self, image=rgb, faces=faces, face_index=face_index, fit=fit, maps=maps,
            albedo=pred.albedo, albedo_pca=pred.albedo_pca, displacement=pred.displacement,
            displacement_scale=pred.displacement_scale, sh=pred.sh, albedo_source=pred.albedo_source,
            albedo_pca_source=pred.albedo_pca_source, vertices_model=verts_model, timings=timings, warnings=warnings,
            skin_confidence=pred.skin_confidence)
        with _timed(timings, "mesh"):
            rec.dense_mesh(details=True)
        timings["total"] = round((time.perf_counter() - t0) * 1000.0, 2)
        return rec

    @torch.inference_mode()
    def predict_uv(self, maps: UVMaps, details: bool = True, timings: dict | None = None) -> "UVPredictions":
        """UV maps in, predictions out: the low-frequency stage (B-Net, else the robust least-squares
        fit: PCA albedo, SH lighting, skin confidence), the FAN albedo and (with `details`) the DRN
        displacement, all (R, R, C) maps at the unwrap resolution, zero outside the layout."""
        timings = {} if timings is None else timings
        with _timed(timings, "lighting"):
            low, pca_source = self._low_frequency(maps)
        sources = None
        with _timed(timings, "fan"):
            if self.fan is not None:
                sources = self._network_sources(maps, low)
                albedo = self._run_unet(self.fan, sources)
            else:
                albedo = low.albedo
        displacement = np.zeros(maps.mask.shape, np.float32)
        displacement_scale = 0.0
        if details:
            with _timed(timings, "drn"):
                if self.drn is not None:
                    sources = sources or self._network_sources(maps, low)
                    sources["albedo_fan"] = albedo  # the PCA albedo when there is no FAN
                    displacement = self._run_unet(self.drn, sources)[..., 0]
                    displacement_scale = float(self.drn.config["max_rate"])
        inside = maps.mask
        return UVPredictions(
            albedo=np.where(inside[..., None], albedo, 0.0).astype(np.float32),
            albedo_pca=np.where(inside[..., None], low.albedo, 0.0).astype(np.float32),
            sh=low.sh, skin_confidence=np.where(inside, low.confidence, 0.0).astype(np.float32),
            displacement=np.where(inside, displacement, 0.0).astype(np.float32),
            displacement_scale=displacement_scale, albedo_source="fan" if self.fan is not None else pca_source,
            albedo_pca_source=pca_source)

    def _network_sources(self, maps: UVMaps, low: LowFrequencyFit) -> dict:
        nets = [n for n in (self.fan, self.drn) if n is not None]
        stiff = None
        if any("albedo_stiff" in n.inputs for n in nets):
            stiff = stiff_pca_albedo(self.face_model, low, maps.texture.shape[0])
        return network_sources(maps.texture, maps.visibility, maps.normal, low, stiff)

    def _to_net(self, uv_map: np.ndarray, resolution: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(uv_map.transpose(2, 0, 1), dtype=np.float32))[None].to(self.device)
        if x.shape[-1] != resolution:
            x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear",
                                                align_corners=False, antialias=True)
        return x

    def _from_net(self, y: torch.Tensor) -> np.ndarray:
        if y.shape[-1] != self.uv_resolution:
            y = torch.nn.functional.interpolate(y, size=(self.uv_resolution,) * 2, mode="bilinear",
                                                align_corners=False)
        return y[0].permute(1, 2, 0).float().cpu().numpy()

    def _run_unet(self, net, sources: dict) -> np.ndarray:
        """`net` on the stack of the maps it takes (`net.inputs`), back at the unwrap resolution."""
        resolution = int(net.config["resolution"])
        x = torch.cat([self._to_net(sources[name], resolution) for name in net.inputs], 1)
        return self._from_net(net(x.contiguous(memory_format=torch.channels_last)))

    def _low_frequency(self, maps: UVMaps) -> tuple[LowFrequencyFit, str]:
        """PCA albedo (eq. 2), SH lighting (eq. 3) and skin confidence: from the B-Net, or by the
        robust least-squares fit (`facelift.albedo.fit_low_frequency`)."""
        visible = maps.visibility > 0.5
        if self.bnet is not None:
            coeffs, sh = self.bnet(self._to_net(maps.texture, int(self.bnet.config["resolution"])))
            coeffs = coeffs[0].cpu().numpy()
            albedo = pca_albedo(self.face_model, coeffs, self.uv_resolution)
            sh = sh[0].cpu().numpy().reshape(3, 9).astype(np.float32)
            confidence, scale = confidence_for(maps.texture, albedo, maps.normal, sh, visible)
            return LowFrequencyFit(coeffs, albedo, sh, confidence, scale, coeffs, sh), "bnet"
        return fit_low_frequency(self.face_model, maps.texture, maps.normal, visible), "least_squares"


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


def _read_bundle_config(path: Path) -> dict:
    """The bundle's config.json, validated (types and ranges), merged over the defaults."""
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        raise WeightsError(f"{path} is not a FaceLift bundle: {cfg_path} is missing.")
    # size, nesting depth and NaN capped; not valid JSON or not an object: a WeightsError naming it
    config = read_json_file(cfg_path, max_bytes=_MAX_CONFIG_BYTES)
    version = config.get("format_version")
    if type(version) is not int or version != BUNDLE_FORMAT_VERSION:
        newer = type(version) is int and version > BUNDLE_FORMAT_VERSION
        raise WeightsError(f"{cfg_path} has format_version {version!r}; this FaceLift ({__version__}) reads bundles "
                           f"of format {BUNDLE_FORMAT_VERSION}" + (" (upgrade FaceLift to read it)." if newer else "."))
    library_version = config.get("library_version")
    if library_version is not None and not isinstance(library_version, str):
        raise WeightsError(f"{cfg_path}: 'library_version' must be a string, got {library_version!r}.")
    components = config.get("components")
    if not isinstance(components, dict) or "face_model" not in components:
        raise WeightsError(f"{cfg_path} must list its components, including 'face_model'.")
    unknown = sorted(set(components) - {"face_model", *NETWORKS})
    if unknown:
        raise WeightsError(f"{cfg_path} lists unknown components {unknown}; known: face_model, {', '.join(NETWORKS)}.")
    face_model = components["face_model"]
    if not _is_bundle_relative(face_model) or not face_model.endswith(".safetensors"):
        raise WeightsError(f"{cfg_path}: components.face_model must be a .safetensors file inside the bundle, "
                           f"got {face_model!r}.")
    for key in NETWORKS:
        sub = components.get(key)
        if sub is not None and not _is_bundle_relative(sub):
            raise WeightsError(f"{cfg_path}: components.{key} must be null or a folder inside the bundle, "
                               f"got {sub!r}.")
    limits = {"uv_resolution": (1, 1024), "mesh_resolution": (1, 1024), "mesh_subdivisions": (0, 5)}
    for key, (low, high) in limits.items():
        value = config.get(key, DEFAULT_BUNDLE_CONFIG[key])
        if type(value) is not int or not low <= value <= high:
            raise WeightsError(f"{cfg_path}: '{key}' must be an integer in [{low}, {high}], got {value!r}.")
    return {**DEFAULT_BUNDLE_CONFIG, **config}


_CARD_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")


def _card_images(card: bytes | None, source: Path | None) -> list[str]:
    """The images a model card shows from inside its bundle (relative links, e.g. `albedo_pca.png`),
    so that a saved or pushed bundle's card still shows them on the Hub."""
    if card is None or source is None:
        return []
    found = []
    for link in _CARD_IMAGE.findall(card.decode("utf-8", "replace")):
        if _is_bundle_relative(link) and (source / link).is_file():
            found.append(link)
    return found


def _bundle_files(config: dict) -> list[str]:
    """The files of a bundle, relative to its root (README.md files are optional)."""
    components = config["components"]
    files = ["config.json", "README.md", components["face_model"]]
    for key in NETWORKS:
        sub = components.get(key)
        if sub:
            files += [f"{sub}/config.json", f"{sub}/model.safetensors", f"{sub}/README.md"]
    return files


def _download_bundle(repo_id: str, *, revision, cache_dir, local_files_only) -> Path:
    """The bundle `repo_id` from the Hub cache, downloading what is missing (see facelift._hub)."""
    return _hub.download_bundle(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                bundle_files=lambda folder: _bundle_files(_read_bundle_config(folder)))


def _load_network(path: Path, key: str, sub: str | None, face_model: FaceModel):
    """One network of a bundle (strict safetensors loading, float32), or None."""
    from .models import MODEL_CLASSES

    if not sub:
        return None
    folder = path / sub
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise WeightsError(f"The bundle {path} names {key} weights in '{sub}/', but {folder / name} "
                               f"does not exist.")
    try:
        net = MODEL_CLASSES[key].from_pretrained(str(folder))
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"Could not load {key} from {folder}: {exc}") from exc
    config = net.config
    for name, want in _NETWORK_INTERFACE[key].items():
        if config.get(name) != want:
            raise WeightsError(f"{folder / 'config.json'}: the pipeline needs a {key} with {name}={want}, "
                               f"got {config.get(name)!r}.")
    if key == "bnet" and config["n_albedo"] > face_model.n_albedo:
        raise WeightsError(f"{folder / 'config.json'}: B-Net predicts {config['n_albedo']} albedo coefficients, but "
                           f"the bundle's face model has only {face_model.n_albedo} albedo components.")
    return net.float()


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


def _box_text(box) -> str:
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    return f"{x0},{y0}-{x1},{y1}"


def face_outside_fraction(face: Face, width: int, height: int) -> float:
    """Share of the face's mesh landmarks that lie outside a `width` x `height` image
    (MediaPipe places the landmarks of a face cut off by the border beyond it)."""
    pts = np.asarray(face.points)[:, :2][:468]
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= width) & (pts[:, 1] >= 0) & (pts[:, 1] <= height)
    return float(1.0 - inside.mean()) if len(pts) else 1.0


def check_face_in_image(face: Face, width: int, height: int) -> list[str]:
    """Raise FaceCutOffError when more than MAX_OUTSIDE_FRACTION of the face lies outside
    the image; return a warning (a list of one) when a noticeable part of it does."""
    outside = face_outside_fraction(face, width, height)
    if outside > MAX_OUTSIDE_FRACTION:
        raise FaceCutOffError(
            f"The face is cut off by the image border: about {outside * 100:.0f}% of it lies outside the photo, "
            f"and FaceLift needs at least {(1 - MAX_OUTSIDE_FRACTION) * 100:.0f}% of the face inside. "
            "Use a photo that shows the whole face.")
    if outside >= 0.01:
        return [f"About {outside * 100:.0f}% of the face is outside the photo (cut off by the border): "
                "its shape there is extrapolated and its texture is marked invisible (visibility.png)."]
    return []


def check_pose(fit: FitResult) -> list[str]:
    """Raise ExtremePoseError beyond MAX_YAW_DEG of yaw (a profile); warnings for strong turns."""
    yaw, pitch, _ = fit.yaw_pitch_roll()
    if abs(yaw) > MAX_YAW_DEG:
        raise ExtremePoseError(
            f"The face is turned {abs(yaw):.0f} degrees to the side (a profile). FaceLift reconstructs faces "
            f"turned up to {MAX_YAW_DEG:.0f} degrees: a profile shows too little of the face to unwrap its "
            "texture. Use a photo where both eyes can be seen.")
    out = []
    if abs(yaw) > WARN_YAW_DEG:
        out.append(f"The face is turned about {abs(yaw):.0f} degrees to the side: its far side is hidden in the "
                   "photo, so its texture there is marked invisible (visibility.png) and filled in by the model.")
    if abs(pitch) > WARN_PITCH_DEG:
        out.append(f"The face is tilted about {abs(pitch):.0f} degrees up or down: parts of it are hidden in the "
                   "photo and marked invisible (visibility.png).")
    return out


def _is_bundle_relative(name) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or name.startswith("/"):
        return False
    parts = name.split("/")
    return all(part not in ("", ".", "..") for part in parts) and not Path(name).is_absolute()


def _looks_like_a_path(name: str) -> bool:
    """True for what can only be a local path (a Hub repo id is 'name' or 'owner/name')."""
    return (name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name) or (len(name) > 1 and name[1] == ":"))


def _model_card(components: dict) -> str:
    rows = [f"| `{components['face_model']}` | the face model: topology, shape basis, UV layout, albedo model |"]
    what = {"bnet": "B-Net (low-frequency albedo and lighting)", "fan": "FAN (facial albedo network)",
            "drn": "DRN (detail recovering network)"}
    rows += [f"| `{components[key]}/` | {what[key]}: `config.json` + `model.safetensors` |"
             for key in NETWORKS if components.get(key)]
    return (f"---\nlibrary_name: facelift\ntags:\n  - facelift\n  - 3d-face-reconstruction\n---\n\n"
            f"# FaceLift bundle\n\nWeights for FaceLift "
            f"{__version__} (bundle format {BUNDLE_FORMAT_VERSION}). Load with:\n\n"
            f"```python\nfrom facelift import FaceLift\n\n"
            f"pipe = FaceLift.from_pretrained(\"<this repo id or folder>\")\n"
            f"```\n\n| file | what |\n|---|---|\n| `config.json` | bundle format version, library version, "
            f"components |\n" + "\n".join(rows) + "\n")


@dataclass(eq=False)
class Reconstruction:
    """One reconstructed face. UV maps are (R, R, C) float32 numpy arrays (ARCHITECTURE.md)."""

    pipeline: FaceLift
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

    def dense_mesh(self, details: bool = True) -> DenseMesh:
        key = bool(details) and self.displacement_scale > 0
        if key not in self._meshes:
            self._meshes[key] = self.pipeline.mesh_builder.build(
                self.vertices_model, self.displacement if key else None)
        return self._meshes[key]

    def render(self, yaw: float = 0.0, pitch: float = 0.0, light=None, details: bool = True, size: int = 512,
               mode: str = "shaded", light_intensity: float = 1.0, ambient: float = 0.35,
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
            from .render import view_rotation

            view = view_rotation(yaw, pitch)
        return self.pipeline.renderer.render(
            mesh.vertices, mesh.faces, mesh.uv, mesh.normals, albedo_map, yaw=yaw, pitch=pitch, mode=mode,
            light=light, light_intensity=light_intensity, ambient=ambient,
            sh=self.sh if light is None else None, rotation_of_face=self.fit.rotation, size=size, view=view)

    def _render_inputs(self, mode: str, details: bool, albedo: str):
        if mode not in RENDER_MODES:
            raise ValueError(f"mode must be one of {RENDER_MODES}, got {mode!r}")
        if mode == "shaded_details":
            mode, details = "shaded", True
        if albedo not in ("fan", "pca", "grey"):
            raise ValueError(f"albedo must be 'fan', 'pca' or 'grey', got {albedo!r}")
        albedo_map = {"fan": self.albedo, "pca": self.albedo_pca}.get(albedo)
        if albedo_map is None:  # the geometry alone
            albedo_map = np.full_like(self.albedo, GREY_ALBEDO)
        return mode, details, albedo_map

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
            view = self.pipeline.renderer.render_photo_view(
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
        from .evaluation.landmarks68 import IBUG68_FROM_MEDIAPIPE, model_landmarks68

        h, w = self.image.shape[:2]
        yaw, pitch, roll = self.fit.yaw_pitch_roll()
        points = np.asarray(self.face.points, np.float64)
        projected = self.fit.project(self.pipeline.face_model)
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
            "weights": self.pipeline.source,
            "image_size": [int(w), int(h)],
            "face_index": self.face_index,
            "n_faces": len(self.faces),
            "max_faces": int(getattr(self.pipeline, "max_faces", len(self.faces))),
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
        viewer whatever the mesh resolution (the OBJ of `export` carries them in its geometry)."""
        from . import export as ex

        base = self.dense_mesh(details=False)
        albedo_u8 = (np.clip(self.albedo, 0, 1) * 255 + 0.5).astype(np.uint8)
        normal_map = (ex.normal_map_to_uint8(self.detail_normal_map())
                      if details and self.displacement_scale > 0 else None)
        return ex.export_glb(path, base.vertices, base.faces, base.uv, base.normals, albedo_u8, normal_map)

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
        folder of the user's own files, raises OutputExistsError and is left untouched.
        Returns the folder's path.
        """
        from . import export as ex

        wanted = set(ex.select_outputs(outputs))
        directory = Path(os.path.abspath(os.fspath(directory)))  # "." and "out/" have a usable name
        check_export_target(directory)
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}{TMP_MARK}{os.getpid()}-", dir=directory.parent))
        except OSError as exc:
            raise OutputError(f"Cannot create the output folder {directory}: {exc.strerror or exc}.") from exc
        try:
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
            with _interrupts_held():
                _move_into_place(tmp, directory)
        except BaseException as exc:
            with _interrupts_held():
                shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, FaceLiftError):  # disk full, permissions
                raise OutputError(f"Could not write the reconstruction to {directory}: {exc.strerror or exc}.") \
                    from exc
            raise
        return directory


def _render_shrink(width: int, height: int) -> float:
    """The factor (at most 1) that brings a photo within the largest render (render.MAX_SIZE)."""
    from .render import MAX_SIZE

    return min(1.0, MAX_SIZE / max(width, height))


def check_export_target(directory: Path) -> None:
    """Raise OutputExistsError unless `directory` is absent, an empty folder or a previous
    FaceLift export (see `Reconstruction.export`)."""
    directory = Path(os.path.abspath(os.fspath(directory)))
    cwd = Path(os.path.abspath(os.getcwd()))
    if directory == cwd or directory in cwd.parents:
        raise OutputExistsError(
            f"Will not write the reconstruction over {directory}: it is the current folder or contains it. "
            "Give a new sub-folder, e.g. out/photo.")
    if not os.path.lexists(directory):
        return
    if directory.is_symlink():
        raise OutputExistsError(
            f"{directory} is a symbolic link; FaceLift does not replace links. Choose another output folder.")
    if not directory.is_dir():
        raise OutputExistsError(
            f"{directory} exists and is a file, not a folder; FaceLift will not replace it. "
            "Choose another output folder.")
    try:
        entries = list(directory.iterdir())
    except OSError as exc:
        raise OutputExistsError(f"Cannot look inside {directory} ({exc.strerror}); choose another output folder.") \
            from exc
    kept = [p for p in entries if p.name not in _OS_CLUTTER]
    if not kept:
        return  # empty: nothing to lose
    foreign = sorted(p.name for p in kept if p.name not in EXPORT_FILES or p.is_symlink() or not p.is_file())
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        why = f"it holds {', '.join(repr(n) for n in foreign[:3])}{more}, which FaceLift did not write"
    elif not _written_by_facelift(directory / "params.json"):
        why = "it has no params.json written by FaceLift"
    else:
        return  # a previous FaceLift export
    raise OutputExistsError(
        f"{directory} already exists and is not a FaceLift export ({why}). FaceLift only replaces an empty "
        "folder or its own earlier output, so nothing was changed: choose another output folder, or move "
        "those files away.")


def _written_by_facelift(params: Path) -> bool:
    """Whether `params` is a params.json that `Reconstruction.export` wrote."""
    try:
        if params.stat().st_size > _MAX_CONFIG_BYTES * 4:
            return False
        data = json.loads(params.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"library_version", "pose", "sh_coefficients", "face_box"} <= set(data)


def _move_into_place(tmp: Path, directory: Path) -> None:
    """Rename the finished `tmp` to `directory`, replacing an existing (checked) one: the old
    folder is renamed aside first and put back if the rename fails, then removed."""
    if not os.path.lexists(directory):
        os.replace(tmp, directory)  # fails, changing nothing, if someone created it meanwhile
        return
    check_export_target(directory)  # again, right before replacing it
    old = tmp.with_name(tmp.name + "-old")
    os.replace(directory, old)
    try:
        os.replace(tmp, directory)
    except BaseException:
        os.replace(old, directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _interrupts_held():
    """Hold Ctrl-C (SIGINT) until the block has finished, then deliver it: a file-system step
    that must not stop half-way (renames, clean-up). Python runs signal handlers in the main
    thread only, so elsewhere nothing needs holding."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    except (ValueError, OSError):  # no signals here (e.g. a sub-interpreter)
        yield
        return
    if previous is None:  # installed outside Python: the closest is Python's default
        previous = signal.default_int_handler
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, received[0])
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)
