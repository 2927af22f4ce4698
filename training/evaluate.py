"""Validation figures on the held-out UV samples (val/): mean L1 of the re-rendered texture
(albedo x SH shading, eq. 3) against I_t(UV) over visible texels, for

  (a) the PCA albedo predicted by B-Net (eq. 2), lit by B-Net's SH;
  (b) the FAN albedo, lit by the same SH;
  (c) the FAN albedo on the DRN-displaced normals (FAN + DRN);
  (d) what the shipped pipeline does without a B-Net: PCA albedo and SH by least squares
      (facelift.albedo.fit_low_frequency, the robust stage), and the FAN albedo lit by that SH.

    python training/evaluate.py --data /work/data/uv128/val --bnet /work/data/runs/bnet/final \
        --bundle checkpoints --out docs/training/val_metrics.json

The B-Net is optional: --bnet DIR, else the bundle's own B-Net if it ships one. Without one
(the shipped bundle has none, so a fresh clone) rows (a)-(c) are left out ("pca", "fan",
"fan_drn", "grad_fan", "grad_fan_drn", fan_better_fraction, fan_over_pca_ratio and the "pca"
entry of albedo_diversity) and only the least-squares rows (d) are computed; every other key
is the same, and "bnet" is null:

    python training/evaluate.py --data /work/data/uv128/val --out /tmp/val_metrics_ls.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from facelift.albedo import fit_low_frequency, network_sources, stiff_pca_albedo
from facelift.face_model import FaceModel
from facelift.models import DRN, FAN, BNet
from facelift.training.data import UVDataset
from facelift.training.loop import load_pca
from facelift.training.losses import displaced_normals, gradient_loss, masked_l1, render_texture

REPO = Path(__file__).resolve().parents[1]


@torch.no_grad()
def evaluate(data, bnet_dir, fan_dir, drn_dir, face_model, batch_size=32, limit=None):
    """The figures as a dict (see the module docstring); bnet_dir=None skips the B-Net rows."""
    bnet = BNet.from_pretrained(bnet_dir).float().eval() if bnet_dir else None
    fan = FAN.from_pretrained(fan_dir).float().eval()
    drn = DRN.from_pretrained(drn_dir).float().eval() if drn_dir else None
    res = fan.config["resolution"]
    ds = UVDataset(data, resolution=res, limit=limit, with_position=drn is not None)
    pca = load_pca(face_model, res, bnet.n_albedo) if bnet is not None else None
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    colour_means = {"texture": [], "pca": [], "fan": [], "pca_ls": []}
    if bnet is None:
        del colour_means["pca"]
    model = FaceModel.load(face_model)
    out = {k: [] for k in ("pca", "fan", "fan_drn", "grad_fan", "grad_fan_drn", "pca_ls", "fan_ls", "fan_drn_ls",
                           "grad_fan_ls", "grad_fan_drn_ls", "displacement_abs_mm")}
    for b in loader:
        tex, vis, nrm, mask = b["texture"], b["visibility"], b["normal"], b["mask"]
        # the pipeline's low-frequency stage (robust least squares), per image
        lows = [fit_low_frequency(model, *(x[i].permute(1, 2, 0).numpy() for x in (tex, nrm)), vis[i, 0].numpy() > 0.5)
                for i in range(len(tex))]
        if fan.inputs == ("texture",):
            alb = fan(tex)
        else:  # a FAN fed the robust stage's maps (FAN v2), built as the pipeline builds them
            rows = []
            for i, low in enumerate(lows):
                src = network_sources(tex[i].permute(1, 2, 0).numpy(), vis[i, 0].numpy(),
                                      nrm[i].permute(1, 2, 0).numpy(), low,
                                      stiff_pca_albedo(model, low, tex.shape[-1]) if "albedo_stiff" in fan.inputs
                                      else None)
                rows.append(torch.cat([torch.from_numpy(np.ascontiguousarray(src[k], np.float32)).permute(2, 0, 1)
                                       for k in fan.inputs]))
            alb = fan(torch.stack(rows))
        maps_for_colour = [("texture", tex), ("fan", alb)]
        sh = None
        if bnet is not None:
            bt = tex if bnet.resolution == res else torch.nn.functional.interpolate(
                tex, size=(bnet.resolution,) * 2, mode="bilinear", align_corners=False, antialias=True)
            coeffs, sh = bnet(bt)
            alb_pca = pca(coeffs)
            out["pca"] += masked_l1(tex, render_texture(alb_pca, nrm, sh), vis).tolist()
            syn = render_texture(alb, nrm, sh)
            maps_for_colour.append(("pca", alb_pca))
            out["fan"] += masked_l1(tex, syn, vis).tolist()
            for i in range(len(tex)):
                out["grad_fan"].append(float(gradient_loss(tex[i:i + 1], syn[i:i + 1], vis[i:i + 1])))
        for name, maps in maps_for_colour:
            colour_means[name].append(((maps * vis).sum((2, 3)) / vis.sum((2, 3)).clamp_min(1)).numpy())
        rate = drn(tex) if drn is not None else None
        n2 = displaced_normals(nrm, b["position"], rate, mask) if drn is not None else None
        if rate is not None:  # positions are in metres
            out["displacement_abs_mm"] += ((rate.abs() * vis).sum((1, 2, 3)) / vis.sum((1, 2, 3)).clamp_min(1)
                                           * 1e3).tolist()
        if n2 is not None and sh is not None:
            syn2 = render_texture(alb, n2, sh)
            out["fan_drn"] += masked_l1(tex, syn2, vis).tolist()
            for i in range(len(tex)):
                out["grad_fan_drn"].append(float(gradient_loss(tex[i:i + 1], syn2[i:i + 1], vis[i:i + 1])))
        for i, low in enumerate(lows):  # the robust least squares, per image, as in FaceLift._low_frequency
            sh_ls = torch.from_numpy(low.sh)[None]
            alb_ls = torch.from_numpy(low.albedo).permute(2, 0, 1)[None]
            sl = slice(i, i + 1)
            out["pca_ls"] += masked_l1(tex[sl], render_texture(alb_ls, nrm[sl], sh_ls), vis[sl]).tolist()
            syn_ls = render_texture(alb[sl], nrm[sl], sh_ls)
            out["fan_ls"] += masked_l1(tex[sl], syn_ls, vis[sl]).tolist()
            out["grad_fan_ls"].append(float(gradient_loss(tex[sl], syn_ls, vis[sl])))
            if n2 is not None:
                syn2_ls = render_texture(alb[sl], n2[sl], sh_ls)
                out["fan_drn_ls"] += masked_l1(tex[sl], syn2_ls, vis[sl]).tolist()
                out["grad_fan_drn_ls"].append(float(gradient_loss(tex[sl], syn2_ls, vis[sl])))
            colour_means["pca_ls"].append(((alb_ls * vis[sl]).sum((2, 3)) / vis[sl].sum((2, 3)).clamp_min(1)).numpy())
    diversity = {k: np.concatenate(v).std(0).round(4).tolist() for k, v in colour_means.items()}
    summary = {"samples": len(ds), "resolution": res, "data": str(data)}
    for k, v in out.items():
        if v:
            a = np.asarray(v)
            summary[k] = {"mean": round(float(a.mean()), 5), "median": round(float(np.median(a)), 5),
                          "std": round(float(a.std()), 5)}
    if bnet is not None:
        pca_a, fan_a = np.asarray(out["pca"]), np.asarray(out["fan"])
        summary["fan_better_fraction"] = round(float((fan_a < pca_a).mean()), 4)
        summary["fan_over_pca_ratio"] = round(float(fan_a.mean() / pca_a.mean()), 4)
    ls_p, ls_f = np.asarray(out["pca_ls"]), np.asarray(out["fan_ls"])
    summary["fan_better_fraction_ls"] = round(float((ls_f < ls_p).mean()), 4)
    summary["fan_over_pca_ratio_ls"] = round(float(ls_f.mean() / ls_p.mean()), 4)
    # spread of the mean albedo colour across faces (skin tone diversity), against the textures'
    summary["albedo_diversity"] = diversity
    return summary


def bundle_bnet(bundle: Path) -> str | None:
    """The B-Net folder a bundle ships (config.json's components.bnet), or None."""
    try:
        name = json.loads((bundle / "config.json").read_text()).get("components", {}).get("bnet", "bnet")
    except (OSError, ValueError):
        name = "bnet"
    if name and (bundle / name / "model.safetensors").is_file():
        return str(bundle / name)
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/data/uv128/val")
    ap.add_argument("--bundle", default=str(REPO / "checkpoints"), help="FAN, DRN and face model from here")
    ap.add_argument("--bnet", default=None,
                    help="trained B-Net (default: the bundle's if it ships one, else none: least-squares rows only)")
    ap.add_argument("--fan", default=None)
    ap.add_argument("--drn", default=None)
    ap.add_argument("--face-model", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "docs/training/val_metrics.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = Path(args.bundle)
    bnet = args.bnet or bundle_bnet(bundle)
    if bnet is not None and not Path(bnet).is_dir():
        ap.error(f"--bnet {bnet}: no such directory")
    print(f"B-Net: {bnet}" if bnet else "no B-Net (none given, none in the bundle): least-squares rows only")
    t0 = time.time()
    summary = evaluate(args.data, bnet, args.fan or bundle / "fan", args.drn or bundle / "drn",
                       args.face_model or bundle / "face_model.safetensors", limit=args.limit)
    summary.update({"bnet": str(bnet) if bnet else None, "bundle": str(bundle),
                    "wall_seconds": round(time.time() - t0, 1),
                    "metric": "mean over images of mean |I_t - albedo * shading(n, SH_bnet)| per visible texel "
                              "and RGB channel, values in [0, 1]; *_ls: lit by the least-squares SH instead; "
                              "grad_*: E_grad (mean |grad I_t - grad I_syn|); displacement_abs_mm: mean |r_d| of the DRN "
                              "on visible texels; albedo_diversity: RGB std over "
                              "faces of each face's mean colour on visible texels"})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
