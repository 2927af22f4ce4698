"""How much relief E_grad allows (issue 13): the DRN's displacement scaled by a few factors on the
photos of an evaluation folder, and for each factor the fine-scale std of r_d and E_grad with a
detail-free albedo, with/without the details (`facelift.evaluation.runner.detail_metrics`).

    python training/detail_amplitude.py ../shared/data/faces/eval --min-side 450 \
        --json docs/evaluation/detail_amplitude.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> dict:
    from PIL import Image
    from tqdm import tqdm

    from facelift import FaceLift
    from facelift.errors import FaceLiftError
    from facelift.evaluation.masks import skin_mask
    from facelift.evaluation.runner import collect_images, detail_metrics

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("--weights", default="checkpoints")
    ap.add_argument("--scales", default="0.25,0.5,1,1.5", help="comma-separated displacement factors")
    ap.add_argument("--min-side", type=int, default=0, help="only photos whose shorter side is at least this")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    scales = [float(s) for s in args.scales.split(",")]
    fl = FaceLift.from_pretrained(args.weights)
    paths = []
    for p in collect_images(args.images):
        try:
            with Image.open(p) as im:
                if min(im.size) >= args.min_side:
                    paths.append(p)
        except OSError:
            continue
    rows: dict[float, list] = {s: [] for s in scales}
    for p in tqdm(paths, unit="image"):
        try:
            rec = fl.reconstruct(p)
        except FaceLiftError:
            continue
        skin = skin_mask(fl.face_model, rec.maps)
        shipped = rec.displacement
        for s in scales:
            # an empty mesh cache: normals and occlusion are rebuilt from the scaled displacement
            scaled = dataclasses.replace(rec, displacement=shipped * s, _meshes={})
            m = detail_metrics(scaled, skin)
            if m["e_grad_smooth_ratio"] is not None:
                rows[s].append((m["e_grad_smooth_ratio"], m["detail_fine_std_mm"], m["detail_p99_mm"]))
    out = {"images": str(args.images), "photos": len(paths), "weights": str(args.weights),
           "scales": {str(s): {"photos": len(v), "e_grad_smooth_ratio": float(np.mean([r[0] for r in v])),
                               "fine_std_mm": float(np.mean([r[1] for r in v])),
                               "p99_mm": float(np.mean([r[2] for r in v]))} for s, v in rows.items() if v}}
    for s, v in out["scales"].items():
        print(f"x{s}: E_grad ratio (detail-free albedo) {v['e_grad_smooth_ratio']:.3f}, "
              f"fine-scale std {v['fine_std_mm']:.3f} mm, p99 {v['p99_mm']:.2f} mm ({v['photos']} photos)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
