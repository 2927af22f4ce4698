"""Fit each UV sample's SH lighting (and PCA albedo coefficients) with the face model's albedo
PCA, as FaceLift does at inference without a B-Net, and store them next to the shards.

Default (`--method least_squares`): facelift.albedo.fit_albedo_and_light, written to
lighting_ls.npz (names, sh (N, 3, 9), coefficients (N, K)); FAN and DRN training light their
renders with it under `--set lighting=least_squares`.

`--method robust`: facelift.albedo.fit_low_frequency (the pipeline's robust stage), written to
lighting_robust.npz with, in addition, the outlier model (outlier_coefficients, outlier_sh)
and the residual scale, from which training recomputes the skin confidence of any texture
(FAN v2, `--set recipe=v2`).

    python training/fit_lighting.py --data /work/data/uv256/train [--method robust] [--workers 2]

`--robust-prior-weight` sets the robust stage's stiff-model prior (default: the library's, 3e-4 since
2026-12-05; the shipped networks were trained on fits at 1e-4, which training/run_shipped.sh passes).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facelift.albedo import fit_albedo_and_light, fit_low_frequency
from facelift.face_model import FaceModel
from facelift.training.data import LIGHTING_FILE, ROBUST_LIGHTING_FILE, UVDataset, write_json

REPO = Path(__file__).resolve().parents[1]

_state = {}


def _fit(i: int):
    ds, model, method, fit_args = _state["ds"], _state["model"], _state["method"], _state["fit_args"]
    item = ds[i]
    tex, nrm = (item[k].permute(1, 2, 0).numpy() for k in ("texture", "normal"))
    vis = item["visibility"][0].numpy() > 0.5
    if method == "least_squares":
        coeffs, _, sh = fit_albedo_and_light(model, tex, nrm, vis)
        return i, {"sh": sh, "coefficients": coeffs}
    fit = fit_low_frequency(model, tex, nrm, vis, **fit_args)
    return i, {"sh": fit.sh, "coefficients": fit.coefficients, "outlier_sh": fit.outlier_sh,
               "outlier_coefficients": fit.outlier_coefficients, "scale": np.float32(fit.scale),
               "skin_fraction": np.float32(fit.confidence[vis].mean())}


def _init(threads: int):
    import torch

    torch.set_num_threads(threads)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="shard folder (index.json)")
    ap.add_argument("--face-model", default=str(REPO / "checkpoints/face_model.safetensors"))
    ap.add_argument("--method", choices=("least_squares", "robust"), default="least_squares")
    ap.add_argument("--robust-prior-weight", type=float, default=None,
                    help="the robust stage's stiff-model prior (default: fit_low_frequency's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="processes (forked; they share the loaded shards)")
    args = ap.parse_args(argv)
    _init(args.threads)
    t0 = time.time()
    model = FaceModel.load(args.face_model)
    ds = UVDataset(args.data)
    fit_args = {} if args.robust_prior_weight is None else {"robust_prior_weight": args.robust_prior_weight}
    _state.update(ds=ds, model=model, method=args.method, fit_args=fit_args)
    results: dict[str, list] = {}
    with tqdm(total=len(ds), desc=f"{args.method} lighting", unit="sample", mininterval=5) as bar:
        if args.workers > 1:
            with mp.get_context("fork").Pool(args.workers, initializer=_init, initargs=(args.threads,)) as pool:
                it = pool.imap_unordered(_fit, range(len(ds)), chunksize=16)
                for i, r in it:
                    for k, v in r.items():
                        results.setdefault(k, [None] * len(ds))[i] = v
                    bar.update(1)
        else:
            for i in range(len(ds)):
                for k, v in _fit(i)[1].items():
                    results.setdefault(k, [None] * len(ds))[i] = v
                bar.update(1)
    arrays = {k: np.stack(v).astype(np.float32) for k, v in results.items()}
    name = LIGHTING_FILE if args.method == "least_squares" else ROBUST_LIGHTING_FILE
    out = Path(args.data) / name
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, names=np.array(ds.names, dtype=str), **arrays)
    tmp.replace(out)
    stats = {"face_model": str(args.face_model), "method": args.method, "samples": len(ds),
             "n_albedo": model.n_albedo, "light_brightness": model.light_brightness,
             "robust_prior_weight": args.robust_prior_weight,
             "wall_seconds": round(time.time() - t0, 1)}
    if "scale" in arrays:
        stats.update(scale_median=float(np.median(arrays["scale"])),
                     skin_fraction_median=float(np.median(arrays["skin_fraction"])))
    write_json(out.with_suffix(".json"), stats)
    print(f"wrote {out} ({len(ds)} samples, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
