import numpy as np
import pytest

from facelift.albedo import fit_albedo_and_light, pca_albedo, resize_maps, sample_maps
from facelift.geometry.sh import irradiance

from synthetic import ellipsoid_face_model


def _scene(model, coeffs, sh, R=64):
    """Texture = PCA albedo x SH shading on a hemisphere of normals (eq. 2 and 3)."""
    yy, xx = (np.mgrid[0:R, 0:R] + 0.5) / R * 2 - 1
    zz = np.sqrt(np.clip(1 - xx ** 2 - yy ** 2, 0, None))
    normals = np.stack([xx, -yy, zz], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    visible = (xx ** 2 + yy ** 2) < 0.9
    albedo = pca_albedo(model, coeffs, R)
    texture = albedo * irradiance(normals, sh)
    return texture.astype(np.float32), normals.astype(np.float32), visible


def test_resize_maps_shapes():
    x = np.random.rand(4, 3, 8, 8).astype(np.float32)
    assert resize_maps(x, 16).shape == (4, 16, 16, 3)
    assert resize_maps(x[0], 8).shape == (8, 8, 3)
    np.testing.assert_allclose(resize_maps(x[0], 8), x[0].transpose(1, 2, 0))


@pytest.mark.parametrize("resolution", [8, 13, 16, 48])
def test_sample_maps_matches_resizing_everything(resolution):
    x = np.random.default_rng(0).random((5, 3, 16, 16), dtype=np.float32)
    idx = np.random.default_rng(1).choice(resolution * resolution, 20, replace=False)
    full = resize_maps(x, resolution).reshape(5, resolution * resolution, 3)[:, idx]
    np.testing.assert_allclose(sample_maps(x, resolution, idx), full, atol=1e-6)
    np.testing.assert_allclose(sample_maps(x[0], resolution, idx), full[0], atol=1e-6)


def test_known_albedo_and_light_are_recovered():
    model = ellipsoid_face_model(n_albedo=4, albedo_resolution=16)
    true_coeffs = np.array([1.0, -0.5, 0.8, 0.3], np.float32)
    sh = np.zeros((3, 9), np.float32)
    sh[:, 0] = [1.0, 0.9, 0.8]
    sh[:, 3] = 0.3  # light from image-right
    texture, normals, visible = _scene(model, true_coeffs, sh)
    coeffs, albedo, est = fit_albedo_and_light(model, texture, normals, visible, prior_weight=1e-8,
                                               iterations=8, stride=1)
    # albedo and light trade off on a hemisphere of normals, so compare what is observable
    err = np.abs(albedo * irradiance(normals, est) - texture)[visible].mean()
    assert err < 0.01
    mean_only = pca_albedo(model, None, 64) * irradiance(normals, est)
    assert np.abs(mean_only - texture)[visible].mean() > 2 * err  # the coefficients did the work


def test_prior_shrinks_the_coefficients():
    model = ellipsoid_face_model(n_albedo=4, albedo_resolution=16)
    sh = np.zeros((3, 9), np.float32)
    sh[:, 0] = 1.0
    texture, normals, visible = _scene(model, np.array([2.0, 1.0, -1.0, 1.0], np.float32), sh)
    norms = [np.linalg.norm(fit_albedo_and_light(model, texture, normals, visible, prior_weight=w)[0])
             for w in (1e-6, 1e-3, 1e-1)]
    assert norms[0] > norms[1] > norms[2]


def test_without_albedo_components_only_light_is_estimated():
    model = ellipsoid_face_model(n_albedo=0, albedo_resolution=16)
    sh = np.zeros((3, 9), np.float32)
    sh[:, 0] = 1.2
    texture, normals, visible = _scene(model, None, sh)
    coeffs, albedo, est = fit_albedo_and_light(model, texture, normals, visible)
    assert coeffs.shape == (0,)
    shading, expected = irradiance(normals, est), irradiance(normals, sh)
    # estimate_sh's ridge (1e-4) shrinks the light by about 2 % here (0.0206 of 1.06, float64 alike)
    assert np.abs(shading - expected)[visible].max() < 0.03 * expected[visible].max()
    assert np.abs(albedo * shading - texture)[visible].max() < 0.015


def test_too_few_visible_texels():
    model = ellipsoid_face_model(n_albedo=2, albedo_resolution=16)
    texture, normals, visible = _scene(model, None, np.eye(3, 9, dtype=np.float32))
    with pytest.raises(ValueError, match="visible"):
        fit_albedo_and_light(model, texture, normals, np.zeros_like(visible))


def test_light_prior_gives_a_darker_skin_to_the_albedo():
    """The same face with a uniformly darker skin under the same light: a model learned under
    white light (light_brightness) explains it by the albedo; without that, the light dims."""
    import dataclasses

    base = ellipsoid_face_model(n_albedo=4, albedo_resolution=16)
    tone = np.full((1, 3, 16, 16), 0.2, np.float32)  # a component that darkens or lightens the skin
    model = dataclasses.replace(base, albedo_basis=np.concatenate([tone, base.albedo_basis]))
    sh = np.zeros((3, 9), np.float32)
    sh[:, 0] = 2 / np.sqrt(np.pi)  # white ambient light of irradiance 1
    coeffs = np.array([-1.5, 0, 0, 0, 0], np.float32)  # 0.3 darker than the mean
    texture, normals, visible = _scene(model, coeffs, sh)
    white = dataclasses.replace(model, config={**model.config, "albedo_light_brightness": 1.0})
    assert white.light_brightness == 1.0 and model.light_brightness is None
    c_white, albedo_white, sh_white = fit_albedo_and_light(white, texture, normals, visible, iterations=8)
    c_free, albedo_free, sh_free = fit_albedo_and_light(model, texture, normals, visible, iterations=8)
    true_albedo = pca_albedo(model, coeffs, 64)[visible].mean()
    assert abs(albedo_white[visible].mean() - true_albedo) < 0.02
    assert abs(irradiance(normals, sh_white)[visible].mean() - 1.0) < 0.03
    assert albedo_free[visible].mean() > true_albedo + 0.1  # the light took the darkness instead


# ---- the robust stage (fit_low_frequency) --------------------------------------------------
def _occluded_scene(model, coeffs, sh, R=64):
    texture, normals, visible = _scene(model, coeffs, sh, R)
    patch = np.zeros_like(visible)
    patch[R // 4:R // 2, R // 4:3 * R // 4] = True  # a dark slab over the upper face (a phone)
    patch &= visible
    occluded = np.where(patch[..., None], 0.05, texture).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 0.01, texture.shape).astype(np.float32)
    return np.clip(occluded + noise, 0, 1), texture, normals, visible, patch


def _light():
    sh = np.zeros((3, 9), np.float32)
    sh[:, 0] = [1.0, 0.95, 0.9]
    sh[:, 3] = 0.25
    return sh


def test_a_stiffer_outlier_prior_drags_the_stiff_albedo_less():
    from facelift.albedo import fit_low_frequency

    model = ellipsoid_face_model(n_albedo=4, albedo_resolution=16)
    occluded, clean, normals, visible, patch = _occluded_scene(model, np.array([0.5, -0.25, 0.4, 0.15], np.float32),
                                                               _light())

    def drag(prior):
        stiff = [pca_albedo(model, fit_low_frequency(model, t, normals, visible, stride=1,
                                                     robust_prior_weight=prior).outlier_coefficients, 64)
                 for t in (clean, occluded)]
        return np.abs(stiff[1] - stiff[0])[patch].mean()

    d = [drag(p) for p in (1e-4, 3e-4, 1e-3)]
    assert d[0] > 1.5 * d[1] > 1.5 * 1.5 * d[2] > 0


def test_tukey_weight_known_values():
    from facelift.albedo import TUKEY_C, tukey_weight

    r = np.array([0.0, 0.5, 1.0, 2.0]) * TUKEY_C
    np.testing.assert_allclose(tukey_weight(r, 1.0), [1.0, 0.5625, 0.0, 0.0])


def test_robust_fit_is_not_dragged_by_an_occluder():
    from facelift.albedo import fit_low_frequency

    model = ellipsoid_face_model(n_albedo=4, albedo_resolution=16)
    # a face the stiff model reaches under its prior (twice these coefficients it does not: the price
    # of the prior, measured in docs/EVALUATION.md)
    coeffs = np.array([0.5, -0.25, 0.4, 0.15], np.float32)
    occluded, clean, normals, visible, patch = _occluded_scene(model, coeffs, _light())
    _, albedo_ls, sh_ls = fit_albedo_and_light(model, occluded, normals, visible, stride=1)
    fit = fit_low_frequency(model, occluded, normals, visible, stride=1)
    # albedo and light trade off on a hemisphere, so compare the renders with the clean face
    err_ls = np.abs(albedo_ls * irradiance(normals, sh_ls) - clean)[visible]
    render = fit.albedo * irradiance(normals, fit.sh)
    err_robust = np.abs(render - clean)[visible]
    assert err_ls.mean() > 0.05  # least squares bends towards the slab ...
    assert err_robust.mean() < 0.25 * err_ls.mean()  # ... the robust fit does not
    assert np.abs(render - clean)[visible & ~patch].mean() < 0.02  # the unoccluded face is explained
    # the confidence says where: near 0 on the slab, near 1 on the skin, 0 where not seen
    assert fit.confidence[patch].mean() < 0.1
    assert np.median(fit.confidence[visible & ~patch]) > 0.8
    assert fit.confidence[~visible].max() == 0 and fit.confidence.dtype == np.float32
    assert fit.scale >= 0.02 and fit.outlier_coefficients.shape == coeffs.shape


def test_robust_fit_confidence_is_the_stiff_models_tukey_weight_of_every_visible_texel():
    """The confidence is computed at the visible texels only; it must equal the definition on
    the whole map: skin_confidence of the stiff albedo under the stiff light."""
    from facelift.albedo import fit_low_frequency, skin_confidence, stiff_pca_albedo

    model = ellipsoid_face_model(n_albedo=4, albedo_resolution=16)
    occluded, _, normals, visible, _ = _occluded_scene(model, np.array([1.0, -0.5, 0.8, 0.3], np.float32), _light())
    fit = fit_low_frequency(model, occluded, normals, visible, stride=2)
    stiff = stiff_pca_albedo(model, fit, occluded.shape[0])
    # the fit keeps the stiff albedo it computed; it is the one the stiff coefficients give
    recomputed = pca_albedo(model, fit.outlier_coefficients, occluded.shape[0])
    assert stiff is fit.albedo_stiff and np.abs(stiff - recomputed).max() < 1e-6
    expected = skin_confidence(occluded, stiff, irradiance(normals, fit.outlier_sh), visible, fit.scale)
    assert fit.confidence.shape == visible.shape
    assert np.abs(fit.confidence - expected).max() < 1e-5
    assert fit.confidence[visible].min() < 0.5 < fit.confidence[visible].max()  # the slab and the skin


def test_robust_fit_matches_least_squares_without_outliers():
    from facelift.albedo import fit_low_frequency

    model = ellipsoid_face_model(n_albedo=4, albedo_resolution=16)
    texture, normals, visible = _scene(model, np.array([0.5, 0.2, -0.3, 0.1], np.float32), _light())
    fit = fit_low_frequency(model, texture, normals, visible, stride=1)
    _, albedo_ls, sh_ls = fit_albedo_and_light(model, texture, normals, visible, stride=1)
    render_ls = albedo_ls * irradiance(normals, sh_ls)
    render = fit.albedo * irradiance(normals, fit.sh)
    assert np.abs(render - render_ls)[visible].mean() < 0.005
    assert np.median(fit.confidence[visible]) > 0.95  # noise-free: everything is skin


def test_robust_fit_too_few_visible_texels():
    from facelift.albedo import fit_low_frequency

    model = ellipsoid_face_model(n_albedo=2, albedo_resolution=16)
    texture, normals, visible = _scene(model, None, _light())
    with pytest.raises(ValueError, match="visible"):
        fit_low_frequency(model, texture, normals, np.zeros_like(visible))


def test_delit_texture_divides_by_the_shading():
    from facelift.albedo import delit_texture

    model = ellipsoid_face_model(n_albedo=2, albedo_resolution=16)
    coeffs = np.array([0.3, -0.2], np.float32)
    texture, normals, visible = _scene(model, coeffs, _light())
    shading = irradiance(normals, _light())
    d = delit_texture(texture, shading, visible)
    ok = visible & (shading > 0.05).all(-1)
    np.testing.assert_allclose(d[ok], np.clip(pca_albedo(model, coeffs, 64), 0, 1)[ok], atol=1e-5)
    assert d[~visible].max() == 0


def test_stiff_albedo_is_the_outlier_models_and_only_fed_when_asked():
    from facelift.albedo import fit_low_frequency, network_sources, stiff_pca_albedo

    model = ellipsoid_face_model(n_albedo=4, albedo_resolution=16)
    coeffs = np.array([1.0, -0.5, 0.8, 0.3], np.float32)
    occluded, clean, normals, visible, patch = _occluded_scene(model, coeffs, _light())
    fit = fit_low_frequency(model, occluded, normals, visible, stride=1, outlier_components=2)
    stiff = stiff_pca_albedo(model, fit, occluded.shape[0])
    np.testing.assert_allclose(stiff, pca_albedo(model, fit.outlier_coefficients, occluded.shape[0]), atol=1e-6)
    assert stiff.dtype == np.float32 and stiff.shape == occluded.shape
    assert not np.array_equal(stiff, fit.albedo)  # two components, not four
    vis = visible.astype(np.float32)
    assert "albedo_stiff" not in network_sources(occluded, vis, normals, fit)
    assert network_sources(occluded, vis, normals, fit, stiff)["albedo_stiff"] is stiff


def test_greyscale_detection_colourise_and_the_grey_fit():
    from facelift.albedo import LowFrequencyFit, colourise, grey, greyscale_fit, is_greyscale

    rng = np.random.default_rng(0)
    colour = rng.uniform(0.2, 0.8, (16, 16, 3)).astype(np.float32)
    vis = np.ones((16, 16), bool)
    assert not is_greyscale(colour, vis)
    bw = grey(colour)
    assert is_greyscale(bw, vis) and np.allclose(bw[..., 0], bw[..., 2])
    assert is_greyscale(np.clip(bw + rng.normal(0, 0.5 / 255, bw.shape), 0, 1), vis)  # JPEG-like chroma noise
    assert not is_greyscale(bw, np.zeros_like(vis))  # nothing visible: nothing to say
    skin = np.broadcast_to(np.array([0.8, 0.6, 0.5], np.float32), (16, 16, 3))
    c = colourise(bw, vis, skin)
    np.testing.assert_allclose(grey(c), bw, atol=1e-5)  # the luminance is kept ...
    ratio = c / np.maximum(c[..., :1], 1e-6)
    np.testing.assert_allclose(ratio, np.broadcast_to(skin / skin[..., :1], ratio.shape), rtol=1e-4)  # ... in skin's colour
    assert (colourise(bw, np.zeros_like(vis), skin) == 0).all()
    sh = rng.normal(size=(3, 9)).astype(np.float32)
    low = LowFrequencyFit(np.zeros(2, np.float32), colour, sh, np.ones((16, 16), np.float32), 0.02,
                          np.zeros(2, np.float32), sh)
    g = greyscale_fit(low)
    assert np.allclose(g.sh, sh.mean(0)) and is_greyscale(g.albedo, vis)


def test_toned_monochrome_photos_count_as_greyscale_and_colour_faces_do_not():
    """Sepia, cyanotype and split-toned photos have colour, but only as a function of brightness:
    they are black-and-white photos to the pipeline. A face whose lips are redder than its skin at
    the same brightness is not, however little saturated it is."""
    from facelift.albedo import is_greyscale, toned_residual

    rng = np.random.default_rng(1)
    vis = np.ones((64, 64), bool)
    y = np.clip(rng.uniform(0.1, 0.9, (64, 64)), 0, 1).astype(np.float32)
    noise = lambda t: np.clip(t + rng.normal(0, 0.5 / 255, t.shape), 0, 1).astype(np.float32)  # noqa: E731
    sepia = noise(np.clip(y[..., None] * np.array([1.2, 1.0, 0.75], np.float32), 0, 1))
    cyanotype = noise(y[..., None] * np.array([0.6, 0.9, 1.1], np.float32))
    split = noise(np.clip(y[..., None] * np.stack([0.9 + 0.2 * y, 0.95 + 0.05 * y, 1.1 - 0.25 * y], -1), 0, 1))
    for toned in (sepia, cyanotype, split):
        assert toned_residual(toned[vis]) < 1.0 / 255
        assert is_greyscale(toned, vis)
    # a pale, little saturated face: its redness varies smoothly over the face (cheeks, lips) at
    # the same brightness, as skin's does
    from scipy.ndimage import gaussian_filter

    redness = gaussian_filter(rng.normal(size=(64, 64)), 6)
    redness = (redness / np.abs(redness).max()).astype(np.float32)
    tint = np.stack([1.08 + 0.15 * redness, 0.97 - 0.06 * redness, 0.92 - 0.06 * redness], -1)
    face = noise(np.clip(y[..., None] * tint, 0, 1))
    assert not is_greyscale(face, vis)
    assert toned_residual(face[vis]) > 2.0 / 255
    with pytest.raises(ValueError):
        toned_residual(np.zeros((0, 3), np.float32))


def test_the_fits_run_blas_on_one_thread_and_give_the_threads_back():
    from threadpoolctl import threadpool_info

    from facelift.albedo import fit_albedo_and_light, fit_low_frequency, one_blas_thread

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    assert one_blas_thread(blas_threads)() == {1}
    assert blas_threads() == before
    assert all(hasattr(f, "__wrapped__") for f in (fit_albedo_and_light, fit_low_frequency))


def test_one_blas_thread_also_limits_a_blas_loaded_after_its_first_use():
    """scipy brings its own OpenBLAS; imported after the first fit, it is limited all the same."""
    import subprocess
    import sys

    code = (
        "from threadpoolctl import threadpool_info\n"
        "from facelift.albedo import one_blas_thread\n"
        "def blas(): return sorted((i['filepath'], i['num_threads']) for i in threadpool_info() if i['user_api'] == 'blas')\n"
        "one_blas_thread(blas)()\n"
        "import scipy.linalg\n"
        "print(len(blas()), {n for _, n in one_blas_thread(blas)()})\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if int(out[0]) < 2:
        pytest.skip("numpy and scipy share one BLAS library here")
    assert out[1] == "{1}"
