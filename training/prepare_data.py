"""Prepare UV training samples: photos -> texture I_t(UV), visibility, normal and position maps.

Reuses FaceLift's own stages (detector, fit_shape, unwrap; no FAN/DRN). Writes shards of
`--shard-size` samples with an `index.json` and a `failures.json` report (photos with no
face etc. are listed, not fatal). Resumable: finished shards are skipped.

    python training/prepare_data.py --split train --out /work/data/uv128 --workers 2
    python training/prepare_data.py --split val   --out /work/data/uv128 --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facelift.face_model import FaceModel
from facelift.training.data import list_images, write_json, write_shard

REPO = Path(__file__).resolve().parents[1]

_maker = None


def _init_worker(face_model: str, resolution: int):
    global _maker
    import torch

    torch.set_num_threads(1)
    from facelift.training.data import SampleMaker

    _maker = SampleMaker(FaceModel.load(face_model), resolution=resolution)


def _process(path: str):
    try:
        return path, _maker(path), None
    except Exception as exc:  # any failure is reported, never fatal
        return path, None, f"{type(exc).__name__}: {exc}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/faces/utkface")
    ap.add_argument("--split", default="train", help="sub-folder of --data (train or val)")
    ap.add_argument("--out", type=Path, required=True, help="output root; shards go to OUT/SPLIT/")
    ap.add_argument("--face-model", default=str(REPO / "checkpoints/face_model.safetensors"))
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N photos")
    args = ap.parse_args(argv)

    src = args.data / args.split
    paths = list_images(src)
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        sys.exit(f"no images under {src}")
    out = args.out / args.split
    out.mkdir(parents=True, exist_ok=True)
    chunks = [paths[i:i + args.shard_size] for i in range(0, len(paths), args.shard_size)]
    fail_path = out / "failures.json"
    failures = {}
    if fail_path.is_file():
        import json

        failures = json.loads(fail_path.read_text()).get("failures", {})
    todo = [i for i in range(len(chunks)) if not (out / f"shard_{i:05d}.npz").is_file()]
    done_images = sum(len(chunks[i]) for i in range(len(chunks)) if i not in todo)
    start = time.time()
    bar = tqdm(total=len(paths), initial=done_images, desc=f"prepare {args.split}", unit="img", mininterval=5)
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, initializer=_init_worker, initargs=(args.face_model, args.resolution)) as pool:
        for i in todo:
            samples, names = [], []
            for path, sample, err in pool.imap(_process, [str(p) for p in chunks[i]], chunksize=4):
                rel = str(Path(path).relative_to(src))
                if sample is None:
                    failures[rel] = err
                else:
                    samples.append(sample)
                    names.append(rel)
                bar.update(1)
            write_shard(out / f"shard_{i:05d}.npz", samples, names)
            write_json(fail_path, {"count": len(failures), "failures": failures})
    bar.close()
    shards = []
    for i in range(len(chunks)):
        with np.load(out / f"shard_{i:05d}.npz") as z:
            shards.append({"file": f"shard_{i:05d}.npz", "count": int(len(z["names"]))})
    n = sum(s["count"] for s in shards)
    fails = {k: v for k, v in failures.items()}
    write_json(fail_path, {"count": len(fails), "failures": fails})
    write_json(out / "index.json", {
        "resolution": args.resolution, "split": args.split, "source": str(src), "photos": len(paths),
        "count": n, "failed": len(fails), "shards": shards,
        "face_model": str(args.face_model), "wall_seconds_last_run": round(time.time() - start, 1)})
    print(f"{args.split}: {n} samples from {len(paths)} photos, {len(fails)} failed "
          f"({time.time() - start:.0f} s this run) -> {out}")


if __name__ == "__main__":
    main()
