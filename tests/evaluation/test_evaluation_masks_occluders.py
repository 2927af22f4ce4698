import numpy as np
import pytest

from facelift.evaluation.masks import LEFT_EYE, LIPS_OUTER, RIGHT_BROW, RIGHT_EYE, static_skin_mask
from facelift.evaluation.occluders import KINDS, make_occluder, paste
from facelift.evaluation.runner import relight
from facelift.geometry.sh import directional_light_sh, irradiance, light_direction

R = 128


def _texel(uv, R):
    return int((1 - uv[1]) * R), int(uv[0] * R)


def test_skin_mask_excludes_eyes_brows_mouth_and_keeps_cheeks_and_nose(face_model):
    skin = static_skin_mask(face_model, R)
    uv = face_model.uv
    for idx in RIGHT_EYE + LEFT_EYE + RIGHT_BROW + LIPS_OUTER:
        assert not skin[_texel(uv[idx], R)], idx
    for idx in (50, 280, 4, 5, 205, 425):  # cheeks, nose, cheek below the eyes
        assert skin[_texel(uv[idx], R)], idx
    assert (skin == skin[:, ::-1]).mean() > 0.97  # symmetric layout, symmetric regions
    assert not skin[0].any()  # the top of the forehead (hair) is out


@pytest.mark.parametrize("kind", KINDS)
def test_occluders_are_reproducible_and_pasted_only_on_visible_texels(face_model, kind):
    a1, c1 = make_occluder(kind, face_model, R, np.random.default_rng(3))
    a2, c2 = make_occluder(kind, face_model, R, np.random.default_rng(3))
    assert np.array_equal(a1, a2) and np.array_equal(c1, c2)
    inside = face_model.texel_map(R).mask
    assert 0.01 < (a1[inside] > 0.5).mean() < 0.5
    tex = np.random.default_rng(0).uniform(0, 1, (R, R, 3)).astype(np.float32)
    hidden = (np.arange(R) // 4 % 2 == 0)[None, :] & np.ones((R, 1), bool)  # stripes not seen
    visible = inside & ~hidden
    occ, region = paste(tex, a1, c1, visible)
    assert region.any() and not region[hidden].any()
    assert np.array_equal(occ[~region], tex[~region]) and np.array_equal(occ[region], c1[region])


def test_relight_divides_out_the_old_shading_and_applies_the_new(face_model):
    normals = np.zeros((R, R, 3), np.float32)
    yy, xx = np.mgrid[0:R, 0:R] / R * 2 - 1
    zz = np.sqrt(np.clip(1 - xx ** 2 - yy ** 2, 0, 1))
    normals[...] = np.stack([xx, -yy, zz], -1) / np.maximum(np.sqrt(xx ** 2 + yy ** 2 + zz ** 2), 1e-6)[..., None]
    region = (xx ** 2 + yy ** 2) < 0.8
    albedo = np.full((R, R, 3), 0.4, np.float32)
    old = directional_light_sh(light_direction(0, 0), intensity=0.8, ambient=0.3)
    new = directional_light_sh(light_direction(50, 20), intensity=0.8, ambient=0.3)
    tex = (albedo * irradiance(normals, old)).astype(np.float32)
    relit, valid = relight(tex, normals, old, new, region)
    assert valid.mean() > 0.3
    e_new = irradiance(normals, new)
    k = relit[valid] / e_new[valid]  # = albedo * the brightness normalisation, the same everywhere
    assert np.allclose(k, k.mean(0), rtol=1e-4)
    same, valid2 = relight(tex, normals, old, old, region)
    assert np.allclose(same[valid2], tex[valid2], atol=1e-6)
