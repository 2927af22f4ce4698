"""Build checkpoints/face_model.safetensors: MediaPipe landmarks of the UTKFace training
photos -> Procrustes-aligned PCA shape model on MediaPipe's topology, with its UV layout.

    python training/build_face_model.py [--limit N] [--workers 2] [--n-shape 40]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from facelift.errors import NoFaceError
from facelift.face_model.build import build_face_model
from facelift.image import IMAGE_SUFFIXES
from facelift.landmarks import LandmarkDetector

REPO = Path(__file__).resolve().parents[1]

_detector = None


def _init_worker():
    global _detector
    _detector = LandmarkDetector(max_faces=1)


def _landmarks(path: Path):
    try:
        image = np.asarray(Image.open(path).convert("RGB"))
        return _detector.detect(image)[0].points
    except (NoFaceError, OSError):
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/faces/utkface/train")
    ap.add_argument("--out", type=Path, default=REPO / "checkpoints/face_model.safetensors")
    ap.add_argument("--n-shape", type=int, default=40)
    ap.add_argument("--uv-method", default="lscm", choices=("lscm", "cylindrical"))
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        sys.exit(f"no images under {args.data}")

    start = time.time()
    with mp.get_context("spawn").Pool(args.workers, initializer=_init_worker) as pool:
        results = list(tqdm(pool.imap(_landmarks, paths, chunksize=32), total=len(paths), desc="landmarks"))
    found = np.array([r for r in results if r is not None], np.float32)
    failed = [p.name for p, r in zip(paths, results) if r is None]
    detect_s = time.time() - start

    model = build_face_model(found, n_shape=args.n_shape, uv_method=args.uv_method, config={
        "shape_data": f"UTKFace train ({args.data.name}), MediaPipe FaceMesh landmarks",
        "n_images": len(paths),
        "n_images_used": int(len(found)),
        "n_images_failed": len(failed),
    })
    model.save(args.out)
    cfg = model.config
    print(json.dumps({k: cfg[k] for k in ("n_images_used", "n_images_failed", "n_shape",
                                          "shape_explained_variance_total", "uv_method", "uv_distortion")},
                     indent=1))
    print(f"failed: {failed[:20]}{' ...' if len(failed) > 20 else ''}")
    print(f"landmarks {detect_s:.0f} s, total {time.time() - start:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
