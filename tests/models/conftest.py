"""Checks shared by the network tests (fixtures, so test files need no helper module)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def check_backward():
    """Backward through ``loss_fn(model(x))`` in train mode: the input and every
    trainable parameter get a finite, non-zero gradient."""

    def check(model, x, loss_fn=lambda y: y.float().pow(2).mean()):
        model.train()
        x = x.clone().requires_grad_(True)
        loss_fn(model(x)).backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        for name, p in model.named_parameters():
            assert p.grad is not None, f"no gradient for {name}"
            assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
            assert p.grad.abs().sum() > 0, f"zero gradient for {name}"

    return check


@pytest.fixture
def roundtrip(tmp_path):
    """save_pretrained -> Class.from_pretrained; returns the loaded model after checking
    that it gives the same outputs as the original (both in eval mode) on ``x``."""

    def check(model, x):
        model.eval()
        model.save_pretrained(tmp_path / "saved")
        assert (tmp_path / "saved" / "config.json").is_file()
        assert (tmp_path / "saved" / "model.safetensors").is_file()
        loaded = type(model).from_pretrained(tmp_path / "saved")
        assert type(loaded) is type(model)
        assert loaded.config == model.config
        assert not loaded.training
        with torch.no_grad():
            a, b = model(x), loaded(x)
        for ta, tb in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            torch.testing.assert_close(ta, tb, rtol=0, atol=0)
        return loaded

    return check
