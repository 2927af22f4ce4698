import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from facelift.geometry.sh import (
    DIRECTIONAL_MAX_ERROR,
    LAMBERT,
    SHFit,
    default_sh,
    directional_light_sh,
    estimate_sh,
    irradiance,
    light_direction,
    light_prior,
    mean_irradiance,
    rotate_sh,
    sh_basis,
    sh_rotation_matrix,
    shade,
)


def sphere(n, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def lebedev_like_quadrature(n_theta=64, n_phi=128):
    """Gauss-Legendre in cos(theta) x uniform in phi: exact for these low-degree polynomials."""
    z, wz = np.polynomial.legendre.leggauss(n_theta)
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    r = np.sqrt(1 - zz**2)
    dirs = np.stack([r * np.cos(pp), r * np.sin(pp), zz], -1).reshape(-1, 3)
    w = (wz[:, None] * np.full(n_phi, 2 * np.pi / n_phi)[None]).reshape(-1)
    return dirs, w


def test_basis_orthonormal_by_quadrature():
    dirs, w = lebedev_like_quadrature()
    Y = sh_basis(dirs)
    gram = (Y * w[:, None]).T @ Y
    np.testing.assert_allclose(gram, np.eye(9), atol=1e-10)


def test_basis_orthonormal_by_random_samples():
    Y = sh_basis(sphere(200_000))
    gram = Y.T @ Y * 4 * np.pi / len(Y)
    np.testing.assert_allclose(gram, np.eye(9), atol=0.01)


def test_basis_order_and_signs():
    c1 = math.sqrt(3 / (4 * math.pi))
    np.testing.assert_allclose(sh_basis(np.array([0.0, 1.0, 0.0]))[1:4], [c1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(sh_basis(np.array([0.0, 0.0, 1.0]))[1:4], [0, c1, 0], atol=1e-12)
    np.testing.assert_allclose(sh_basis(np.array([1.0, 0.0, 0.0]))[1:4], [0, 0, c1], atol=1e-12)
    d = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
    y = sh_basis(d)
    assert y[4] > 0 and abs(y[5]) < 1e-12 and abs(y[7]) < 1e-12 and abs(y[8]) < 1e-12
    assert sh_basis(np.array([0.0, 0.0, 1.0]))[6] > 0 > sh_basis(np.array([1.0, 0.0, 0.0]))[6]


def test_default_sh_is_unit_white_irradiance():
    e = irradiance(sphere(100), default_sh())
    np.testing.assert_allclose(e, 1.0, atol=1e-12)


def test_shade_is_albedo_times_irradiance():
    n = sphere(50)
    rng = np.random.default_rng(1)
    g, a = rng.normal(size=(3, 9)), rng.uniform(size=(50, 3))
    np.testing.assert_allclose(shade(a, n, g), a * irradiance(n, g))
    # explicit formula of eq. 3 with the Lambertian constants folded in
    np.testing.assert_allclose(irradiance(n, g), (sh_basis(n) * LAMBERT) @ g.T)


def test_batched_gamma():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(4, 3, 9))
    n = sphere(4 * 6 * 5).reshape(4, 6, 5, 3)
    e = irradiance(n, g)
    assert e.shape == (4, 6, 5, 3)
    for b in range(4):
        np.testing.assert_allclose(e[b], irradiance(n[b], g[b]))


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_estimate_sh_recovers_light(noise):
    rng = np.random.default_rng(3)
    n = sphere(4000, seed=3)
    g = directional_light_sh(light_direction(30, 20), color=(1.0, 0.9, 0.8), intensity=0.8, ambient=0.3)
    g = g + 0.05 * rng.normal(size=g.shape)
    albedo = rng.uniform(0.2, 0.9, size=(4000, 3))
    tex = shade(albedo, n, g) + noise * rng.normal(size=(4000, 3))
    est = estimate_sh(tex, albedo, n, ridge=0.0 if noise == 0 else 1e-4)
    np.testing.assert_allclose(est, g, atol=1e-9 if noise == 0 else 0.01)


def test_estimate_sh_weights_ignore_outliers():
    rng = np.random.default_rng(4)
    n = sphere(3000, seed=4)
    g = directional_light_sh(light_direction(-40, 10), intensity=1.0, ambient=0.2)
    albedo = rng.uniform(0.2, 0.9, size=(3000, 3))
    tex = shade(albedo, n, g)
    bad = rng.random(3000) < 0.2
    tex[bad] = rng.uniform(0, 1, size=(bad.sum(), 3))  # e.g. hair or glasses
    unweighted = estimate_sh(tex, albedo, n)
    weighted = estimate_sh(tex, albedo, n, weights=(~bad).astype(float), ridge=1e-9)
    np.testing.assert_allclose(weighted, g, atol=1e-3)
    assert np.abs(unweighted - g).max() > 10 * np.abs(weighted - g).max()


def test_estimate_sh_batched_matches_single():
    rng = np.random.default_rng(5)
    n = sphere(2 * 500, seed=5).reshape(2, 500, 3)
    albedo = rng.uniform(0.2, 0.9, size=(2, 500, 3))
    tex = rng.uniform(0, 1, size=(2, 500, 3))
    w = rng.uniform(0, 1, size=(2, 500))
    est = estimate_sh(tex, albedo, n, weights=w)
    assert est.shape == (2, 3, 9)
    for b in range(2):
        np.testing.assert_allclose(est[b], estimate_sh(tex[b], albedo[b], n[b], weights=w[b]), atol=1e-12)


def test_estimate_sh_with_priors_minimises_the_penalised_objective():
    import torch

    rng = np.random.default_rng(6)
    n = sphere(800, seed=6)
    albedo = rng.uniform(0.2, 0.9, size=(800, 3))
    w = rng.uniform(0, 1, size=800)
    tex = rng.uniform(0, 1, size=(800, 3))
    kw = dict(ridge=1e-3, colour_prior=0.05, brightness=0.9, brightness_prior=0.2)
    est = torch.tensor(estimate_sh(tex, albedo, n, weights=w, **kw), requires_grad=True)
    t, a, nn, ww = (torch.tensor(v) for v in (tex, albedo, n, w))
    data = ((t - a * irradiance(nn, est)) ** 2 * ww[:, None]).sum() / ww.sum()
    obj = (data + kw["ridge"] * (est ** 2).sum() + kw["colour_prior"] * light_prior(est)
           + kw["brightness_prior"] * (irradiance(nn, est).mul(ww[:, None]).sum() / ww.sum() / 3 - 0.9) ** 2)
    (grad,) = torch.autograd.grad(obj, est)
    assert grad.abs().max() < 1e-10  # a stationary point of a convex objective: the minimum
    np.testing.assert_allclose(estimate_sh(tex, albedo, n, weights=w, ridge=1e-3, colour_prior=0.0),
                               estimate_sh(tex, albedo, n, weights=w, ridge=1e-3))


def test_colour_prior_gives_the_tone_to_the_albedo():
    """A tanned face under white light, explained with a neutral albedo: without the prior
    the light turns orange; with it the light stays white (and the residual is the tone)."""
    n = sphere(2000, seed=7)
    g = directional_light_sh(light_direction(20, 30), intensity=0.7, ambient=0.4)
    tex = shade(np.tile([0.7, 0.45, 0.3], (2000, 1)), n, g)
    neutral = np.full((2000, 3), 0.5)
    free = estimate_sh(tex, neutral, n)
    grey = estimate_sh(tex, neutral, n, colour_prior=10.0)
    assert light_prior(free) > 0.05 and light_prior(grey) < 1e-3 * light_prior(free)
    pinned = estimate_sh(tex, neutral, n, colour_prior=10.0, brightness=1.0, brightness_prior=100.0)
    assert abs(mean_irradiance(pinned, n) - 1.0) < 0.01
    assert abs(irradiance(n, pinned).mean() - 1.0) < 0.01
    assert light_prior(g) < 1e-20 and light_prior(g, brightness=mean_irradiance(g, n), normals=n) < 1e-20
    w = (n[:, 2] > 0).astype(float)
    np.testing.assert_allclose(mean_irradiance(g, n, w), irradiance(n, g)[w > 0].mean())
    with pytest.raises(ValueError, match="normals"):
        light_prior(g, brightness=1.0)


def test_light_prior_checks_arguments():
    with pytest.raises(ValueError, match="3, 9"):
        light_prior(np.zeros((3, 4)))
    n = sphere(100)
    with pytest.raises(ValueError, match="brightness"):
        estimate_sh(np.ones((100, 3)), np.ones((100, 3)), n, brightness_prior=1.0)
    with pytest.raises(ValueError, match="non-negative"):
        estimate_sh(np.ones((100, 3)), np.ones((100, 3)), n, colour_prior=-1.0)


def test_rotate_sh_property():
    rng = np.random.default_rng(6)
    n = sphere(500, seed=6)
    for seed in range(5):
        R = Rotation.random(random_state=seed).as_matrix()
        g = rng.normal(size=(3, 9))
        np.testing.assert_allclose(irradiance(n @ R.T, rotate_sh(g, R)), irradiance(n, g), atol=1e-10)


def test_rotate_sh_of_directional_light_rotates_direction():
    R = Rotation.from_euler("YXZ", [50, -20, 10], degrees=True).as_matrix()
    d = light_direction(10, 30)
    np.testing.assert_allclose(rotate_sh(directional_light_sh(d), R), directional_light_sh(R @ d), atol=1e-10)


def test_sh_rotation_matrix_is_orthogonal_and_composes():
    R1 = Rotation.random(random_state=1).as_matrix()
    R2 = Rotation.random(random_state=2).as_matrix()
    D1, D2 = sh_rotation_matrix(R1), sh_rotation_matrix(R2)
    np.testing.assert_allclose(D1 @ D1.T, np.eye(9), atol=1e-10)
    np.testing.assert_allclose(sh_rotation_matrix(R2 @ R1), D2 @ D1, atol=1e-10)
    np.testing.assert_allclose(sh_rotation_matrix(np.eye(3)), np.eye(9), atol=1e-12)


def test_directional_light_approximates_clamped_cosine():
    dirs, w = lebedev_like_quadrature()
    for az, el in [(0, 0), (45, 20), (-70, -30)]:
        d = light_direction(az, el)
        g = directional_light_sh(d, color=(1.0, 0.5, 0.25), intensity=2.0, ambient=0.1)
        e = irradiance(dirs, g)
        target = 2.0 * np.maximum(dirs @ d, 0)[:, None] * [1.0, 0.5, 0.25] + 0.1 * np.array([1.0, 0.5, 0.25])
        err = (e - target)[:, 0]
        assert np.abs(err).max() <= 2.0 * DIRECTIONAL_MAX_ERROR + 1e-9
        # the bound is reached at grazing angles
        perp = np.cross(d, [0.3, 0.5, 0.8])
        perp /= np.linalg.norm(perp)
        np.testing.assert_allclose(irradiance(perp, g)[0] - 0.1, 2.0 * DIRECTIONAL_MAX_ERROR, atol=1e-12)
        rms = math.sqrt((w * err**2).sum() / (4 * math.pi))
        assert rms < 2.0 * 0.04
        np.testing.assert_allclose(irradiance(d, g)[0], 2.0 * 17 / 16 + 0.1, atol=1e-12)


def test_light_direction_convention():
    np.testing.assert_allclose(light_direction(0, 0), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(light_direction(90, 0), [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(light_direction(0, 90), [0, 1, 0], atol=1e-12)
    assert light_direction(30, 0)[0] > 0 and light_direction(0, -30)[1] < 0
    np.testing.assert_allclose(np.linalg.norm(light_direction(123, -45)), 1.0)


def test_numpy_torch_agree():
    rng = np.random.default_rng(7)
    n = sphere(300, seed=7)
    g = rng.normal(size=(3, 9))
    a = rng.uniform(size=(300, 3))
    R = Rotation.random(random_state=3).as_matrix()
    nt, gt, at, Rt = (torch.tensor(x) for x in (n, g, a, R))
    assert isinstance(sh_basis(nt), torch.Tensor)
    np.testing.assert_allclose(sh_basis(nt).numpy(), sh_basis(n), atol=1e-12)
    np.testing.assert_allclose(irradiance(nt, gt).numpy(), irradiance(n, g), atol=1e-12)
    np.testing.assert_allclose(shade(at, nt, gt).numpy(), shade(a, n, g), atol=1e-12)
    np.testing.assert_allclose(rotate_sh(gt, Rt).numpy(), rotate_sh(g, R), atol=1e-12)
    tex = shade(a, n, g)
    np.testing.assert_allclose(estimate_sh(torch.tensor(tex), at, nt).numpy(), estimate_sh(tex, a, n), atol=1e-10)
    # float32 tensors stay float32
    assert irradiance(nt.float(), gt.float()).dtype == torch.float32
    # mixing a numpy gamma with tensor normals gives a tensor
    assert isinstance(irradiance(nt, g), torch.Tensor)


def test_torch_gradcheck():
    rng = np.random.default_rng(8)
    n = torch.tensor(sphere(20, seed=8), requires_grad=True)
    g = torch.tensor(rng.normal(size=(3, 9)), requires_grad=True)
    a = torch.tensor(rng.uniform(size=(20, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, n, g: shade(a, n, g), (a, n, g))
    gb = torch.tensor(rng.normal(size=(2, 3, 9)), requires_grad=True)
    nb = torch.tensor(sphere(2 * 7, seed=9).reshape(2, 7, 3), requires_grad=True)
    assert torch.autograd.gradcheck(irradiance, (nb, gb))
    R = torch.tensor(Rotation.random(random_state=4).as_matrix())
    assert torch.autograd.gradcheck(lambda g: rotate_sh(g, R), (g,))
    tex = torch.tensor(rng.uniform(size=(20, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, a, n: estimate_sh(t, a, n), (tex, a, n))


@pytest.mark.parametrize(
    "call",
    [
        lambda: sh_basis(np.zeros((5, 2))),
        lambda: irradiance(np.zeros((5, 3)), np.zeros((9, 3))),
        lambda: irradiance(np.zeros((5, 3)), np.zeros((27,))),
        lambda: irradiance(np.zeros((3, 5, 3)), np.zeros((2, 3, 9))),
        lambda: shade(np.zeros((4, 3)), np.zeros((5, 3)), default_sh()),
        lambda: estimate_sh(np.zeros((20, 3)), np.zeros((20, 3)), np.zeros((19, 3))),
        lambda: estimate_sh(np.zeros((5, 3)), np.zeros((5, 3)), np.zeros((5, 3))),
        lambda: estimate_sh(np.ones((20, 3)), np.ones((20, 3)), sphere(20), weights=np.ones(19)),
        lambda: estimate_sh(np.ones((20, 3)), np.ones((20, 3)), sphere(20), weights=-np.ones(20)),
        lambda: estimate_sh(np.ones((20, 3)), np.ones((20, 3)), sphere(20), weights=np.zeros(20)),
        lambda: rotate_sh(default_sh(), np.eye(4)),
        lambda: directional_light_sh((0, 0, 0)),
        lambda: directional_light_sh((0, 1)),
        lambda: directional_light_sh((0, 0, 1), color=(1, 1)),
    ],
)
def test_bad_shapes_raise(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("prior", [{}, {"colour_prior": 1.0},
                                   {"colour_prior": 1.0, "brightness": 0.8, "brightness_prior": 1.0}])
def test_shfit_matches_estimate_sh(prior):
    rng = np.random.default_rng(3)
    n = sphere(500, seed=3)
    albedo = rng.uniform(0.2, 0.9, (500, 3))
    tex = shade(albedo, n, default_sh()) + rng.normal(0, 0.01, (500, 3))
    w = rng.uniform(0, 1, 500)
    fit = SHFit(n)
    for weights in (None, w):
        np.testing.assert_allclose(fit(tex, albedo, weights, **prior),
                                   estimate_sh(tex, albedo, n, weights=weights, **prior), atol=1e-10)


def test_shfit_recovers_the_light_and_rejects_bad_input():
    n = sphere(200, seed=4)
    albedo = np.full((200, 3), 0.6)
    light = default_sh()
    np.testing.assert_allclose(SHFit(n)(shade(albedo, n, light), albedo, ridge=0.0), light, atol=1e-8)
    for bad in (lambda: SHFit(n[:8]), lambda: SHFit(n[:, :2]),
                lambda: SHFit(n)(albedo[:10], albedo[:10]),
                lambda: SHFit(n)(albedo, albedo, weights=-np.ones(200)),
                lambda: SHFit(n)(albedo, albedo, weights=np.zeros(200))):
        with pytest.raises(ValueError):
            bad()
