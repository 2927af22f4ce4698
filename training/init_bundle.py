"""Assemble a FaceLift bundle: a face model plus FAN/DRN (and optionally B-Net) weights.

Without trained network folders it writes freshly initialised networks (seeded), so the
pipeline runs end to end before training; the bundle config records which parts are
trained. Usage:

    python training/init_bundle.py --face-model checkpoints/face_model.safetensors --out checkpoints
    python training/init_bundle.py --fan runs/fan/final --drn runs/drn/final --out checkpoints
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from facelift import __version__
from facelift.face_model import FaceModel
from facelift.models import DRN, FAN, BNet
from facelift.pipeline import BUNDLE_FORMAT_VERSION, DEFAULT_BUNDLE_CONFIG


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--face-model", default="checkpoints/face_model.safetensors")
    ap.add_argument("--out", default="checkpoints")
    ap.add_argument("--fan", help="trained FAN folder (config.json + model.safetensors)")
    ap.add_argument("--drn", help="trained DRN folder")
    ap.add_argument("--bnet", help="trained B-Net folder (omit to estimate lighting by least squares)")
    ap.add_argument("--resolution", type=int, default=128, help="network resolution for fresh networks")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    face_model_path = out / "face_model.safetensors"
    if Path(args.face_model).resolve() != face_model_path.resolve():
        shutil.copyfile(args.face_model, face_model_path)
    FaceModel.load(face_model_path)  # validate

    trained = {}
    torch.manual_seed(args.seed)
    for key, cls, src in (("fan", FAN, args.fan), ("drn", DRN, args.drn), ("bnet", BNet, args.bnet)):
        if src:
            net = cls.from_pretrained(src)
            trained[key] = True
        elif key == "bnet":
            continue
        else:
            net = cls(resolution=args.resolution)
            trained[key] = False
        net.save_pretrained(str(out / key))

    config = {
        **DEFAULT_BUNDLE_CONFIG,
        "format_version": BUNDLE_FORMAT_VERSION,
        "library_version": __version__,
        "components": {"face_model": "face_model.safetensors", "bnet": "bnet" if "bnet" in trained else None,
                       "fan": "fan", "drn": "drn"},
        "trained": trained,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote bundle {out}: trained={trained}")


if __name__ == "__main__":
    main()
