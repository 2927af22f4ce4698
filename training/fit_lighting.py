"""Fit each UV sample's SH lighting (and PCA albedo coefficients) by least squares with the
face model's albedo PCA, as FaceLift does at inference without a B-Net
(facelift.albedo.fit_albedo_and_light), and store them next to the shards as
lighting_ls.npz (names, sh (N, 3, 9), coefficients (N, K)).

FAN and DRN training can light their renders with it (`--set lighting=least_squares`), so
that what they learn matches the lighting the shipped pipeline estimates.

    python training/fit_lighting.py --data /work/data/uv128/train --face-model checkpoints/face_model.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facelift.albedo import fit_albedo_and_light  # noqa: E402
from facelift.face_model import FaceModel  # noqa: E402
from facelift.training.data import LIGHTING_FILE, UVDataset, write_json  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="shard folder (index.json)")
    ap.add_argument("--face-model", default=str(REPO / "checkpoints/face_model.safetensors"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = FaceModel.load(args.face_model)
    ds = UVDataset(args.data)
    sh = np.zeros((len(ds), 3, 9), np.float32)
    coeffs = np.zeros((len(ds), model.n_albedo), np.float32)
    for i in tqdm(range(len(ds)), desc="least-squares lighting", unit="sample", mininterval=5):
        item = ds[i]
        tex, nrm = (item[k].permute(1, 2, 0).numpy() for k in ("texture", "normal"))
        coeffs[i], _, sh[i] = fit_albedo_and_light(model, tex, nrm, item["visibility"][0].numpy() > 0.5)
    out = Path(args.data) / LIGHTING_FILE
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, names=np.array(ds.names, dtype=str), sh=sh, coefficients=coeffs)
    tmp.replace(out)
    write_json(Path(args.data) / "lighting_ls.json", {
        "face_model": str(args.face_model), "samples": len(ds), "n_albedo": model.n_albedo,
        "light_brightness": model.light_brightness, "wall_seconds": round(time.time() - t0, 1)})
    print(f"wrote {out} ({len(ds)} samples, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
