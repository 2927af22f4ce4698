"""UV training samples: photo -> landmarks -> fit -> unwrap, stored in shards with an index.

A *sample* holds the maps of one photo at one resolution R (docs/ARCHITECTURE.md):

    texture    (R, R, 3) uint8   I_t(UV), zero where not visible
    visibility (R, R)    uint8   1 where the texel is seen in the photo
    normal     (R, R, 3) float16 unit camera-space normals (zero outside the layout)
    position   (R, R, 3) float16 camera-space points in metres
    mask       (R, R)    bool    texels inside the layout (same for every sample)

A *shard* is one uncompressed ``.npz`` holding N samples stacked on the first axis plus
``names`` (photo paths relative to the data root). ``index.json`` next to the shards lists
them; ``failures.json`` lists the photos that gave no sample and why. An optional
``lighting_ls.npz`` (``training/fit_lighting.py``) holds each sample's SH lighting fitted by
least squares with the face model's albedo PCA, as the pipeline does without a B-Net.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..face_model import FaceModel
from ..image import IMAGE_SUFFIXES

LIGHTING_FILE = "lighting_ls.npz"
ROBUST_LIGHTING_FILE = "lighting_robust.npz"
#: per-sample arrays of lighting_robust.npz that a dataset item carries (item key = file key + "_lf")
ROBUST_FIELDS = ("sh", "coefficients", "outlier_sh", "outlier_coefficients", "scale")
FIELDS = ("texture", "visibility", "normal", "position")


def list_images(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class SampleMaker:
    """Turns one photo into a UV sample with the library's own stages (no FAN/DRN)."""

    def __init__(self, model: FaceModel, resolution: int = 128, min_visible: float = 0.15):
        from ..landmarks import LandmarkDetector

        self.model = model
        self.resolution = int(resolution)
        self.min_visible = float(min_visible)
        self.detector = LandmarkDetector(max_faces=1, find_small_faces=False)
        self.mask = model.texel_map(self.resolution).mask

    def __call__(self, path: str | os.PathLike) -> dict:
        """The sample dict, or raises an exception whose message says why it failed."""
        from ..fitting import fit_shape
        from ..image import load_image
        from ..unwrap import unwrap

        rgb = load_image(path)
        face = self.detector.detect(rgb)[0]
        model = self.model
        fit = fit_shape(model, face.points[: model.n_vertices, :2])
        verts_cam = fit.vertices_model(model) @ fit.rotation.T
        maps = unwrap(rgb, verts_cam, fit.scale, fit.translation, model, resolution=self.resolution)
        vis_fraction = float(maps.visibility[maps.mask].mean())
        if not np.isfinite(maps.texture).all() or vis_fraction < self.min_visible:
            raise ValueError(f"only {vis_fraction:.0%} of the layout is visible")
        return {
            "texture": (np.clip(maps.texture, 0, 1) * 255 + 0.5).astype(np.uint8),
            "visibility": (maps.visibility > 0.5).astype(np.uint8),
            "normal": maps.normal.astype(np.float16),
            "position": maps.position.astype(np.float16),
        }


def write_shard(path: str | os.PathLike, samples: list[dict], names: list[str]) -> None:
    """Write samples atomically (a temp file renamed into place): a partial shard never exists.
    ``position`` may be left out (a packed subset, facelift.training.pack, has none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {k: np.stack([s[k] for s in samples]) for k in FIELDS if k in samples[0]} if samples else {}
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, names=np.array(names, dtype=str), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass
class ShardIndex:
    root: Path
    resolution: int
    shards: list[dict]  # {"file", "count"}

    @classmethod
    def load(cls, root: str | os.PathLike) -> "ShardIndex":
        root = Path(root)
        info = json.loads((root / "index.json").read_text())
        return cls(root, int(info["resolution"]), info["shards"])

    @property
    def count(self) -> int:
        return sum(s["count"] for s in self.shards)


class UVDataset(torch.utils.data.Dataset):
    """All samples of a shard folder in memory, as float32 CHW tensors.

    item: {"texture" (3,R,R) in [0,1], "visibility" (1,R,R), "normal" (3,R,R),
    "mask" (1,R,R)}. ``resolution`` resamples (bilinear; visibility/mask by nearest).
    ``limit`` keeps the first N samples. ``with_lighting`` adds "sh_ls" (3, 9) and
    "coefficients_ls" (K,) from
    ``lighting_ls.npz`` (an error if that file is missing or does not match the shards);
    ``with_lighting="robust"`` adds instead the robust stage's fit from ``lighting_robust.npz``
    ("sh_lf", "coefficients_lf", "outlier_sh_lf", "outlier_coefficients_lf", "scale_lf").
    ``select(name) -> bool`` keeps only some samples (read shard by shard, so the others never
    take memory); ``limit`` then applies to what is kept.
    """

    def __init__(self, root: str | os.PathLike, resolution: int | None = None, limit: int | None = None,
                 with_position: bool = False, with_lighting: bool | str = False, select=None):
        index = ShardIndex.load(root)
        fields = FIELDS if with_position else FIELDS[:3]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in fields}
        names, rows, offset = [], [], 0
        for s in index.shards:
            if s["count"] == 0:
                continue
            with np.load(index.root / s["file"]) as z:
                shard_names = list(z["names"])
                keep = [i for i, nm in enumerate(shard_names) if select is None or select(str(nm))]
                if keep:
                    for k in fields:
                        arr = z[k]
                        parts[k].append(arr if len(keep) == len(shard_names) else arr[keep])
                    names += [shard_names[i] for i in keep]
                    rows += [offset + i for i in keep]
                offset += len(shard_names)
            if limit and len(names) >= limit:
                break
        n = len(names) if not limit else min(limit, len(names))
        if n == 0:
            raise ValueError(f"no samples in {root}" + (" pass the selection" if select is not None else ""))
        self.names = names[:n]
        self.rows = np.asarray(rows[:n])  # each kept sample's row in the shards (and the lighting files)
        self.texture = torch.from_numpy(np.concatenate(parts["texture"])[:n]).permute(0, 3, 1, 2).contiguous()
        self.visibility = torch.from_numpy(np.concatenate(parts["visibility"])[:n])[:, None].contiguous()
        self.normal = torch.from_numpy(np.concatenate(parts["normal"])[:n]).permute(0, 3, 1, 2).contiguous()
        self.position = (torch.from_numpy(np.concatenate(parts["position"])[:n]).permute(0, 3, 1, 2).contiguous()
                         if with_position else None)
        mask = torch.zeros(1, 1, *self.normal.shape[-2:], dtype=torch.bool)
        for start in range(0, len(self.normal), 256):  # in chunks: a float copy of every normal map is GBs
            chunk = self.normal[start:start + 256].float().pow(2).sum(1, keepdim=True) > 0.5
            mask |= chunk.any(0, keepdim=True)
        self.mask = mask
        self.source_resolution = index.resolution
        self.resolution = int(resolution or index.resolution)
        self.sh_ls = None
        self.robust = None
        if with_lighting == "robust":
            path = Path(root) / ROBUST_LIGHTING_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: run training/fit_lighting.py --method robust --data {root}")
            with np.load(path) as z:
                if not _names_match(z["names"], self.rows, self.names):
                    raise ValueError(f"{path} does not match the shards in {root}; run training/fit_lighting.py "
                                     "--method robust again")
                self.robust = {f"{k}_lf": torch.from_numpy(z[k][self.rows].astype(np.float32)) for k in ROBUST_FIELDS}
        elif with_lighting:
            path = Path(root) / LIGHTING_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: run training/fit_lighting.py --data {root}")
            with np.load(path) as z:
                names_ls, sh, coefficients = list(z["names"]), z["sh"], z["coefficients"]
            if not _names_match(names_ls, self.rows, self.names):
                raise ValueError(f"{path} does not match the shards in {root}; run training/fit_lighting.py again")
            self.sh_ls = torch.from_numpy(sh[self.rows].astype(np.float32))
            self.coefficients_ls = torch.from_numpy(coefficients[self.rows].astype(np.float32))

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        tex = self.texture[i].float() / 255.0
        vis = self.visibility[i].float()
        nrm = self.normal[i].float()
        mask = self.mask[0].float()
        if self.resolution != self.source_resolution:
            size = (self.resolution, self.resolution)
            f = torch.nn.functional.interpolate
            tex = f(tex[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
            nrm = f(nrm[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
            nrm = nrm / nrm.norm(dim=0, keepdim=True).clamp_min(1e-6)
            vis = f(vis[None], size=size, mode="nearest")[0]
            mask = f(mask[None], size=size, mode="nearest")[0]
            nrm = nrm * mask
        item = {"texture": tex, "visibility": vis, "normal": nrm, "mask": mask, "index": i}
        if self.sh_ls is not None:
            item["sh_ls"] = self.sh_ls[i]
            item["coefficients_ls"] = self.coefficients_ls[i]
        if self.robust is not None:
            item.update({k: v[i] for k, v in self.robust.items()})
        if self.position is not None:
            pos = self.position[i].float()
            if self.resolution != self.source_resolution:
                pos = torch.nn.functional.interpolate(pos[None], size=(self.resolution,) * 2, mode="bilinear",
                                                      align_corners=False)[0] * mask
            item["position"] = pos
        return item


def _names_match(file_names, rows, names) -> bool:
    file_names = list(file_names)
    return len(rows) == 0 or (int(rows.max()) < len(file_names) and [file_names[i] for i in rows] == list(names))


def utkface_age(name: str) -> int | None:
    """The age UTKFace writes first in its file names ("61_0_1_2017....jpg.chip.jpg"), or None."""
    head = Path(str(name)).name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


def age_selection(min_age: int, keep_younger: int = 0):
    """A `UVDataset` select: every face of at least `min_age` (the ones with wrinkles to learn
    from) and every `keep_younger`-th younger one (0: none); names without an age are kept."""
    counter = {"n": 0}

    def select(name: str) -> bool:
        age = utkface_age(name)
        if age is None or age >= min_age:
            return True
        counter["n"] += 1
        return bool(keep_younger) and counter["n"] % keep_younger == 0

    return select


def synthetic_shards(root: str | os.PathLike, n: int = 8, resolution: int = 128, seed: int = 0,
                     per_shard: int = 4, model: FaceModel | None = None) -> Path:
    """A tiny fake dataset for tests: random smooth albedos lit by random SH on the normal
    map of ``model``'s mean shape (a hemisphere without a model), random visibility cut-offs."""
    from ..geometry.sh import irradiance

    rng = np.random.default_rng(seed)
    R = resolution
    yy, xx = np.meshgrid((np.arange(R) + 0.5) / R * 2 - 1, -((np.arange(R) + 0.5) / R * 2 - 1), indexing="xy")
    x, y = yy, xx  # x right, y up
    r2 = x**2 + y**2
    inside = r2 < 0.9
    z = np.sqrt(np.clip(1 - r2, 0.05, 1))
    normal = np.stack([x, y, z], -1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    normal[~inside] = 0
    position = normal * 0.08
    if model is not None:
        from ..geometry.normals import vertex_normals

        tm = model.texel_map(R)
        inside = tm.mask
        normal = tm.interpolate(vertex_normals(model.mean_shape, model.triangles))
        normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
        normal[~inside] = 0
        position = tm.interpolate(model.mean_shape)
    samples, names = [], []
    for k in range(n):
        base = rng.uniform(0.35, 0.75, 3)
        albedo = base[None, None] * (1 + 0.15 * np.sin(3 * x[..., None] + rng.uniform(0, 6, 3))
                                     * np.cos(2 * y[..., None]))
        sh = np.zeros((3, 9))
        sh[:, 0] = 2 / np.sqrt(np.pi) * rng.uniform(0.8, 1.1)
        sh[:, 1:4] = rng.normal(0, 0.2, 3)[None]
        tex = np.clip(albedo * irradiance(normal, sh), 0, 1)
        vis = inside & (x < rng.uniform(0.3, 1.0))
        tex[~vis] = 0
        samples.append({"texture": (tex * 255 + 0.5).astype(np.uint8), "visibility": vis.astype(np.uint8),
                        "normal": normal.astype(np.float16), "position": position.astype(np.float16)})
        names.append(f"synthetic_{k:03d}.png")
    root = Path(root)
    shards = []
    for i in range(0, n, per_shard):
        fname = f"shard_{i // per_shard:05d}.npz"
        write_shard(root / fname, samples[i:i + per_shard], names[i:i + per_shard])
        shards.append({"file": fname, "count": len(names[i:i + per_shard])})
    write_json(root / "index.json", {"resolution": R, "shards": shards, "count": n, "source": "synthetic"})
    return root
