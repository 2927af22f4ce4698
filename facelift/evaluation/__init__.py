"""Evaluation harness: quality metrics (docs/EVALUATION.md) and the `facelift evaluate` command.

Modules: `metrics` (pure functions), `masks` (skin mask in UV), `occluders` (synthetic
occluders in UV), `image_occluders` (occluders drawn into the photo), `perturbations` (photo
edits: exposure, white balance, gamma, JPEG, half size, cast shadow), `landmarks68` (iBUG
68-point correspondence, ground-truth loaders), `runner` (per-image and folder evaluation),
`report` (docs/EVALUATION.md), `figures` (comparison image).
"""

from .metrics import (
    LPIPSMetric,
    change_ratio,
    high_pass,
    masked_l1,
    mirror_error,
    nme,
    self_occluded,
    sharpness,
    summarise,
)
from .runner import (
    METRICS,
    albedos_for_texture,
    collect_images,
    evaluate_paths,
    evaluate_reconstruction,
    format_table,
    image_occlusion,
    photo_consistency,
)

__all__ = ["LPIPSMetric", "change_ratio", "high_pass", "masked_l1", "mirror_error", "nme", "self_occluded",
           "sharpness", "summarise", "METRICS", "albedos_for_texture", "collect_images", "evaluate_paths",
           "evaluate_reconstruction", "format_table", "image_occlusion", "photo_consistency"]
