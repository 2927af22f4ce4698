"""Learn the low-frequency PCA albedo model (eq. 2) from the UV training textures and store
its mean and basis in the face model file (see facelift/training/albedo_pca.py).

    python training/build_albedo_model.py --data /work/data/uv128/train \
        --face-model checkpoints/face_model.safetensors --out checkpoints/face_model.safetensors \
        --components 80 --resolution 64 --figure checkpoints/albedo_pca.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from facelift.face_model import FaceModel
from facelift.training.albedo_pca import downsample, learn_albedo_pca, with_albedo
from facelift.training.data import UVDataset

REPO = Path(__file__).resolve().parents[1]


def save_figure(model: FaceModel, path: Path, n_show: int = 6) -> None:
    from PIL import Image, ImageDraw

    mask = model.texel_map(model.albedo_resolution).mask
    A = model.albedo_resolution
    scale = 3

    def tile(chw):
        img = np.clip(chw.transpose(1, 2, 0), 0, 1) * mask[..., None]
        img = (img * 255 + 0.5).astype(np.uint8)
        return np.kron(img, np.ones((scale, scale, 1), np.uint8))

    cols = [tile(model.albedo_mean)]
    labels = ["mean"]
    for k in range(min(n_show, model.n_albedo)):
        for sign in (-2, 2):
            cols.append(tile(model.albedo_mean + sign * model.albedo_basis[k]))
            labels.append(f"PC{k + 1} {'+' if sign > 0 else '-'}2sd")
    W = A * scale
    canvas = Image.new("RGB", (W * len(cols), W + 14), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (c, lab) in enumerate(zip(cols, labels)):
        canvas.paste(Image.fromarray(c), (i * W, 14))
        draw.text((i * W + 3, 1), lab, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/data/uv128/train")
    ap.add_argument("--face-model", default=str(REPO / "checkpoints/face_model.safetensors"))
    ap.add_argument("--out", default=str(REPO / "checkpoints/face_model.safetensors"))
    ap.add_argument("--components", type=int, default=80)
    ap.add_argument("--resolution", type=int, default=64, help="albedo model resolution A")
    ap.add_argument("--limit", type=int, default=None, help="use the first N samples")
    ap.add_argument("--outer-iterations", type=int, default=3)
    ap.add_argument("--white-light", type=float, default=10.0,
                    help="weight of the white-light prior on the per-image lighting (0: per-channel, free)")
    ap.add_argument("--figure", default=str(REPO / "checkpoints/albedo_pca.png"))
    ap.add_argument("--stats", default=None, help="JSON with the explained variance (default: next to --out)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = FaceModel.load(args.face_model)
    ds = UVDataset(args.data, limit=args.limit)
    tex, vis, nrm = downsample(ds.texture.float() / 255, ds.visibility.float(), ds.normal.float(), args.resolution)
    mask = model.texel_map(args.resolution).mask
    n = tex.shape[0]
    k = min(args.components, n - 1)
    print(f"{n} samples at {args.resolution}x{args.resolution}, K={k}")
    res = learn_albedo_pca(tex, vis, nrm, mask, n_components=k, outer_iterations=args.outer_iterations,
                           white_light=args.white_light)
    light = "white-light prior" if res.brightness is not None else "free per-channel"
    desc = {
        "albedo_model": (f"PCA of de-lit UTKFace UV textures (missing-data EM-PCA with mirror filling, "
                         f"alternating with per-image SH lighting, {light}); basis scaled by std"),
        "albedo_light_brightness": None if res.brightness is None else round(res.brightness, 6),
        "albedo_white_light_weight": float(args.white_light),
        "albedo_data": f"{args.data} ({n} samples)",
        "n_albedo": int(k),
        "albedo_resolution": int(args.resolution),
        "albedo_explained_variance": [round(float(v), 6) for v in res.explained_variance_ratio],
        "albedo_explained_variance_total": round(float(res.explained_variance_ratio.sum()), 6),
        "albedo_fit_l1_history": [round(v, 5) for v in res.history],
    }
    out_model = with_albedo(model, res, desc)
    out_model.save(args.out)
    FaceModel.load(args.out)  # validate
    if args.figure:
        save_figure(out_model, Path(args.figure))
    stats = {**desc, "wall_seconds": round(time.time() - t0, 1)}
    stats_path = Path(args.stats) if args.stats else Path(args.out).with_suffix(".albedo_stats.json")
    stats_path.write_text(json.dumps(stats, indent=2) + "\n")
    cum = np.cumsum(res.explained_variance_ratio)
    print(f"wrote {args.out}: K={k}, explained {cum[-1]:.1%} (10: {cum[min(9, k - 1)]:.1%}, "
          f"40: {cum[min(39, k - 1)]:.1%}); {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
