"""Training configs. Defaults are the paper's settings (section 4.1): Adam, lr 2e-5,
w_a = 1, w_pixel = 0.005, w_percep = 0.3, w_grad = 0.5, w_const = 1, w_smooth = 20.

Every script accepts ``--config file.(json|yaml)`` and ``--set key=value`` overrides and
records the resolved config as ``train_config.json`` next to its checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class TrainConfig:
    data: str = ""  # shard folder (index.json) made by training/prepare_data.py; required
    out: str = "runs/run"  # run folder: state/, final/, losses.csv, loss_curve.png
    resolution: int = 256  # network resolution (128 | 256); the paper uses 256
    batch_size: int = 16
    lr: float = 2e-5  # paper
    betas: tuple = (0.9, 0.999)
    max_steps: int = 100_000
    max_minutes: float | None = None  # wall-clock budget: checkpoint and stop gracefully
    checkpoint_every: int = 200  # steps
    log_every: int = 1
    seed: int = 0
    limit: int | None = None  # use only the first N samples
    num_workers: int = 0
    threads: int | None = None  # torch.set_num_threads per process
    face_model: str = "checkpoints/face_model.safetensors"
    # 0: constant learning rates; N: every optimiser's lr follows a half cosine from its value down
    # to lr_final_ratio x it at step N (counted from this run's step 0), then stays there
    lr_decay_steps: int = 0
    lr_final_ratio: float = 0.1


@dataclass
class BNetConfig(TrainConfig):
    w_a: float = 1.0  # eq. 4 prior weight
    n_albedo: int | None = None  # None: all components of the face model
    # White-light prior on the predicted SH (geometry.sh.light_prior); not in the paper, so 0 by
    # default. With a free per-channel light, skin tone goes into the light's colour.
    w_light: float = 0.0
    light_brightness: float | None = None  # None: the face model's albedo_light_brightness


LIGHTING_SOURCES = ("bnet", "least_squares")
FAN_RECIPES = ("paper", "v2")


@dataclass
class FANConfig(TrainConfig):
    bnet: str = "runs/bnet/final"  # trained B-Net: lighting + real albedo samples for D
    # SH lighting of the re-rendered texture (eq. 7): the B-Net's (paper) or the per-sample
    # least-squares fit of training/fit_lighting.py, which is what the pipeline uses without a B-Net
    lighting: str = "bnet"
    # the GAN's real samples x (eq. 6): the B-Net's PCA albedos (paper) or the PCA albedos of the
    # per-sample least-squares fit, the closed-form optimum of the same eq.-4-style objective
    real_samples: str = "bnet"
    w_pixel: float = 0.005
    w_percep: float = 0.3
    w_gan: float = 1.0
    vgg: str = "../shared/weights/vgg16_imagenet_lpips.safetensors"
    percep_resolution: int | None = None  # None: the network resolution
    ngf: int = 16
    ndf: int = 64
    lr_d: float | None = None  # None: same as lr
    flip_features: bool = True  # False: the ablation without the flipped-feature concatenation
    # ---- recipe "v2" (facelift.training.fan_v2; training/configs/fan_v2.json): the FAN fed the
    # robust stage's de-lit texture, visibility, skin confidence and PCA albedo, a gated output,
    # synthetic occluders and random relighting, losses as per-texel means. Ignored by "paper".
    recipe: str = "paper"
    inputs: list | None = None  # None: the recipe's (paper: texture; v2: delit, visibility, confidence, albedo_pca)
    output_activation: str | None = None  # None: paper sigmoid, v2 gated
    depth: int | None = None  # stride-2 levels (None: to 1x1, the paper)
    upsample: str = "transpose"
    n_layers_d: int = 3
    disc_resolution: int | None = None  # the discriminator sees albedos resized to this (None: as trained)
    w_consistency: float = 0.0  # |FAN(relit) - FAN(original)|
    w_lowfreq: float = 0.0  # |blur(albedo) - PCA albedo| where the photo is not trusted
    occlusion_prob: float = 0.0  # share of samples given synthetic occluders
    occluder_anchor_prob: float = 0.0  # share of those occluders centred on a brow, eye, the nose or mouth
    occluder_lock_prob: float = 0.0  # share of those occluders that are locks of hair (coherent strand bundles)
    occluder_extra_lock_prob: float = 0.0  # share of occluded samples given a lock of hair on top of their occluders
    occluder_frames_prob: float = 0.0  # share of occluded samples given glasses frames (rims, shadow, tint) on top
    relight: bool = False  # run every batch a second time, relit by random SH, for the consistency term
    init_from: str | None = None  # a saved FAN (save_pretrained folder) to start from, e.g. 128 -> 256
    grad_share_every: int = 100  # steps between measurements of each term's gradient on the albedo
    # gate supervision (gated output): BCE asking the gate to close (0) on synthetic occluders and to
    # pass the de-lit texture through (1) on clean, trusted skin; 0 leaves the gate to E_pixel alone
    w_gate: float = 0.0
    gate_by: str | None = None  # a one-channel input (e.g. "confidence") that caps the gate: g * map
    gate_power: float = 1.0  # the cap is map ** gate_power (> 1: a half-trusted texel passes less through)
    prefill_from: str | None = None  # a 3-channel input (e.g. "albedo_stiff") the network sees where gate_by is low
    prefill_power: float = 1.0  # the first input's weight there is map ** prefill_power
    # rerun the robust low-frequency stage on the occluded (and relit) input, as the pipeline does at
    # inference, so the network is fed the confidence, stiff albedo and light an occluder really gives
    # (False: the clean photo's precomputed fit, which an occluder does not move)
    refit: bool = False
    # the stiff outlier model's prior in that refit (None: fit_low_frequency's default, as at inference)
    robust_prior_weight: float | None = None
    refit_workers: int = 0  # processes for the refit (0: in the training process); 14 on a 16-core GPU machine
    # E_pixel again, averaged over the synthetically occluded texels only (they are few, so in
    # E_pixel's mean they weigh little): what the photo showed before the occluder
    w_occluded: float = 0.0
    # False: the ablation without the robust stage's skin confidence; every visible texel is taken
    # for clean skin (network input, loss weights) and the stiff albedo input is the PCA albedo
    robust_confidence: bool = True


@dataclass
class DRNConfig(TrainConfig):
    bnet: str = "runs/bnet/final"
    fan: str = "runs/fan/final"
    lighting: str = "bnet"  # as FANConfig.lighting
    w_grad: float = 0.5
    w_const: float = 1.0
    w_smooth: float = 20.0
    ngf: int = 16
    flip_features: bool = True
    detail_loss: str = "grad"  # "grad": E_grad of eq. 9; "pixel": |I_t - I_syn| instead (the ablation)
    max_rate: float = 0.004  # metres, DRN output bound
    # Delta d enters E_const / E_smooth in metres * displacement_unit_scale (100 = cm);
    # the paper does not state its unit, see the model card.
    displacement_unit_scale: float = 100.0
    # ---- recipe "v2" (facelift.training.drn_v2; training/configs/drn_v2.json): the DRN fed the
    # robust stage's maps, E_grad only where the photo shows skin, the regularisers in mm,
    # synthetic occluders kept flat, trained on the faces old enough to have wrinkles.
    recipe: str = "paper"
    inputs: list | None = None  # None: the recipe's (paper: texture; v2: texture, delit, visibility, confidence)
    depth: int | None = None
    upsample: str = "transpose"
    min_age: int | None = None  # UTKFace ages: keep faces of at least this age ...
    keep_younger: int = 0  # ... and every N-th younger one (0: none)
    occlusion_prob: float = 0.0
    w_flat: float = 0.0  # mean |r_d| (mm) where the input is not skin (occluders, hair, unseen)
    # the albedo the DRN's render uses: blur(FAN) + albedo_detail * (FAN - blur(FAN)); 1 = the FAN
    # albedo as it is (the paper), 0 = every fine-scale gradient must come from the geometry
    albedo_detail: float = 1.0
    albedo_blur: float = 2.0  # texels (at the training resolution) of that blur
    init_from: str | None = None
    output_pyramid: list | None = None  # v2: Gaussian sigmas (texels) summed before the tanh
    prior_steps: int = 0  # v2: warm start: steps regressing to the crease prior ...
    w_prior: float = 0.0  # ... with this weight (mean squared mm) ...
    prior_mm: float = 1.0  # ... of mm per unit of high-passed log luminance ...
    prior_sigma: float = 3.0  # ... high-passed at this sigma (texels)
    prior_fine_sigma: float = 0.0  # ... after a blur of this sigma (texels; 0: none): a band pass
    prior_erode: int = 0  # ... on trusted skin shrunk by this many texels (v3: thin occluders' halos) ...
    prior_features_flat: bool = False  # ... and 0 on the eyes, brows and mouth, kept flat by E_flat
    cavity: float = 0.0  # v2: render x (1 + cavity x (r_d - blur(r_d)) in mm): crease occlusion
    cavity_sigma: float = 4.0  # texels of that blur
    grad_eps: float = 0.0  # v2: E_grad with the Charbonnier penalty of this eps (0: |x|, the paper)
    squared_regularisers: bool = False  # v2: E_const and E_flat as mean squared mm, not mean |mm|
    const_sigma: float = 0.0  # v2: E_const on r_d blurred by this many texels (0: on r_d, the paper)
    output_init_scale: float = 1.0  # v2: the last convolution's initial weights times this
    grad_share_every: int = 100


def _coerce(value: str, current: Any):
    if isinstance(current, bool):
        return value.lower() in ("1", "true", "yes")
    if value.lower() in ("none", "null"):
        return None
    if isinstance(current, int) and not isinstance(current, bool):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, tuple):
        return tuple(float(v) for v in value.split(","))
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def load_config(cls, path: str | None = None, overrides: list[str] | None = None, **kwargs):
    """Defaults <- file (JSON or YAML) <- kwargs <- ``key=value`` overrides."""
    values: dict[str, Any] = {}
    if path:
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            values.update(yaml.safe_load(text) or {})
        else:
            values.update(json.loads(text))
    values.update({k: v for k, v in kwargs.items() if v is not None})
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"unknown config key(s) for {cls.__name__}: {unknown}")
    cfg = cls(**values)
    for item in overrides or []:
        key, _, value = item.partition("=")
        if key not in names:
            raise ValueError(f"unknown config key {key!r} for {cls.__name__}")
        setattr(cfg, key, _coerce(value, getattr(cfg, key)))
    if isinstance(cfg.betas, list):
        cfg.betas = tuple(cfg.betas)
    if hasattr(cfg, "recipe") and cfg.recipe not in FAN_RECIPES:
        raise ValueError(f"recipe must be one of {FAN_RECIPES}, got {cfg.recipe!r}")
    for key in ("lighting", "real_samples"):
        if hasattr(cfg, key) and getattr(cfg, key) not in LIGHTING_SOURCES:
            raise ValueError(f"{key} must be one of {LIGHTING_SOURCES}, got {getattr(cfg, key)!r}")
    return cfg


def config_dict(cfg) -> dict:
    d = asdict(cfg)
    d["_class"] = type(cfg).__name__
    return d


def save_config(cfg, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(config_dict(cfg), indent=2) + "\n")


__all__ = ["TrainConfig", "BNetConfig", "FANConfig", "DRNConfig", "load_config", "save_config", "config_dict",
           "dataclasses", "field"]
