"""A low-frequency PCA albedo model (eq. 2) learned from in-the-wild UV textures.

BFM's albedo model is registration-gated, so we learn ours from the training textures:

1. Downsample textures to the model's albedo resolution A (visibility-weighted averages).
2. Alternate:
   a. per image, SH lighting (eq. 3) by least squares given its current albedo estimate
      (the PCA reconstruction; the mean on the first pass), under a white-light prior:
      the light has no colour and its mean irradiance on the visible face is the data
      set's median (found on the first pass). Without it, per-channel lighting would absorb every face's skin tone and
      brightness and the model would learn one tone for everybody;
   b. de-lit albedo = texture / shading on visible texels with enough shading;
   c. PCA that tolerates missing texels (EM-PCA): invisible texels are filled with the
      mirror texel where that one is visible (the layout is left-right symmetric), else
      with the current low-rank reconstruction; mean and basis by truncated SVD; repeat.
3. The basis is scaled by the component standard deviations (coefficients ~ N(0, 1)),
   stored in the face model (`albedo_mean` (3, A, A), `albedo_basis` (K, 3, A, A)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry.sh import estimate_sh, irradiance, mean_irradiance


@dataclass
class AlbedoPCAResult:
    mean: np.ndarray  # (3, A, A)
    basis: np.ndarray  # (K, 3, A, A), scaled by std
    explained_variance_ratio: np.ndarray  # (K,) of the total variance of the completed data
    singular_std: np.ndarray  # (K,)
    history: list  # per outer iteration: mean |texture - albedo * shading| on visible texels
    n_samples: int
    brightness: float | None = None  # the white-light prior's mean irradiance (None: no prior)


def downsample(texture: torch.Tensor, visibility: torch.Tensor, normal: torch.Tensor, size: int):
    """(N,3,R,R), (N,1,R,R), (N,3,R,R) -> the same at ``size``: visibility-weighted texture,
    visibility = fraction visible >= 0.5, renormalised normals."""
    f = max(texture.shape[-1] // size, 1)
    if f == 1:
        return texture, visibility, normal
    vsum = F.avg_pool2d(visibility, f)
    tex = F.avg_pool2d(texture * visibility, f) / vsum.clamp_min(1e-6)
    nrm = F.avg_pool2d(normal, f)
    nrm = nrm / nrm.norm(dim=1, keepdim=True).clamp_min(1e-6)
    return tex, (vsum >= 0.5).float(), nrm


def fill_outside(maps: np.ndarray, mask: np.ndarray, passes: int = 64) -> np.ndarray:
    """Extend values from inside ``mask`` (A, A) outwards (mean of filled 3x3 neighbours) so
    bilinear resampling at the layout's border does not mix in zeros. maps (..., A, A)."""
    x = torch.from_numpy(np.ascontiguousarray(maps, np.float32))
    lead = x.shape[:-2]
    x = x.reshape(-1, 1, *x.shape[-2:])
    m = torch.from_numpy(mask.astype(np.float32))[None, None].expand(x.shape[0], 1, -1, -1).clone()
    x = x * m
    k = torch.ones(1, 1, 3, 3)
    for _ in range(passes):
        if bool(m.min() > 0):
            break
        s = F.conv2d(x * m, k, padding=1)
        c = F.conv2d(m, k, padding=1)
        new = (c > 0) & (m == 0)
        x = torch.where(new, s / c.clamp_min(1), x)
        m = torch.where(new, torch.ones_like(m), m)
    return x.reshape(*lead, *x.shape[-2:]).numpy()


def _estimate_sh_batched(tex, alb, nrm, vis, chunk=512, **prior):
    """Per-image SH (N, 3, 9) from flattened (N, M, 3) arrays with weights vis (N, M)."""
    out = []
    for i in range(0, tex.shape[0], chunk):
        out.append(estimate_sh(tex[i:i + chunk], alb[i:i + chunk], nrm[i:i + chunk], vis[i:i + chunk],
                               ridge=1e-3, **prior))
    return torch.cat(out)


def learn_albedo_pca(texture: torch.Tensor, visibility: torch.Tensor, normal: torch.Tensor, mask: np.ndarray,
                     mirror_cols: bool = True, n_components: int = 80, outer_iterations: int = 3,
                     em_iterations: int = 4, min_shading: float = 0.15, seed: int = 0,
                     white_light: float = 10.0, log=print) -> AlbedoPCAResult:
    """Learn mean + K-component albedo PCA at the resolution of ``mask`` (A, A).

    texture (N,3,A,A) in [0,1], visibility (N,1,A,A), normal (N,3,A,A) at resolution A.
    ``white_light`` is the weight of the white-light prior (0: per-channel lighting, free).
    """
    torch.manual_seed(seed)
    N = texture.shape[0]
    A = mask.shape[0]
    inside = torch.from_numpy(mask.reshape(-1))
    idx = torch.nonzero(inside)[:, 0]
    # mirror partner of every inside texel (column j <-> A-1-j), restricted to inside texels
    grid = torch.arange(A * A).reshape(A, A)
    mirror_full = grid.flip(1).reshape(-1)
    pos_in = torch.full((A * A,), -1, dtype=torch.long)
    pos_in[idx] = torch.arange(len(idx))
    mirror = pos_in[mirror_full[idx]]  # (M,), -1 if the mirror texel is outside the layout

    def flat(x):  # (N, C, A, A) -> (N, M, C)
        return x.flatten(2)[:, :, idx].permute(0, 2, 1).contiguous()

    tex, nrm = flat(texture.float()), flat(normal.float())
    vis = flat(visibility.float())[..., 0] > 0.5  # (N, M)
    M = len(idx)
    D = M * 3

    # initial albedo: the per-texel mean of the visible texture, scaled up for shading
    tsum = (tex * vis[..., None]).sum(0)
    cnt = vis.sum(0).clamp_min(1)[:, None]
    mean = (tsum / cnt).reshape(-1)
    recon = mean[None].expand(N, D).clone()
    basis = torch.zeros(0, D)
    std = torch.zeros(0)
    history = []
    prior = {}
    brightness = None
    for it in range(outer_iterations):
        alb = recon.reshape(N, M, 3).clamp(0.02, 1.0)
        if white_light > 0 and brightness is None:
            sh = _estimate_sh_batched(tex, alb, nrm, vis.float(), colour_prior=white_light)
            brightness = float(mean_irradiance(sh, nrm, vis.float()).median())
            prior = {"colour_prior": white_light, "brightness": brightness, "brightness_prior": white_light}
            log(f"albedo PCA: white-light prior, mean irradiance {brightness:.4f} (median)")
        sh = _estimate_sh_batched(tex, alb, nrm, vis.float(), **prior)
        shading = irradiance(nrm, sh)  # (N, M, 3)
        err = ((tex - alb * shading).abs().mean(-1) * vis).sum() / vis.sum()
        history.append(float(err))
        log(f"albedo PCA outer {it}: lighting fitted, mean L1 on visible texels {float(err):.4f}")
        ok = vis & (shading.min(-1).values > min_shading)
        delit = (tex / shading.clamp_min(1e-3)).clamp(0, 1.2)
        # missing data: mirror texel, else current reconstruction
        obs = delit.clone()
        have = ok.clone()
        if mirror_cols:
            mvalid = mirror >= 0
            mi = mirror.clamp_min(0)
            use_m = (~have) & mvalid[None] & ok[:, mi]
            obs[use_m] = delit[:, mi][use_m]
            have = have | use_m
        obs = obs.reshape(N, D)
        have3 = have[..., None].expand(N, M, 3).reshape(N, D)
        X = torch.where(have3, obs, recon)
        for em in range(em_iterations):
            mean = X.mean(0)
            Xc = X - mean
            U, S, V = torch.svd_lowrank(Xc, q=n_components + 10, niter=3)
            U, S, V = U[:, :n_components], S[:n_components], V[:, :n_components]
            recon = mean + (U * S) @ V.T
            X = torch.where(have3, obs, recon)
        total_var = float((X - X.mean(0)).pow(2).sum())
        std = S / np.sqrt(max(N - 1, 1))
        basis = V.T  # (K, D)
        evr = (S.pow(2) / total_var).numpy()
        log(f"albedo PCA outer {it}: {n_components} components explain {evr.sum():.1%} of the variance "
            f"(first 5: {np.round(evr[:5], 3).tolist()}); observed fraction {float(have.float().mean()):.2f}")
    alb = recon.reshape(N, M, 3).clamp(0.02, 1.0)
    sh = _estimate_sh_batched(tex, alb, nrm, vis.float(), **prior)
    err = ((tex - alb * irradiance(nrm, sh)).abs().mean(-1) * vis).sum() / vis.sum()
    history.append(float(err))
    log(f"albedo PCA final: mean L1 on visible texels {float(err):.4f}")

    def unflat(v):  # (..., D) -> (..., 3, A, A)
        lead = v.shape[:-1]
        full = torch.zeros(*lead, A * A, 3)
        full[..., idx, :] = v.reshape(*lead, M, 3)
        return full.reshape(*lead, A, A, 3).movedim(-1, -3).numpy()

    mean_map = fill_outside(unflat(mean), mask)
    basis_maps = fill_outside(unflat(basis * std[:, None]), mask)
    return AlbedoPCAResult(mean_map.astype(np.float32), basis_maps.astype(np.float32), evr.astype(np.float32),
                           std.numpy().astype(np.float32), history, N, brightness)


def with_albedo(model, result: AlbedoPCAResult, description: dict):
    """A copy of the FaceModel with the learned albedo mean and basis."""
    from ..face_model import FaceModel

    cfg = dict(model.config)
    cfg.update(description)
    return FaceModel(model.mean_shape, model.shape_basis, model.triangles, model.uv, model.mirror,
                     result.mean, result.basis, config=cfg)
