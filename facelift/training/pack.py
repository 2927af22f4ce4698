"""What a run on a lent GPU machine carries: a subset of the UV training samples and the frozen
VGG-16 of the perceptual loss, small enough to travel with the checkout (64 MiB in all there).

- :func:`pack_samples` / :func:`unpack_samples`: N samples of a shard folder (data.py) as one
  ``.npz`` of JPEG textures (quality 90), bit-packed visibility and int8 normals at
  ``normal_resolution`` (64: 1.1 degrees mean error, 0.7 % mean shading error), with the rows of
  ``lighting_robust.npz``; unpacking writes an ordinary shard folder that ``UVDataset`` reads
  (no position maps: the FAN does not use them). About 16 kB a sample against 0.8 MB.
- :func:`pack_vgg` / :func:`unpack_vgg`: VGG-16's convolution weights as int8 with one scale per
  output channel (14.7 MB against 58.9 MB in float32), biases in float32.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from .data import ROBUST_FIELDS, ROBUST_LIGHTING_FILE, ShardIndex, write_json, write_shard

PACK_VERSION = 1


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def pack_samples(src: str | os.PathLike, dst: str | os.PathLike, count: int, seed: int = 0,
                 normal_resolution: int = 64, jpeg_quality: int = 90) -> int:
    """Pack `count` samples of the shard folder `src`, drawn evenly at random (`seed`), into the
    file `dst`; returns its size in bytes. Needs ``lighting_robust.npz`` in `src`."""
    import torch
    import torch.nn.functional as F

    index = ShardIndex.load(src)
    if count < 1 or count > index.count:
        raise ValueError(f"count must be in 1..{index.count}, got {count}")
    rows = np.sort(np.random.default_rng(seed).choice(index.count, size=count, replace=False))
    with np.load(Path(src) / ROBUST_LIGHTING_FILE) as z:
        robust = {k: z[k][rows] for k in ROBUST_FIELDS}
        robust_names = z["names"][rows]
    jpegs, vis, normals, names, mask = [], [], [], [], None
    offset = 0
    for s in index.shards:
        wanted = rows[(rows >= offset) & (rows < offset + s["count"])] - offset
        if len(wanted):
            with np.load(index.root / s["file"]) as z:
                tex, v, n = z["texture"][wanted], z["visibility"][wanted], z["normal"][wanted].astype(np.float32)
                names += [str(x) for x in z["names"][wanted]]
            inside = (n ** 2).sum(-1) > 0.5
            mask = inside.any(0) if mask is None else mask | inside.any(0)
            jpegs += [_jpeg(t, jpeg_quality) for t in tex]
            vis += [np.packbits(x.astype(bool)) for x in v]
            small = F.interpolate(torch.from_numpy(n).permute(0, 3, 1, 2), size=(normal_resolution,) * 2, mode="area")
            normals.append(np.clip(np.round(small.numpy() * 127), -127, 127).astype(np.int8))
        offset += s["count"]
    if mask is None or list(robust_names) != names:
        raise ValueError(f"{ROBUST_LIGHTING_FILE} does not match the shards in {src}")
    lengths = np.array([len(j) for j in jpegs], dtype=np.int64)
    np.savez_compressed(dst, version=PACK_VERSION, resolution=index.resolution, names=np.array(names, dtype=str),
                        jpeg=np.frombuffer(b"".join(jpegs), dtype=np.uint8), jpeg_lengths=lengths,
                        visibility=np.stack(vis), normal=np.concatenate(normals), mask=np.packbits(mask),
                        **{f"robust_{k}": v for k, v in robust.items()})
    return Path(dst).stat().st_size


def unpack_samples(packed: str | os.PathLike, dst: str | os.PathLike, per_shard: int = 512) -> int:
    """Write the samples of `packed` as a shard folder `dst` (index.json, shards,
    lighting_robust.npz); returns the sample count."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    with np.load(packed) as z:
        if int(z["version"]) != PACK_VERSION:
            raise ValueError(f"{packed}: pack version {int(z['version'])}, this code reads {PACK_VERSION}")
        R = int(z["resolution"])
        names = [str(x) for x in z["names"]]
        blob, lengths = z["jpeg"].tobytes(), z["jpeg_lengths"]
        vis_bits, normal_q = z["visibility"], z["normal"]
        mask = np.unpackbits(z["mask"])[: R * R].reshape(R, R).astype(bool)
        robust = {k: z[f"robust_{k}"] for k in ROBUST_FIELDS}
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    shards = []
    for first in range(0, len(names), per_shard):
        ids = range(first, min(first + per_shard, len(names)))
        n = torch.from_numpy(normal_q[first:ids.stop].astype(np.float32) / 127)
        n = F.interpolate(n, size=(R, R), mode="bilinear", align_corners=False)
        n = (n / n.norm(dim=1, keepdim=True).clamp_min(1e-6)).permute(0, 2, 3, 1).numpy() * mask[..., None]
        samples = []
        for k, i in enumerate(ids):
            vis = np.unpackbits(vis_bits[i])[: R * R].reshape(R, R)
            tex = np.asarray(Image.open(io.BytesIO(blob[starts[i]:starts[i + 1]])).convert("RGB")) * vis[..., None]
            samples.append({"texture": tex.astype(np.uint8), "visibility": vis, "normal": n[k].astype(np.float16)})
        fname = f"shard_{first // per_shard:05d}.npz"
        write_shard(dst / fname, samples, names[first:ids.stop])
        shards.append({"file": fname, "count": len(samples)})
    write_json(dst / "index.json", {"resolution": R, "shards": shards, "count": len(names), "source": str(packed)})
    np.savez(dst / ROBUST_LIGHTING_FILE, names=np.array(names, dtype=str), **robust)
    return len(names)


def pack_vgg(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """VGG-16 ``features.*`` weights (safetensors) as int8 per output channel; returns the size."""
    from safetensors.numpy import load_file, save_file

    out = {}
    for key, w in load_file(str(src)).items():
        if not key.startswith("features."):
            continue
        w = w.astype(np.float32)
        if w.ndim == 4:
            scale = np.abs(w).reshape(len(w), -1).max(1).clip(1e-12) / 127
            out[key + ".int8"] = np.round(w / scale[:, None, None, None]).astype(np.int8)
            out[key + ".scale"] = scale.astype(np.float32)
        else:
            out[key] = w
    save_file(out, str(dst))
    return Path(dst).stat().st_size


def unpack_vgg(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """The float32 safetensors file ``VGG16Features.from_safetensors`` reads, from `pack_vgg`'s."""
    from safetensors.numpy import load_file, save_file

    packed = load_file(str(src))
    out = {}
    for key, v in packed.items():
        if key.endswith(".int8"):
            name = key[: -len(".int8")]
            out[name] = v.astype(np.float32) * packed[name + ".scale"][:, None, None, None]
        elif not key.endswith(".scale"):
            out[key] = v
    save_file(out, str(dst))
