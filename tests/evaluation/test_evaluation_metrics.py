"""Each metric on constructed cases with a known answer."""

import math

import numpy as np
import pytest

from facelift.evaluation import metrics as M

rng = np.random.default_rng(0)
A = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
MASK = np.zeros((32, 32), bool)
MASK[8:24, 4:20] = True


def test_masked_l1_identical_is_zero_and_constant_offset_is_the_offset():
    assert M.masked_l1(A, A, MASK) == 0.0
    assert M.masked_l1(A, A + 0.25, MASK) == pytest.approx(0.25, abs=1e-6)
    b = A.copy()
    b[~MASK] = 1 - b[~MASK]  # changes outside the mask do not count
    assert M.masked_l1(A, b, MASK) == 0.0
    assert math.isnan(M.masked_l1(A, A, np.zeros_like(MASK)))
    with pytest.raises(ValueError):
        M.masked_l1(A, A[:16], MASK)


def test_change_ratio_ignoring_copying_and_halving():
    occluded = A.copy()
    occluded[MASK] = 0.05  # a dark occluder
    albedo = np.full_like(A, 0.6)
    assert M.change_ratio(albedo, albedo, occluded, A, MASK) == 0.0  # ignores the occluder
    assert M.change_ratio(occluded, A, occluded, A, MASK) == pytest.approx(1.0)  # copies the texture
    half = A + 0.5 * (occluded - A)
    assert M.change_ratio(half, A, occluded, A, MASK) == pytest.approx(0.5)
    assert math.isnan(M.change_ratio(A, A, A, A, MASK))  # the input did not change


def test_lowpass_is_a_normalised_blur_inside_the_layout():
    inside = np.zeros((32, 32), bool)
    inside[2:30, 3:28] = True
    flat = np.where(inside[..., None], 0.4, 0.9)  # what lies outside must not leak in
    assert np.allclose(M.lowpass(flat, inside)[inside], 0.4)
    assert np.all(M.lowpass(flat, inside)[~inside] == 0)
    grey = M.lowpass(A[..., 0], inside)
    assert grey.shape == (32, 32) and np.allclose(grey, M.lowpass(A, inside)[..., 0])
    assert M.lowpass(A, inside)[inside].std() < 0.5 * A[inside].std()  # texel noise is smoothed away
    with pytest.raises(ValueError):
        M.lowpass(A, inside, sigma=0)
    with pytest.raises(ValueError):
        M.lowpass(A, inside[:16])


def test_lowpass_change_ratio_charges_copies_not_detail():
    inside = np.zeros((32, 32), bool)
    inside[1:31, 1:31] = True
    occluded = A.copy()
    occluded[MASK] = 0.05
    smooth = np.full_like(A, 0.6)
    assert M.lowpass_change_ratio(occluded, A, occluded, A, MASK, inside) == pytest.approx(1.0)  # a copy
    assert M.lowpass_change_ratio(smooth, smooth, occluded, A, MASK, inside) == 0.0  # ignores it
    half = A + 0.5 * (occluded - A)
    assert M.lowpass_change_ratio(half, A, occluded, A, MASK, inside) == pytest.approx(0.5)
    # outputs that differ only in texel-scale detail (a checkerboard of opposite sign): the plain
    # ratio charges it, the low-pass one does not
    check = ((np.indices((32, 32)).sum(0) % 2) * 0.2 - 0.1)[..., None] * inside[..., None]
    a, b = smooth + check, smooth - check
    assert M.change_ratio(a, b, occluded, A, MASK) > 0.3
    assert M.lowpass_change_ratio(a, b, occluded, A, MASK, inside) < 1e-3
    assert math.isnan(M.lowpass_change_ratio(A, A, A, A, MASK, inside))


def test_mirror_error_and_self_occluded():
    sym = A + A[:, ::-1]
    hidden = np.zeros((32, 32), bool)
    hidden[:, 20:] = True
    assert M.mirror_error(sym, hidden) == pytest.approx(0.0, abs=1e-7)
    ramp = np.broadcast_to(np.linspace(0, 1, 32, dtype=np.float32)[None, :, None], (32, 32, 3))
    # |ramp(j) - ramp(31 - j)| = |2j - 31| / 31
    j = np.arange(20, 32)
    assert M.mirror_error(ramp, hidden) == pytest.approx(np.mean(np.abs(2 * j - 31) / 31), rel=1e-6)
    visible = np.zeros((32, 32), bool)
    visible[:, :20] = True
    inside = np.ones((32, 32), bool)
    occ = M.self_occluded(visible, inside)
    assert occ[:, 20:].all() and not occ[:, :20].any()  # columns 20..31 mirror columns 11..0, all seen


def _ibug_like_points():
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([200 + 80 * np.cos(t), 240 + 100 * np.sin(t)], -1)


def test_nme_identical_translation_and_known_rotation():
    gt = _ibug_like_points()
    box = math.sqrt(np.ptp(gt[:, 0]) * np.ptp(gt[:, 1]))
    assert M.nme(gt, gt) == 0.0
    assert M.nme(gt + [3.0, 4.0], gt) == pytest.approx(5.0 / box * 100)
    theta = math.radians(5)
    c = gt.mean(0)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    pred = (gt - c) @ rot.T + c
    # a point at radius r moves by the chord 2 r sin(theta / 2)
    expected = np.mean(2 * np.linalg.norm(gt - c, axis=1) * math.sin(theta / 2)) / box * 100
    assert M.nme(pred, gt) == pytest.approx(expected, rel=1e-9)
    assert M.nme(pred, gt, slice(0, 17)) == pytest.approx(
        np.mean(2 * np.linalg.norm(gt[:17] - c, axis=1) * math.sin(theta / 2)) / box * 100)


def test_summarise_skips_missing_values():
    s = M.summarise([1.0, None, float("nan"), 3.0, 2.0])
    assert s == {"mean": 2.0, "median": 2.0, "count": 3}
    assert M.summarise([None]) == {"mean": None, "median": None, "count": 0}


@pytest.mark.slow
def test_lpips_identical_is_zero_and_difference_is_positive(shared_file):
    path = shared_file("weights/vgg16_imagenet_lpips.safetensors")
    lp = M.LPIPSMetric(path)
    a = np.repeat(np.repeat(A, 2, 0), 2, 1)  # 64 x 64
    mask = np.ones((64, 64), bool)
    assert lp(a, a, mask) == pytest.approx(0.0, abs=1e-6)
    assert lp(a, 1 - a, mask) > 0.1
    b = a.copy()
    b[:, :32] = 0.5
    right = np.zeros_like(mask)
    right[:, 40:] = True
    assert lp(a, b, right) == pytest.approx(0.0, abs=1e-6)  # differences outside the mask are ignored


def _detailed_texture(size=64, seed=1):
    """Smooth skin-like shading plus fine-scale detail (texel noise and small dark spots)."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.45 + 0.2 * np.sin(2 * xx + yy)[..., None] * np.array([1.0, 0.9, 0.8])
    detail = g.normal(0, 0.03, (size, size, 1))
    spots = (g.uniform(0, 1, (size, size, 1)) < 0.02) * -0.15
    return np.clip(base + detail + spots, 0, 1).astype(np.float32)


def _disc(size=64, r=26):
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r


def test_sharpness_of_the_texture_itself_is_one_and_of_a_constant_zero():
    tex, mask = _detailed_texture(), _disc()
    assert M.sharpness(tex, tex, mask) == pytest.approx((1.0, 1.0))
    ratio, corr = M.sharpness(np.full_like(tex, 0.6), tex, mask)
    assert ratio == pytest.approx(0.0, abs=1e-9) and corr == 0.0


def test_sharpness_of_a_blurred_albedo_is_well_below_one():
    import cv2

    tex, mask = _detailed_texture(), _disc()
    blurred = cv2.GaussianBlur(tex, (0, 0), 2.0)
    ratio, corr = M.sharpness(blurred, tex, mask)
    assert ratio < 0.4 and ratio < M.sharpness(cv2.GaussianBlur(tex, (0, 0), 0.7), tex, mask)[0] < 1.0
    assert 0 < corr < 1


def test_sharpness_ignores_smooth_shading_and_what_is_outside_the_mask():
    """texture / smooth shading (a de-lit albedo) keeps the photo's detail: ratio ~ 1."""
    tex, mask = _detailed_texture(), _disc()
    yy, xx = np.mgrid[0:64, 0:64] / 64
    shading = (0.6 + 0.4 * xx + 0.1 * yy)[..., None]
    ratio, corr = M.sharpness(tex / shading, tex, mask)
    assert ratio == pytest.approx(1.0, abs=0.03) and corr > 0.99
    other = tex.copy()
    other[~mask] = rng.uniform(0, 1, (int((~mask).sum()), 3))  # wild values outside do not leak in
    assert M.sharpness(other, tex, mask) == pytest.approx((1.0, 1.0))


def test_sharpness_of_noise_is_high_but_uncorrelated():
    tex, mask = _detailed_texture(), _disc()
    noisy = np.clip(tex + np.random.default_rng(5).normal(0, 0.05, tex.shape[:2])[..., None], 0, 1)
    own_noise = _detailed_texture(seed=2)  # the same kind of detail, somewhere else
    ratio, corr = M.sharpness(own_noise, tex, mask)
    assert ratio == pytest.approx(1.0, abs=0.15) and abs(corr) < 0.15
    ratio, corr = M.sharpness(noisy, tex, mask)
    assert ratio > 1.3 and corr < 0.7
    assert all(math.isnan(v) for v in M.sharpness(tex, tex, np.zeros_like(mask)))
    assert all(math.isnan(v) for v in M.sharpness(tex, np.full_like(tex, 0.5), mask))


def test_high_pass_of_a_smooth_map_is_zero_inside_the_mask():
    yy, xx = np.mgrid[0:64, 0:64] / 64
    smooth = np.repeat((0.3 + 0.4 * xx)[..., None], 3, -1)
    hp = M.high_pass(smooth, _disc())
    assert np.abs(hp[_disc()]).max() < 0.01 and (hp[~_disc()] == 0).all()


def test_fine_scale_std_removes_the_blurred_copy():
    R = 64
    mask = np.zeros((R, R), bool)
    mask[8:56, 8:56] = True
    assert M.fine_scale_std(np.full((R, R), 3.0), mask) == pytest.approx(0.0, abs=1e-9)
    ramp = np.tile(np.linspace(0, 1, R), (R, 1))
    assert M.fine_scale_std(ramp, mask) < 0.01  # a slope is low-frequency
    j = np.arange(R)[None, :].repeat(R, 0)
    stripes = 1e-3 * np.where(j % 2 == 0, 1.0, -1.0)  # texel-scale detail: nothing of it is in the blur
    assert M.fine_scale_std(stripes, mask) == pytest.approx(1e-3, rel=0.02)
    assert np.isnan(M.fine_scale_std(stripes, np.zeros((R, R), bool)))
    with pytest.raises(ValueError):
        M.fine_scale_std(stripes, mask[:-1])


def test_gradient_l1_of_identical_maps_is_zero_and_of_a_ramp_its_slope():
    R = 16
    a = np.random.default_rng(0).random((R, R, 3))
    mask = np.ones((R, R), bool)
    assert M.gradient_l1(a, a, mask) == 0.0
    assert M.gradient_l1(a, a + 0.3, mask) == pytest.approx(0.0, abs=1e-12)  # an offset has no gradient
    ramp = np.tile(np.arange(R) * 0.01, (R, 1))
    # half of the pairs are horizontal (difference 0.01), half vertical (0)
    assert M.gradient_l1(ramp, np.zeros((R, R)), mask) == pytest.approx(0.005)
    assert np.isnan(M.gradient_l1(a, a, np.zeros((R, R), bool)))
