"""FaceLift: the pipeline that wires the stages (detect, fit, unwrap, predict_uv, mesh) into
`reconstruct`, which returns a `facelift.reconstruction.Reconstruction`."""

from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import _hub
from ._blas import one_blas_thread
from ._malloc import keep_freed_memory
from ._validate import is_int
from .albedo import (
    LowFrequencyFit,
    colourise,
    confidence_for,
    fit_low_frequency,
    grey,
    greyscale_fit,
    is_greyscale,
    network_sources,
    pca_albedo,
    stiff_pca_albedo,
)

# the bundle, checks, export folder and Reconstruction live in modules of their own; their names
# are re-exported here for code written against this module
from .bundle import (  # noqa: F401
    BUNDLE_FORMAT_VERSION,
    DEFAULT_BUNDLE_CONFIG,
    DEFAULT_REPO_ID,
    NETWORKS,
    _bundle_files,
    _download_bundle,
    _read_bundle_config,
    load_bundle,
    save_bundle,
)
from .checks import (  # noqa: F401
    MAX_OUTSIDE_FRACTION,
    MAX_YAW_DEG,
    MIN_FACE_SIZE,
    WARN_PITCH_DEG,
    WARN_YAW_DEG,
    check_face_in_image,
    check_face_index,
    check_pose,
    face_outside_fraction,
    pick_face,
)
from .export.folder import EXPORT_FILES, TMP_MARK, check_export_target  # noqa: F401
from .face_model import FaceModel
from .fitting import fit_shape
from .image import load_image
from .landmarks import Face, LandmarkDetector
from .mesh import DenseMeshBuilder
from .reconstruction import (  # noqa: F401
    GREY_ALBEDO,
    OVERLAY_OPACITY,
    RENDER_MODES,
    Reconstruction,
    ReconstructionContext,
    UVPredictions,
)
from .unwrap import UVMaps, unwrap

CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
#: Faces looked for in a photo (largest first); `FaceLift(max_faces=...)` changes it.
DEFAULT_MAX_FACES = 20


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
        if self.device.type == "cpu":
            keep_freed_memory()
        self.bnet, self.fan, self.drn = (
            None if net is None else net.to(self.device).eval() for net in (bnet, fan, drn)
        )
        for net in (self.fan, self.drn):  # channels-last convolutions: ~1.6x faster U-Nets on a CPU
            if net is not None:
                net.to(memory_format=torch.channels_last)
        self.uv_resolution = int(self.config["uv_resolution"])
        if not is_int(max_faces, numpy=False) or not 1 <= max_faces <= 100:
            raise ValueError(f"max_faces must be an integer from 1 to 100, got {max_faces!r}")
        self.max_faces = max_faces
        self.detector = LandmarkDetector(max_faces=max_faces)
        self.mesh_builder = DenseMeshBuilder(
            face_model, resolution=int(self.config["mesh_resolution"]),
            subdivisions=int(self.config["mesh_subdivisions"]))
        self.context = ReconstructionContext(face_model, self.mesh_builder, max_faces)
        self._folded_nets: dict[int, tuple] = {}  # id(net) -> (net, its weights' versions, its folded copy)
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
        name, path, config, face_model, nets = load_bundle(
            default_weights() if name_or_path is None else name_or_path, revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only)
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
        return save_bundle(self, directory)

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None,
                    branch: str | None = None, create_pr: bool = False,
                    commit_message: str = "Upload FaceLift bundle"):
        """Upload this pipeline as a bundle to the Hub model repo `repo_id` (created if needed)
        in one commit, with `huggingface_hub.HfApi`. `token` defaults to HF_TOKEN / the login."""
        return _hub.push_bundle(self.save_pretrained, repo_id, token=token, private=private, branch=branch,
                                create_pr=create_pr, commit_message=commit_message)

    # ---- what its reconstructions share --------------------------------------------
    @property
    def renderer(self):
        """The renderer shared by this pipeline's reconstructions (created on first use)."""
        return self.context.renderer

    @property
    def source(self) -> str | None:
        """The name or path the bundle was loaded from (set by from_pretrained)."""
        return self.context.source

    @source.setter
    def source(self, value: str | None) -> None:
        self.context.source = value

    def close(self) -> None:
        self.context.close()
        self.detector.close()

    # ---- the pipeline --------------------------------------------------------------
    def detect(self, image) -> list[Face]:
        return self.detector.detect(load_image(image))

    @torch.inference_mode()
    @one_blas_thread
    def reconstruct(self, image, face_index: int = 0) -> "Reconstruction":
        """Reconstruct face `face_index` (0 = the largest) of `image` (a path, file bytes, PIL
        image or array; see `facelift.image.load_image`).

        Refuses, with a FaceLiftError saying why, what cannot be reconstructed: no face, a face
        smaller than MIN_FACE_SIZE pixels, more than MAX_OUTSIDE_FRACTION of the face outside the
        photo (FaceCutOffError), or turned beyond MAX_YAW_DEG (ExtremePoseError). A face partly
        outside the photo or strongly turned is reconstructed from what is visible (the rest is
        marked invisible in `visibility`) and the reason is added to `Reconstruction.warnings`.
        """
        face_index = check_face_index(face_index)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with _timed(timings, "decode"):
            rgb = load_image(image)
        with _timed(timings, "landmarks"):
            faces = self.detector.detect(rgb)
        face = pick_face(faces, face_index)
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
            context=self.context, image=rgb, faces=faces, face_index=face_index, fit=fit, maps=maps,
            albedo=pred.albedo, albedo_pca=pred.albedo_pca, displacement=pred.displacement,
            displacement_scale=pred.displacement_scale, sh=pred.sh, albedo_source=pred.albedo_source,
            albedo_pca_source=pred.albedo_pca_source, vertices_model=verts_model, timings=timings, warnings=warnings,
            skin_confidence=pred.skin_confidence, detail_cavity=pred.detail_cavity)
        with _timed(timings, "mesh"):
            rec.dense_mesh(details=True)
        timings["total"] = round((time.perf_counter() - t0) * 1000.0, 2)
        return rec

    @torch.inference_mode()
    @one_blas_thread
    def predict_uv(self, maps: UVMaps, details: bool = True, timings: dict | None = None) -> "UVPredictions":
        """UV maps in, predictions out: the low-frequency stage (B-Net, else the robust least-squares
        fit: PCA albedo, SH lighting, skin confidence), the FAN albedo and (with `details`) the DRN
        displacement, all (R, R, C) maps at the unwrap resolution, zero outside the layout."""
        timings = {} if timings is None else timings
        with _timed(timings, "lighting"):
            maps, low, pca_source, greyscale = self._low_frequency_stage(maps)
        sources, gate = None, None
        with _timed(timings, "fan"):
            if self.fan is not None:
                sources = self._network_sources(maps, low)
                if self.fan.output_activation == "gated":
                    albedo, gate = self._run_unet(self.fan, sources, with_gate=True)
                else:  # the paper's FAN has no gate
                    albedo = self._run_unet(self.fan, sources)
            else:
                albedo = low.albedo
        displacement = np.zeros(maps.mask.shape, np.float32)
        displacement_scale = 0.0
        cavity = (0.0, 4.0)
        if details:
            with _timed(timings, "drn"):
                if self.drn is not None:
                    sources = sources or self._network_sources(maps, low)
                    sources["albedo_fan"] = albedo  # the PCA albedo when there is no FAN
                    displacement = self._run_unet(self.drn, sources)[..., 0]
                    detail_gate = self.drn.detail_gate
                    if detail_gate is not None and gate is not None:
                        displacement = displacement * np.clip(gate / detail_gate, 0.0, 1.0)
                    displacement_scale = float(self.drn.config["max_rate"])
                    cavity = (float(self.drn.config.get("cavity", 0.0)), float(self.drn.config.get("cavity_sigma", 4.0)))
        if greyscale:
            albedo, low = grey(albedo), greyscale_fit(low)
        inside = maps.mask
        return UVPredictions(
            albedo=np.where(inside[..., None], albedo, 0.0).astype(np.float32),
            albedo_pca=np.where(inside[..., None], low.albedo, 0.0).astype(np.float32),
            sh=low.sh, skin_confidence=np.where(inside, low.confidence, 0.0).astype(np.float32),
            displacement=np.where(inside, displacement, 0.0).astype(np.float32),
            displacement_scale=displacement_scale, albedo_source="fan" if self.fan is not None else pca_source,
            albedo_pca_source=pca_source, detail_cavity=cavity)

    def _low_frequency_stage(self, maps: UVMaps) -> tuple[UVMaps, LowFrequencyFit, str, bool]:
        """(maps as the networks see them, the low-frequency fit, its source, whether the photo is
        greyscale): a greyscale texture is seen in colour by the stages after this one (`predict_uv`
        takes the colour out again at the end)."""
        greyscale = is_greyscale(maps.texture, maps.visibility > 0.5)
        if greyscale:
            mean_albedo = pca_albedo(self.face_model, None, maps.texture.shape[0])
            maps = dataclasses.replace(maps, texture=colourise(maps.texture, maps.visibility, mean_albedo))
        low, pca_source = self._low_frequency(maps)
        return maps, low, pca_source, greyscale

    def network_inputs(self, maps: UVMaps) -> dict:
        """The input maps of the networks (`models.UV_INPUTS` less the DRN's `albedo_fan`; the stiff PCA
        albedo always) for `maps`, from the same low-frequency stage as `predict_uv`, at the unwrap
        resolution."""
        maps, low, _, _ = self._low_frequency_stage(maps)
        return network_sources(maps.texture, maps.visibility, maps.normal, low,
                               stiff_pca_albedo(self.face_model, low, maps.texture.shape[0]))

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

    def _run_unet(self, net, sources: dict, with_gate: bool = False):
        """`net` on the stack of the maps it takes (`net.inputs`), back at the unwrap resolution;
        `with_gate` (a gated network): (output, its gate (R, R))."""
        resolution = int(net.config["resolution"])
        maps = [sources[name] for name in net.inputs]
        if all(m.shape[0] == resolution for m in maps):  # stacked along the last axis: channels-last already
            stack = np.concatenate([np.asarray(m, np.float32) for m in maps], axis=-1)
            x = torch.from_numpy(stack).permute(2, 0, 1)[None].to(self.device)
        else:
            x = torch.cat([self._to_net(m, resolution) for m in maps], 1)
        x = x.contiguous(memory_format=torch.channels_last)
        run = self._folded(net)
        if with_gate:
            y, gate = run(x, return_gate=True)
            return self._from_net(y), self._from_net(gate)[..., 0]
        return self._from_net(run(x))

    def _folded(self, net):
        """`net` with its batch norms folded into its convolutions (`models.fold_batchnorm`), made
        again when `net` is another module or its weights have changed in place."""
        from .models import fold_batchnorm

        version = tuple(t._version for t in (*net.parameters(), *net.buffers()))
        cached = self._folded_nets.get(id(net))
        if cached is None or cached[0] is not net or cached[1] != version:
            cached = (net, version, fold_batchnorm(net).to(memory_format=torch.channels_last))
            current = (self.fan, self.drn, net)  # networks replaced since are not kept alive
            self._folded_nets = {k: v for k, v in self._folded_nets.items() if any(v[0] is n for n in current)}
            self._folded_nets[id(net)] = cached
        return cached[2]

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


