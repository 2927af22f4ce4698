"""The training losses (paper eqs. 4-9) on small constructed cases."""

import math

import pytest
import torch

from facelift.geometry.sh import default_sh, directional_light_sh, light_direction
from facelift.training.losses import PCAAlbedo, bnet_loss, gradient_loss, pixel_loss, render_texture, smooth_loss

R = 16


def _flat_normals(b=2):
    n = torch.zeros(b, 3, R, R)
    n[:, 2] = 1.0
    return n


def _pca(k=3):
    g = torch.Generator().manual_seed(0)
    return PCAAlbedo(torch.full((3, 8, 8), 0.5), torch.randn(k, 3, 8, 8, generator=g) * 0.05, R)


def test_pixel_loss_is_zero_for_identical_and_counts_visible_texels_only():
    tex = torch.rand(2, 3, R, R)
    vis = torch.zeros(2, 1, R, R)
    vis[..., :4, :] = 1
    assert pixel_loss(tex, tex, vis) == 0
    other = tex.clone()
    other[..., 8:, :] += 0.5  # only invisible texels differ
    assert pixel_loss(tex, other, vis) == 0
    other[0, 0, 0, 0] += 0.3  # one texel of one image, one of three channels: 0.1
    # summed on the paper's 256x256 grid, averaged over the batch of 2
    assert float(pixel_loss(tex, other, vis)) == pytest.approx(0.1 * (256 / R) ** 2 / 2, rel=1e-4)


def test_bnet_light_prior_prefers_white_light_of_the_reference_strength():
    tex, vis, nrm = torch.rand(2, 3, R, R), torch.ones(2, 1, R, R), _flat_normals()
    coeffs = torch.zeros(2, 3)
    white = torch.as_tensor(default_sh(), dtype=torch.float32).expand(2, 3, 9).clone()
    orange = white * torch.tensor([1.3, 1.0, 0.7])[None, :, None]
    _, parts_white, _ = bnet_loss(tex, vis, nrm, coeffs, white, _pca(), w_light=1.0, brightness=1.0)
    _, parts_orange, _ = bnet_loss(tex, vis, nrm, coeffs, orange, _pca(), w_light=1.0, brightness=1.0)
    assert float(parts_white["light"]) < 1e-10 < float(parts_orange["light"])
    _, parts_dim, _ = bnet_loss(tex, vis, nrm, coeffs, 0.5 * white, _pca(), w_light=1.0, brightness=1.0)
    assert float(parts_dim["light"]) == pytest.approx(0.25, rel=1e-4)
    total0, parts0, _ = bnet_loss(tex, vis, nrm, coeffs, orange, _pca())
    assert "light" not in parts0  # w_light = 0: the paper's eq. 4


def test_bnet_loss_gradients_reach_coefficients_and_light():
    tex, vis, nrm = torch.rand(2, 3, R, R), torch.ones(2, 1, R, R), _flat_normals()
    coeffs = torch.zeros(2, 3, requires_grad=True)
    sh = torch.as_tensor(directional_light_sh(light_direction(30, 10), color=(1.2, 1.0, 0.9), ambient=0.3),
                         dtype=torch.float32).expand(2, 3, 9).clone().requires_grad_(True)
    loss, _, _ = bnet_loss(tex, vis, nrm, coeffs, sh, _pca(), w_light=10.0, brightness=1.0)
    loss.backward()
    assert math.isfinite(loss.item()) and coeffs.grad.abs().sum() > 0 and sh.grad.abs().sum() > 0


def test_render_gradient_and_smooth_losses():
    albedo = torch.rand(1, 3, R, R)
    sh = torch.as_tensor(default_sh(), dtype=torch.float32)[None]
    synth = render_texture(albedo, _flat_normals(1), sh)
    torch.testing.assert_close(synth, albedo, atol=1e-5, rtol=1e-5)  # white light, irradiance 1
    vis = torch.ones(1, 1, R, R)
    assert gradient_loss(synth, synth, vis) == 0
    assert gradient_loss(synth, synth + 0.2, vis) < 1e-6  # a constant offset has no gradient
    disp = torch.zeros(1, 3, R, R)
    assert smooth_loss(disp + 0.3, vis) == 0
    disp[..., 5, 5] = 1.0
    assert smooth_loss(disp, vis) > 0


def test_drn_loss_variants():
    from facelift.training.losses import drn_loss

    tex, vis, nrm = torch.rand(1, 3, R, R), torch.ones(1, 1, R, R), _flat_normals(1)
    pos = torch.zeros(1, 3, R, R)
    pos[:, 0] = torch.linspace(-0.05, 0.05, R)[None, :]
    pos[:, 1] = torch.linspace(0.05, -0.05, R)[:, None]
    rate = torch.zeros(1, 1, R, R, requires_grad=True)
    sh = torch.as_tensor(directional_light_sh(light_direction(40, 20), ambient=0.3), dtype=torch.float32)[None]
    for kind in ("grad", "pixel"):
        loss, parts, _ = drn_loss(tex, vis, nrm, pos, vis, rate, tex, sh, detail_loss=kind)
        (g,) = torch.autograd.grad(loss, rate)
        assert math.isfinite(loss.item()) and g.abs().sum() > 0 and parts["const"] == 0
    with pytest.raises(ValueError, match="detail_loss"):
        drn_loss(tex, vis, nrm, pos, vis, rate, tex, sh, detail_loss="bogus")
