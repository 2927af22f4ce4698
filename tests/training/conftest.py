"""Fixtures for the training smoke tests: a tiny synthetic UV dataset on the real face
model's layout, a face model with a small learned albedo PCA, a B-Net overfitted to the
tiny data and a bundle of freshly initialised networks (all generated here)."""

import os

import pytest
import torch

from training_support import FACE_MODEL, STEPS, VGG, train  # also puts training/ on sys.path


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
def vgg_path(shared_file):
    return shared_file(VGG)



@pytest.fixture(scope="session")
def bnet_run(tiny):
    """A B-Net run (STEPS steps overfitting 4 samples); its weights in bnet_run / 'final'."""
    out = tiny["root"] / "bnet"
    train("bnet", tiny, out, STEPS, "--lr", "3e-4")
    return out


@pytest.fixture(scope="session")
def fresh_bundle(tiny):
    """A bundle without a B-Net: the tiny face model and untrained (seeded) FAN and DRN at 128."""
    import init_bundle

    out = tiny["root"] / "fresh_bundle"
    init_bundle.main(["--face-model", str(tiny["face_model"]), "--out", str(out), "--resolution", "128"])
    return out
