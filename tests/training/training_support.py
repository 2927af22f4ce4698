"""Paths and helpers shared by the training tests. A module of its own (not `from conftest
import ...`): when tests/training and tests/models are collected together, the name
`conftest` in sys.modules is whichever conftest.py was imported last."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "training") not in sys.path:
    sys.path.insert(0, str(REPO / "training"))  # the scripts import as modules (evaluate, init_bundle, ...)
FACE_MODEL = REPO / "checkpoints" / "face_model.safetensors"
VGG = "weights/vgg16_imagenet_lpips.safetensors"  # in ../shared (conftest's shared_file)
STEPS = 8  # overfitting steps on 4 samples (one batch of 4 per step)


def train(kind, tiny, out, steps, *extra):
    """facelift.training.loop.main(kind) on the tiny data: batch 4, 128x128, 2 threads."""
    from facelift.training.loop import main as train_main

    return train_main(kind, ["--data", str(tiny["data"]), "--out", str(out), "--resolution", "128",
                             "--batch-size", "4", "--max-steps", str(steps), "--threads", "2",
                             "--set", f"face_model={tiny['face_model']}", "--set", "limit=4",
                             "--set", "checkpoint_every=1000", *extra])
