"""Fixtures for the training smoke tests: a tiny synthetic UV dataset on the real face
model's layout and a face model with a small learned albedo PCA (all generated here)."""

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "training"))
FACE_MODEL = REPO / "checkpoints" / "face_model.safetensors"
VGG = REPO.parent / "shared" / "weights" / "vgg16_imagenet_lpips.safetensors"


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{'root', 'data', 'face_model'}: 8 synthetic 128x128 samples in 2 shards and a face
    model whose albedo PCA (K=4) was learned from them by training/build_albedo_model.py."""
    import build_albedo_model

    from facelift.face_model import FaceModel
    from facelift.training.data import synthetic_shards

    root = tmp_path_factory.mktemp("tiny")
    synthetic_shards(root / "train", n=8, resolution=128, model=FaceModel.load(FACE_MODEL))
    fm = root / "face_model.safetensors"
    build_albedo_model.main(["--data", str(root / "train"), "--face-model", str(FACE_MODEL), "--out", str(fm),
                             "--components", "4", "--resolution", "64", "--figure", str(root / "pca.png"),
                             "--threads", "1"])
    return {"root": root, "data": root / "train", "face_model": fm}


@pytest.fixture(scope="session")
def vgg_path():
    if not VGG.is_file():
        pytest.skip(f"needs the VGG-16 weights at {VGG} (../shared)")
    return VGG
