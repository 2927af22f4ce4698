"""Evaluate FaceLift on a folder of photos: per-image metrics, a summary, failures.

`evaluate_reconstruction` computes every metric of docs/EVALUATION.md for one reconstruction
(with `photo_metrics`, also those that rerun the pipeline on edited copies of the photo);
`evaluate_paths` runs it over photos (failures are recorded, never raised); `format_table`
prints the summary. All randomness (occluders, lights, photo edits) is seeded from `seed` and
the file name.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..geometry.sh import directional_light_sh, irradiance, light_direction
from ..image import collect_images  # noqa: F401  (re-exported: facelift.evaluation.collect_images)
from ..mesh import masked_gaussian_blur
from . import metrics as M
from .image_occluders import KINDS as IMAGE_KINDS
from .image_occluders import make_image_occluder, occluder_uv_coverage
from .image_occluders import paste as paste_in_photo
from .landmarks68 import INNER, REGIONS, load_ground_truth, model_landmarks68
from .masks import skin_mask, static_skin_mask
from .occluders import KINDS, make_occluder, paste
from .perturbations import PERTURBATIONS, perturb

#: Faces turned further than this (degrees of yaw) are scored for completion.
COMPLETION_MIN_YAW = 30.0
#: Texels whose estimated irradiance is below this are left out of the relighting ratio.
MIN_IRRADIANCE = 0.05
#: Texels of the image-space occluder, seen in both photos, below which a kind is not scored.
MIN_OCCLUDED_TEXELS = 16
#: Width in texels of the ring around an image-space occluder where the relief it adds is measured:
#: the DRN carves a thin occluder (a glasses frame) as a groove with raised sides wider than the frame.
RELIEF_BAND = 4
#: Texels with a skin confidence (robust low-frequency stage) above this count as clean skin.
CLEAN_SKIN_CONFIDENCE = 0.5
#: The face found in an edited photo must overlap the original's box by this IoU, else it is lost.
MIN_FACE_IOU = 0.5

#: (key, label, lower-is-better note) in table order.
SMOOTH_ALBEDO_SIGMA = 3.0  # texels at 256: the DRN's training render blurs the FAN albedo so (drn_v3.json)

METRICS = (
    ("l1_pca", "fidelity L1, PCA albedo"),
    ("l1_fan", "fidelity L1, FAN albedo"),
    ("l1_ratio", "fidelity L1 ratio FAN/PCA"),
    ("lpips_pca", "fidelity LPIPS, PCA albedo"),
    ("lpips_fan", "fidelity LPIPS, FAN albedo"),
    ("lpips_ratio", "fidelity LPIPS ratio FAN/PCA"),
    ("occlusion_fan", "occlusion ratio, FAN (all kinds)"),
    ("occlusion_fan_sunglasses", "  sunglasses"),
    ("occlusion_fan_hand", "  hand"),
    ("occlusion_fan_hair", "  hair"),
    ("occlusion_pca", "occlusion ratio, PCA (all kinds)"),
    ("occlusion_lowpass_fan", "occlusion ratio above the detail, FAN"),
    ("occlusion_lowpass_pca", "occlusion ratio above the detail, PCA"),
    ("lighting_fan", "lighting ratio, FAN"),
    ("lighting_pca", "lighting ratio, PCA"),
    ("completion_fan", "completion L1, FAN (|yaw|>30)"),
    ("completion_pca", "completion L1, PCA (|yaw|>30)"),
    ("completion_texture", "completion L1, texture (|yaw|>30)"),
    ("completion_ratio", "completion ratio FAN/texture"),
    ("image_occlusion_fan", "image-space occlusion ratio, FAN (all kinds)"),
    ("image_occlusion_fan_sunglasses", "  sunglasses"),
    ("image_occlusion_fan_hand", "  hand"),
    ("image_occlusion_fan_phone", "  phone"),
    ("image_occlusion_pca", "image-space occlusion ratio, PCA (all kinds)"),
    ("photo_consistency_fan", "photo consistency ratio, FAN (all edits)"),
    *((f"photo_consistency_fan_{name}", f"  {name.replace('_', ' ')}") for name in PERTURBATIONS),
    ("photo_consistency_pca", "photo consistency ratio, PCA (all edits)"),
    ("sharpness_fan", "sharpness ratio, FAN (1 = as sharp as the photo)"),
    ("sharpness_pca", "sharpness ratio, PCA"),
    ("sharpness_corr_fan", "sharpness correlation, FAN"),
    ("sharpness_corr_pca", "sharpness correlation, PCA"),
    ("detail_fine_std_mm", "DRN detail: fine-scale std, mm (clean skin)"),
    ("detail_p99_mm", "DRN detail: 99th percentile |r_d|, mm"),
    ("e_grad_drn", "E_grad with the DRN (visible skin)"),
    ("e_grad_no_drn", "E_grad without the DRN"),
    ("e_grad_ratio", "E_grad ratio with/without DRN"),
    ("e_grad_smooth_ratio", "E_grad ratio with/without DRN, detail-free albedo"),
    ("image_occlusion_displacement_mm", "mean |r_d| inside image occluders, mm"),
    ("nme", "landmark NME % (68)"),
    ("nme_inner", "landmark NME % (51, no jaw)"),
    ("nme_jaw", "landmark NME % (jaw 17)"),
    ("seconds", "seconds per photo (all metrics)"),
    ("seconds_image_occlusion", "  of which image-space occlusion"),
    ("seconds_photo_consistency", "  of which photo consistency"),
)
#: The keys the photo-level metrics (extra reconstructions per photo) fill in.
PHOTO_METRIC_KEYS = (
    "image_occlusion_fan", "image_occlusion_pca", "image_occlusion_lost", "image_occlusion_displacement_mm",
    *(f"image_occlusion_{a}_{k}" for k in IMAGE_KINDS
      for a in ("fan", "pca", "texels", "displacement_mm", "relief_added_mm")),
    "photo_consistency_fan", "photo_consistency_pca", "photo_consistency_lost",
    *(f"photo_consistency_{a}_{n}" for n in PERTURBATIONS for a in ("fan", "pca")),
    "seconds_image_occlusion", "seconds_photo_consistency",
)


def albedos_for_texture(fl, maps, texture: np.ndarray):
    """(FAN albedo, PCA albedo, SH) that the pipeline `fl` gives for `texture` on `maps`' layout.

    The same computation as `FaceLift.reconstruct` after unwrapping (`FaceLift.predict_uv`):
    low-frequency PCA albedo and SH (B-Net or the robust least squares) and FAN; zero outside
    the layout."""
    pred = fl.predict_uv(dataclasses.replace(maps, texture=np.asarray(texture, np.float32)), details=False)
    return pred.albedo, pred.albedo_pca, pred.sh


def dense_normal_map(rec, details: bool = True) -> np.ndarray:
    """Camera-space normals (R, R, 3) of the dense mesh, with DRN details or without
    (`Reconstruction.uv_normals`)."""
    return rec.uv_normals(details)


def random_light(rng: np.random.Generator) -> np.ndarray:
    """A random coloured directional light plus ambient, (3, 9)."""
    d = light_direction(rng.uniform(-70, 70), rng.uniform(-30, 50))
    colour = 1.0 + rng.uniform(-0.15, 0.15, 3)
    return directional_light_sh(d, colour, intensity=1.0, ambient=rng.uniform(0.2, 0.6))


def relight(texture: np.ndarray, normals: np.ndarray, sh_old: np.ndarray, sh_new: np.ndarray, region: np.ndarray):
    """texture * E_new / E_old (E_new scaled to E_old's mean brightness over `region`), applied
    on `region` (elsewhere the texture is kept).

    Returns (relit texture clipped to [0, 1], valid region: `region` where E_old > MIN_IRRADIANCE
    and nothing clipped)."""
    e_old = irradiance(normals, sh_old).astype(np.float64)
    e_new = irradiance(normals, sh_new).astype(np.float64)
    ok = region & (e_old > MIN_IRRADIANCE).all(-1)
    if ok.any():
        e_new = e_new * (e_old[ok].mean(0) / np.maximum(e_new[ok].mean(0), 1e-6))
    ratio = np.where(ok[..., None], e_new / np.where(e_old > MIN_IRRADIANCE, e_old, 1.0), 1.0)
    relit = texture * ratio
    valid = ok & (relit <= 1.0).all(-1) & (relit >= 0.0).all(-1)
    return np.clip(relit, 0, 1).astype(np.float32), valid


def photo_seed(seed: int, path) -> int:
    """The seed of one photo's random draws (occluders, lights): from the run's seed and the file name."""
    return (int(seed) * 1_000_003 + zlib.crc32(Path(str(path)).name.encode())) % (2 ** 32)


def _box_iou(a, b) -> float:
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - iw * ih
    return float(iw * ih / union) if union > 0 else 0.0


def _rerun(fl, rec, photo: np.ndarray):
    """The whole pipeline on an edited copy of `rec`'s photo; None when the face is no longer
    found there (no face, or the face found does not overlap the original's box)."""
    from ..errors import FaceLiftError

    try:
        out = fl.reconstruct(photo, face_index=rec.face_index)
    except FaceLiftError:
        return None
    return out if _box_iou(out.face.box, rec.face.box) >= MIN_FACE_IOU else None


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` grown by a disk of `radius` texels."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), disk).astype(bool)


def _visible(maps) -> np.ndarray:
    return (maps.visibility > 0.5) & maps.mask


def image_occlusion(fl, rec, rng: np.random.Generator, kinds=IMAGE_KINDS) -> dict:
    """Occluders drawn into the photo at the face's landmarks, the whole pipeline rerun on each
    edited photo: mean |A(occluded) - A(clean)| / mean |T(occluded) - T(clean)| over the texels
    the occluder covers (its image-space coverage through the edited photo's fit > 0.5) that are
    visible in both reconstructions; FAN and PCA albedo, per kind and their mean. With details, per
    kind: the mean |r_d| there (mm), and the relief the occluder adds around itself, mean |r_d| of the
    occluded photo less the clean photo's on the ring of RELIEF_BAND texels around it (mm; > 0: it is
    carved in with raised sides, < 0: the details fade there). (Not mean |r_d(occluded) - r_d(clean)|:
    the edited photo's fit differs a little, by 1-2 % in scale, which alone changes texel-scale relief
    far from the occluder by about its own size.)"""
    out: dict = {}
    vis0 = _visible(rec.maps)
    fan_r, pca_r, disp_r, lost = [], [], [], 0
    for kind in kinds:
        occ = make_image_occluder(kind, rec.image.shape, rec.face.points, rng)
        out.update({f"image_occlusion_fan_{kind}": None, f"image_occlusion_pca_{kind}": None,
                    f"image_occlusion_texels_{kind}": 0, f"image_occlusion_displacement_mm_{kind}": None,
                    f"image_occlusion_relief_added_mm_{kind}": None})
        rec1 = _rerun(fl, rec, paste_in_photo(rec.image, occ))
        if rec1 is None:
            lost += 1
            continue
        seen = vis0 & _visible(rec1.maps)
        region = (occluder_uv_coverage(occ, rec1) > 0.5) & seen
        out[f"image_occlusion_texels_{kind}"] = int(region.sum())
        if region.sum() < MIN_OCCLUDED_TEXELS:
            continue
        out[f"image_occlusion_fan_{kind}"] = M.change_ratio(rec1.albedo, rec.albedo, rec1.texture, rec.texture, region)
        out[f"image_occlusion_pca_{kind}"] = M.change_ratio(rec1.albedo_pca, rec.albedo_pca, rec1.texture,
                                                            rec.texture, region)
        if rec1.displacement_scale > 0:  # does the occluder become geometry?
            out[f"image_occlusion_displacement_mm_{kind}"] = float(np.abs(rec1.displacement[region]).mean() * 1e3)
            ring = _dilate(region, RELIEF_BAND) & ~region & seen
            if ring.any():
                out[f"image_occlusion_relief_added_mm_{kind}"] = float(
                    (np.abs(rec1.displacement[ring]).mean() - np.abs(rec.displacement[ring]).mean()) * 1e3)
            disp_r.append(out[f"image_occlusion_displacement_mm_{kind}"])
        fan_r.append(out[f"image_occlusion_fan_{kind}"])
        pca_r.append(out[f"image_occlusion_pca_{kind}"])
    out.update(image_occlusion_fan=_nanmean(fan_r), image_occlusion_pca=_nanmean(pca_r), image_occlusion_lost=lost,
               image_occlusion_displacement_mm=_nanmean(disp_r))
    return out


def photo_consistency(fl, rec, rng: np.random.Generator, skin: np.ndarray | None = None,
                      perturbations=PERTURBATIONS) -> dict:
    """The photo under each of `perturbations` (exposure, white balance, gamma, JPEG, half size,
    cast shadow), the whole pipeline rerun: mean |A(edited) - A(original)| / mean
    |T(edited) - T(original)| on the texels that are visible skin in both; per edit and their
    mean, FAN and PCA albedo (0 = the albedo ignores the edit, 1 = it copies it)."""
    model = fl.face_model
    skin = skin_mask(model, rec.maps) if skin is None else skin
    out: dict = {}
    fan_r, pca_r, lost = [], [], 0
    for name in perturbations:
        photo = perturb(rec.image, name, rec.face.points, rng)
        out.update({f"photo_consistency_fan_{name}": None, f"photo_consistency_pca_{name}": None})
        rec1 = _rerun(fl, rec, photo)
        if rec1 is None:
            lost += 1
            continue
        region = skin & skin_mask(model, rec1.maps)
        out[f"photo_consistency_fan_{name}"] = M.change_ratio(rec1.albedo, rec.albedo, rec1.texture, rec.texture,
                                                              region)
        out[f"photo_consistency_pca_{name}"] = M.change_ratio(rec1.albedo_pca, rec.albedo_pca, rec1.texture,
                                                              rec.texture, region)
        fan_r.append(out[f"photo_consistency_fan_{name}"])
        pca_r.append(out[f"photo_consistency_pca_{name}"])
    out.update(photo_consistency_fan=_nanmean(fan_r), photo_consistency_pca=_nanmean(pca_r),
               photo_consistency_lost=lost)
    return out


def clean_skin(rec, skin: np.ndarray) -> np.ndarray:
    """Visible skin texels (`skin`) that the robust low-frequency stage trusts
    (skin_confidence > CLEAN_SKIN_CONFIDENCE; all of `skin` where there is no confidence)."""
    conf = getattr(rec, "skin_confidence", None)
    return skin if conf is None else skin & (np.asarray(conf) > CLEAN_SKIN_CONFIDENCE)


def sharpness_metrics(rec, skin: np.ndarray) -> dict:
    """std and correlation of the albedos' fine-scale detail against the texture's on clean skin
    (metrics.sharpness), FAN and PCA."""
    region = clean_skin(rec, skin)
    out = {"sharpness_texels": int(region.sum())}
    for k, albedo in (("fan", rec.albedo), ("pca", rec.albedo_pca)):
        out[f"sharpness_{k}"], out[f"sharpness_corr_{k}"] = M.sharpness(albedo, rec.texture, region)
    return out


def detail_metrics(rec, skin: np.ndarray) -> dict:
    """The DRN's details: fine-scale standard deviation (sigma 3 texels) and 99th percentile of
    |r_d| in mm on clean skin, and E_grad (eq. 9) of the FAN albedo x SH shading against the
    photo's texture on visible skin, with and without the details' normals."""
    region = clean_skin(rec, skin)
    out: dict[str, Any] = dict.fromkeys(("detail_fine_std_mm", "detail_p99_mm", "e_grad_drn", "e_grad_no_drn", "e_grad_ratio",
                         "e_grad_smooth_drn", "e_grad_smooth_no_drn", "e_grad_smooth_ratio"))
    R = rec.albedo.shape[0]
    out["image_min_side"] = int(min(rec.image.shape[:2]))
    if rec.displacement_scale <= 0 or region.sum() < 2:
        return out
    out["detail_fine_std_mm"] = M.fine_scale_std(rec.displacement, region) * 1e3
    out["detail_p99_mm"] = float(np.percentile(np.abs(rec.displacement[region]), 99) * 1e3)
    shading = irradiance(dense_normal_map(rec), rec.sh)
    shading_smooth = irradiance(dense_normal_map(rec, details=False), rec.sh)
    with_details = np.clip(rec.shown_albedo("fan", True) * shading, 0, 1)
    without = np.clip(rec.shown_albedo("fan", False) * shading_smooth, 0, 1)
    out["e_grad_drn"] = M.gradient_l1(rec.texture, with_details, skin)
    out["e_grad_no_drn"] = M.gradient_l1(rec.texture, without, skin)
    # the same with a detail-free albedo (the FAN albedo blurred as in training): how much of the
    # photo's fine-scale gradients the details' geometry and occlusion explain
    smooth = np.stack([masked_gaussian_blur(rec.albedo[..., c], rec.maps.mask, SMOOTH_ALBEDO_SIGMA * R / 256)
                       for c in range(3)], -1)
    occ = rec.detail_occlusion()[..., None]
    out["e_grad_smooth_drn"] = M.gradient_l1(rec.texture, np.clip(smooth * occ * shading, 0, 1), skin)
    out["e_grad_smooth_no_drn"] = M.gradient_l1(rec.texture, np.clip(smooth * shading_smooth, 0, 1), skin)
    for name, a, b in (("e_grad_ratio", "e_grad_drn", "e_grad_no_drn"),
                       ("e_grad_smooth_ratio", "e_grad_smooth_drn", "e_grad_smooth_no_drn")):
        if out[b] and np.isfinite(out[b]):
            out[name] = out[a] / out[b]
    return out


def evaluate_reconstruction(fl, rec, *, rng: np.random.Generator, lpips=None, ground_truth=None,
                            photo_metrics: bool = True) -> dict:
    """Every metric for one reconstruction (a flat dict of floats/None; see METRICS).

    `photo_metrics`: also the image-space occlusion and photo-consistency metrics, which rerun
    the whole pipeline on edited copies of the photo (len(IMAGE_KINDS) + len(PERTURBATIONS)
    reconstructions more); off, their keys are None."""
    model = fl.face_model
    maps = rec.maps
    tex = maps.texture
    skin = skin_mask(model, maps)
    out: dict = {"skin_texels": int(skin.sum())}

    # 1. photometric fidelity: the albedo a render with details uses x SH shading (with details)
    # against the photo, on visible skin
    shading = irradiance(dense_normal_map(rec), rec.sh).astype(np.float32)
    renders = {k: np.clip(rec.shown_albedo(k, details=True) * shading, 0, 1) for k in ("pca", "fan")}
    for k, img in renders.items():
        out[f"l1_{k}"] = M.masked_l1(img, tex, skin)
        out[f"lpips_{k}"] = lpips(img, tex, skin) if lpips is not None else None
    for name in ("l1", "lpips"):
        a, b = out[f"{name}_fan"], out[f"{name}_pca"]
        out[f"{name}_ratio"] = a / b if a is not None and b not in (None, 0) and np.isfinite(b) else None

    # 2. occlusion robustness
    fan0, pca0, sh0 = albedos_for_texture(fl, maps, tex)
    visible = (maps.visibility > 0.5) & maps.mask
    R = tex.shape[0]
    # the same ratio above the skin's detail (metrics.lowpass_change_ratio), which the smooth PCA albedo
    # is never charged for; the clean maps' low-pass computed once
    lowpass = lambda x: M.lowpass(x, visible)  # noqa: E731
    clean = {"fan": fan0, "pca": pca0}
    clean_lowpass = {"fan": lowpass(fan0), "pca": lowpass(pca0), "texture": lowpass(tex)}
    for kind in KINDS:
        alpha, colour = make_occluder(kind, model, R, rng)
        occ, region = paste(tex, alpha, colour, visible)
        fan1, pca1, _ = albedos_for_texture(fl, maps, occ)
        occ_lowpass = lowpass(occ)
        for a, albedo in (("fan", fan1), ("pca", pca1)):
            out[f"occlusion_{a}_{kind}"] = M.change_ratio(albedo, clean[a], occ, tex, region)
            out[f"occlusion_lowpass_{a}_{kind}"] = M.change_ratio(lowpass(albedo), clean_lowpass[a], occ_lowpass,
                                                                  clean_lowpass["texture"], region)
    for name in ("occlusion", "occlusion_lowpass"):
        for a in ("fan", "pca"):
            out[f"{name}_{a}"] = _nanmean([out[f"{name}_{a}_{k}"] for k in KINDS])

    # 3. lighting invariance
    relit, valid = relight(tex, maps.normal, sh0, random_light(rng), visible)  # the whole visible face
    valid &= skin  # scored on skin
    fan1, pca1, _ = albedos_for_texture(fl, maps, relit)
    out["lighting_fan"] = M.change_ratio(fan1, fan0, relit, tex, valid)
    out["lighting_pca"] = M.change_ratio(pca1, pca0, relit, tex, valid)

    # 4. completion of self-occluded regions
    yaw, pitch, roll = rec.fit.yaw_pitch_roll()
    out.update(yaw=float(yaw), pitch=float(pitch), roll=float(roll))
    keys = ("completion_fan", "completion_pca", "completion_texture", "completion_ratio")
    out.update(dict.fromkeys(keys))
    if abs(yaw) > COMPLETION_MIN_YAW:
        static = static_skin_mask(model, R)
        hidden = M.self_occluded(visible, maps.mask) & static & static[:, ::-1]
        if hidden.sum() >= 16:
            out["completion_fan"] = M.mirror_error(rec.albedo, hidden)
            out["completion_pca"] = M.mirror_error(rec.albedo_pca, hidden)
            out["completion_texture"] = M.mirror_error(tex, hidden)
            t = out["completion_texture"]
            out["completion_ratio"] = out["completion_fan"] / t if t and np.isfinite(t) else None
            out["completion_texels"] = int(hidden.sum())

    # 5. landmarks
    out.update(nme=None, nme_inner=None, nme_jaw=None)
    if ground_truth is not None:
        pred = model_landmarks68(rec.fit.project(model))
        out["nme"] = M.nme(pred, ground_truth)
        out["nme_inner"] = M.nme(pred, ground_truth, INNER)
        out["nme_jaw"] = M.nme(pred, ground_truth, REGIONS["jaw"])

    # 6. sharpness: fine-scale detail of the albedos against the texture's, on clean skin
    out.update(sharpness_metrics(rec, skin))
    out.update(detail_metrics(rec, skin))

    # 7.-8. photo-level metrics: the whole pipeline rerun on edited photos (drawn after every
    # other metric's random numbers, so those do not depend on this switch)
    out.update(dict.fromkeys(PHOTO_METRIC_KEYS))
    if photo_metrics:
        t = time.perf_counter()
        out.update(image_occlusion(fl, rec, rng))
        out["seconds_image_occlusion"] = time.perf_counter() - t
        t = time.perf_counter()
        out.update(photo_consistency(fl, rec, rng, skin=skin))
        out["seconds_photo_consistency"] = time.perf_counter() - t
    return {k: _clean(v) for k, v in out.items()}


def _nanmean(values):
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _clean(v):
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def evaluate_paths(fl, paths, *, seed: int = 0, lpips=None, progress: bool = False, root=None,
                   photo_metrics: bool = True) -> dict:
    """Run the pipeline and every metric on `paths`. Returns {"images": [...], "failures": [...],
    "summary": {key: {mean, median, count}}}; a failing photo is listed, never raised.
    `photo_metrics=False` skips the metrics that rerun the pipeline on edited photos."""
    from ..errors import FaceLiftError

    images, failures = [], []
    it = paths
    if progress:
        from tqdm import tqdm

        it = tqdm(paths, unit="image")
    for p in it:
        name = str(Path(p).relative_to(root)) if root is not None and Path(root).is_dir() else str(p)
        t = time.perf_counter()
        try:
            rec = fl.reconstruct(p)
            m = evaluate_reconstruction(fl, rec, rng=np.random.default_rng(photo_seed(seed, p)), lpips=lpips,
                                        ground_truth=load_ground_truth(p), photo_metrics=photo_metrics)
            m["seconds"] = time.perf_counter() - t
            images.append({"image": name, "n_faces": len(rec.faces), **m})
        except FaceLiftError as exc:
            failures.append({"image": name, "error": type(exc).__name__, "message": str(exc)})
        except Exception as exc:  # noqa: BLE001 - an evaluation must survive any one photo
            failures.append({"image": name, "error": type(exc).__name__, "message": f"unexpected: {exc}"})
    summary = {key: M.summarise([im.get(key) for im in images]) for key, _ in METRICS}
    return {"images": images, "failures": failures, "summary": summary,
            "counts": {"photos": len(paths), "evaluated": len(images), "failed": len(failures)}}


def format_table(result: dict) -> str:
    rows = [("metric", "mean", "median", "count")]
    for key, label in METRICS:
        s = result["summary"].get(key) or {"count": 0}
        if s["count"] == 0:
            rows.append((label, "-", "-", "0"))
        else:
            rows.append((label, f"{s['mean']:.4f}", f"{s['median']:.4f}", str(s["count"])))
    w = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{w}}  {r[1]:>8}  {r[2]:>8}  {r[3]:>5}" for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    c = result["counts"]
    lines.append(f"{c['evaluated']} of {c['photos']} photos evaluated, {c['failed']} failed")
    for f in result["failures"]:
        lines.append(f"FAILED {f['image']}: {f['error']}: {f['message']}")
    return "\n".join(lines)


def format_markdown(result: dict) -> str:
    rows = ["| metric | mean | median | count |", "|---|---:|---:|---:|"]
    for key, label in METRICS:
        s = result["summary"].get(key) or {"count": 0}
        label = label.strip() if not label.startswith("  ") else "&nbsp;&nbsp;" + label.strip()
        label = label.replace("|", "\\|")
        if s["count"] == 0:
            rows.append(f"| {label} | - | - | 0 |")
        else:
            rows.append(f"| {label} | {s['mean']:.4f} | {s['median']:.4f} | {s['count']} |")
    c = result["counts"]
    rows.append("")
    rows.append(f"{c['evaluated']} of {c['photos']} photos evaluated, {c['failed']} failed.")
    if result["failures"]:
        rows.append("")
        rows.extend(f"- failed: `{f['image']}`: {f['error']}: {f['message']}" for f in result["failures"])
    return "\n".join(rows)
