"""The image-space occlusion protocol of `facelift evaluate` (`facelift.evaluation.runner.image_occlusion`:
an occluder drawn into the photo, the whole pipeline rerun, the albedo's change under it over the
texture's) on occluders outside the scored kinds (`facelift.evaluation.image_occluders.EXTRA_KINDS`,
e.g. a microphone in front of the mouth), so the reported figures stay comparable while the pipeline
is checked on occluders neither its training nor its evaluation was shaped on (a microphone, clear
eyeglasses). Per kind, mean over the photos: the FAN's and the PCA albedo's ratio, the DRN's relief
under it (mm) and the relief it adds on a ring of `RELIEF_BAND` texels around it (mm).

    python training/score_extra_occluders.py ../shared/data/faces/eval --json OUT [--weights BUNDLE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from facelift import FaceLift
    from facelift.evaluation.image_occluders import EXTRA_KINDS, GENERATORS
    from facelift.evaluation.runner import collect_images, image_occlusion, photo_seed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", help="folder of photos or one photo")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--kinds", default=",".join(EXTRA_KINDS), help=f"comma-separated, of {sorted(GENERATORS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in GENERATORS]
    if unknown or not kinds:
        ap.error(f"--kinds takes names from {sorted(GENERATORS)}, got {args.kinds!r}")
    fl = FaceLift.from_pretrained(args.weights)
    rows, failures = [], []
    try:
        for p in collect_images(args.images):
            try:
                rec = fl.reconstruct(p)
                rows.append({"image": str(p), **image_occlusion(fl, rec, np.random.default_rng(photo_seed(args.seed, p)),
                                                                kinds=kinds)})
            except Exception as exc:  # noqa: BLE001 - one bad photo does not end the run
                failures.append({"image": str(p), "error": f"{type(exc).__name__}: {exc}"})
    finally:
        fl.close()
    summary = {}
    for kind in kinds:
        for a in ("fan", "pca", "displacement_mm", "relief_added_mm"):
            v = [r[f"image_occlusion_{a}_{kind}"] for r in rows if r.get(f"image_occlusion_{a}_{kind}") is not None]
            summary[f"{a}_{kind}"] = {"mean": float(np.mean(v)) if v else None, "count": len(v)}
    for k, v in summary.items():
        mean = "-" if v["mean"] is None else f"{v['mean']:.4f}"
        print(f"{k:28s} {mean}  ({v['count']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"weights": args.weights, "seed": args.seed, "kinds": kinds,
                                               "summary": summary, "images": rows, "failures": failures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
