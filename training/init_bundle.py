"""Assemble a FaceLift bundle: a face model plus FAN/DRN (and optionally B-Net) weights.

Without trained network folders it writes freshly initialised networks (seeded), so the
pipeline runs end to end before training; the bundle config records which parts are
trained. Usage:

    python training/init_bundle.py --face-model checkpoints/face_model.safetensors --out checkpoints
    python training/init_bundle.py --fan runs/fan/final --drn runs/drn/final --out checkpoints
    python training/init_bundle.py --fan F --drn D --bnet B --half bnet --out checkpoints

`--half NAME` stores that network's weights as float16 (half the size); loading casts them
back to the float32 parameters, so the pipeline runs in float32 as usual.
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
    ap.add_argument("--drn-detail-gate", type=float, default=None, metavar="G",
                    help="the DRN's detail_gate: its details fade where the FAN's gate is below G (DRN docstring)")
    ap.add_argument("--half", action="append", default=[], choices=("fan", "drn", "bnet"),
                    help="store this network's weights as float16 (repeatable)")
    ap.add_argument("--bnet-half", action="store_true", help="same as --half bnet")
    ap.add_argument("--record", action="append", default=[], metavar="NET=FOLDER",
                    help="also record the training run of a network that is not shipped (e.g. bnet=runs/bnet/final)")
    ap.add_argument("--training-info", help="JSON file merged into config.json under 'training'")
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
            if key == "drn" and args.drn_detail_gate is not None:
                net = net.with_config(detail_gate=args.drn_detail_gate)
        elif key == "bnet":
            continue
        else:
            net = cls(resolution=args.resolution)
            trained[key] = False
        if (out / key).is_dir():
            shutil.rmtree(out / key)
        net.save_pretrained(str(out / key))
        if key in args.half or (key == "bnet" and args.bnet_half):
            _store_half(out / key / "model.safetensors")
    if "bnet" not in trained and (out / "bnet").is_dir():
        shutil.rmtree(out / "bnet")

    config = {
        **DEFAULT_BUNDLE_CONFIG,
        "format_version": BUNDLE_FORMAT_VERSION,
        "library_version": __version__,
        "components": {"face_model": "face_model.safetensors", "bnet": "bnet" if "bnet" in trained else None,
                       "fan": "fan", "drn": "drn"},
        "trained": trained,
    }
    training = {}
    runs = [("bnet", args.bnet), ("fan", args.fan), ("drn", args.drn)] + [tuple(r.split("=", 1)) for r in args.record]
    for key, src in runs:
        record = _training_record(Path(src)) if src else None
        if record:
            training[key] = record
    if args.training_info:
        training.update(json.loads(Path(args.training_info).read_text()))
    if training:
        config["training"] = training
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote bundle {out}: trained={trained}")


def _training_record(folder: Path) -> dict | None:
    """Steps, settings and final losses of a run's final/ folder (summary.json, train_config.json)."""
    summary, cfg = folder / "summary.json", folder / "train_config.json"
    if not summary.is_file():
        return None
    s = json.loads(summary.read_text())
    c = json.loads(cfg.read_text()) if cfg.is_file() else {}
    keep = ("steps", "epochs_completed", "samples_seen", "dataset_size", "wall_seconds", "processes", "device")
    record = {k: s[k] for k in keep if k in s}
    record.update({k: c[k] for k in ("batch_size", "lr", "resolution") if k in c})
    record["loss_weights"] = {k: v for k, v in c.items() if k.startswith("w_")}
    settings = ("lighting", "real_samples", "percep_resolution", "displacement_unit_scale", "max_rate", "ngf", "ndf",
                "flip_features", "detail_loss")
    record["settings"] = {k: c[k] for k in settings if k in c}
    record["final_losses"] = {k: round(float(v), 6) for k, v in s.get("final_losses", {}).items()}
    log = folder.parent / "losses.csv"
    if log.is_file():  # the last step alone is noisy: the mean of the last 100 steps
        import csv

        with open(log) as f:
            rows = list(csv.DictReader(f))[-100:]
        keys = [k for k in (rows[0] if rows else {}) if k not in ("step", "epoch", "seconds")]
        record["final_losses_mean_last_100_steps"] = {
            k: round(sum(float(r[k]) for r in rows) / len(rows), 6) for k in keys}
    return record


def _store_half(path: Path) -> None:
    """Rewrite a safetensors file with its float32 tensors as float16."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    save_file({k: (v.half() if v.dtype == torch.float32 else v).contiguous() for k, v in tensors.items()},
              str(path), metadata={"format": "pt", "stored_dtype": "float16"})


if __name__ == "__main__":
    main()
