"""Evaluate FaceLift on a folder of photos: per-image metrics, a summary, failures.

`evaluate_image` computes every metric of docs/EVALUATION.md for one reconstruction;
`evaluate_paths` runs it over photos (failures are recorded, never raised); `format_table`
prints the summary. All randomness (occluders, lights) is seeded from `seed` and the file name.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from pathlib import Path

import numpy as np

from ..shading import directional_light_sh, irradiance, light_direction
from . import metrics as M
from .landmarks68 import INNER, REGIONS, load_ground_truth, model_landmarks68
from .masks import skin_mask, static_skin_mask
from .occluders import KINDS, make_occluder, paste

#: Faces turned further than this (degrees of yaw) are scored for completion.
COMPLETION_MIN_YAW = 30.0
#: Texels whose estimated irradiance is below this are left out of the relighting ratio.
MIN_IRRADIANCE = 0.05
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}

#: (key, label, lower-is-better note) in table order.
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
    ("lighting_fan", "lighting ratio, FAN"),
    ("lighting_pca", "lighting ratio, PCA"),
    ("completion_fan", "completion L1, FAN (|yaw|>30)"),
    ("completion_pca", "completion L1, PCA (|yaw|>30)"),
    ("completion_texture", "completion L1, texture (|yaw|>30)"),
    ("completion_ratio", "completion ratio FAN/texture"),
    ("nme", "landmark NME % (68)"),
    ("nme_inner", "landmark NME % (51, no jaw)"),
    ("nme_jaw", "landmark NME % (jaw 17)"),
    ("seconds", "seconds per photo (all metrics)"),
)


def collect_images(folder, limit: int | None = None) -> list[Path]:
    """Image files under `folder` (recursive, sorted); with `limit`, `limit` of them evenly
    spaced over the sorted list (so a subset covers every sub-folder), deterministic."""
    root = Path(folder)
    if root.is_file():
        return [root]
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None and 0 < limit < len(paths):
        idx = np.unique(np.linspace(0, len(paths) - 1, limit).round().astype(int))
        paths = [paths[i] for i in idx]
    return paths


def albedos_for_texture(fl, maps, texture: np.ndarray):
    """(FAN albedo, PCA albedo, SH) that the pipeline `fl` gives for `texture` on `maps`' layout.

    The same computation as `FaceLift.reconstruct` after unwrapping (`FaceLift.predict_uv`):
    low-frequency PCA albedo and SH (B-Net or the robust least squares) and FAN; zero outside
    the layout."""
    pred = fl.predict_uv(dataclasses.replace(maps, texture=np.asarray(texture, np.float32)), details=False)
    return pred.albedo, pred.albedo_pca, pred.sh


def detail_normal_map(rec) -> np.ndarray:
    """Camera-space normals (R, R, 3) of the dense mesh with DRN details (the smooth normals where
    the mesh grid differs from the map resolution)."""
    normals = rec.maps.normal.copy()
    mesh = rec.dense_mesh(details=True)
    R = normals.shape[0]
    if mesh.resolution == R:
        normals.reshape(-1, 3)[mesh.grid_index] = mesh.normals @ np.asarray(rec.fit.rotation, np.float32).T
    return normals


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


def _seed(seed: int, path) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(Path(str(path)).name.encode())) % (2 ** 32)


def evaluate_reconstruction(fl, rec, *, rng: np.random.Generator, lpips=None, ground_truth=None) -> dict:
    """Every metric for one reconstruction (a flat dict of floats/None; see METRICS)."""
    model = fl.face_model
    maps = rec.maps
    tex = maps.texture
    skin = skin_mask(model, maps)
    out: dict = {"skin_texels": int(skin.sum())}

    # 1. photometric fidelity: albedo x SH shading (with details) against the photo, on visible skin
    shading = irradiance(detail_normal_map(rec), rec.sh).astype(np.float32)
    renders = {"pca": np.clip(rec.albedo_pca * shading, 0, 1), "fan": np.clip(rec.albedo * shading, 0, 1)}
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
    fan_r, pca_r = [], []
    for kind in KINDS:
        alpha, colour = make_occluder(kind, model, R, rng)
        occ, region = paste(tex, alpha, colour, visible)
        fan1, pca1, _ = albedos_for_texture(fl, maps, occ)
        out[f"occlusion_fan_{kind}"] = M.change_ratio(fan1, fan0, occ, tex, region)
        out[f"occlusion_pca_{kind}"] = M.change_ratio(pca1, pca0, occ, tex, region)
        fan_r.append(out[f"occlusion_fan_{kind}"])
        pca_r.append(out[f"occlusion_pca_{kind}"])
    out["occlusion_fan"] = _nanmean(fan_r)
    out["occlusion_pca"] = _nanmean(pca_r)

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
    return {k: _clean(v) for k, v in out.items()}


def _nanmean(values):
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _clean(v):
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def evaluate_paths(fl, paths, *, seed: int = 0, lpips=None, progress: bool = False, root=None) -> dict:
    """Run the pipeline and every metric on `paths`. Returns {"images": [...], "failures": [...],
    "summary": {key: {mean, median, count}}}; a failing photo is listed, never raised."""
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
            m = evaluate_reconstruction(fl, rec, rng=np.random.default_rng(_seed(seed, p)), lpips=lpips,
                                        ground_truth=load_ground_truth(p))
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
