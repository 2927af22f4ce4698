"""Convert torchvision's ImageNet VGG-16 checkpoint (a .pth you downloaded yourself, e.g.
``vgg16-397923af.pth`` from download.pytorch.org) into the safetensors file that the
perceptual loss loads (``--set vgg=OUT.safetensors``; facelift.models.VGG16Features).

    python training/convert_vgg16.py vgg16-397923af.pth vgg16_imagenet.safetensors

The .pth is read with ``torch.load(path, map_location="cpu", weights_only=True)``: PyTorch's
restricted unpickler, which rebuilds tensors and plain containers only and refuses to
import or call arbitrary objects, so a tampered file cannot run code. Still, convert only a
file you fetched yourself from a source you trust. Only the ``features.{i}.weight/bias``
tensors of the 13 convolutions are kept (the classifier is not used); they are written as
contiguous float32, and the result is loaded back once as a check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from facelift.errors import WeightsError
from facelift.models.vgg import VGG16Features


def feature_keys() -> list[str]:
    """The state-dict keys VGG16Features loads (torchvision's ``features.*`` convolutions)."""
    return list(VGG16Features().state_dict())


def convert(src: str | Path, dst: str | Path) -> list[str]:
    """Write the ``features.*`` tensors of the torchvision checkpoint ``src`` to the
    safetensors file ``dst``; returns the keys written. Raises WeightsError when ``src``
    cannot be read by the restricted loader or lacks (or misshapes) a tensor."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise WeightsError(f"{src}: no such file")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors of every kind: one message
        raise WeightsError(f"{src} could not be read as a PyTorch state dict with the restricted "
                           f"loader (torch.load(..., weights_only=True)): {e}") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{src} holds a {type(state).__name__}, not a state dict")
    expected = VGG16Features().state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise WeightsError(f"{src} is not torchvision's VGG-16: it lacks {len(missing)} tensor(s), "
                           f"e.g. {', '.join(missing[:3])}")
    out = {}
    for key, target in expected.items():
        t = state[key]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(target.shape):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise WeightsError(f"{src}: {key} is {shape}, VGG-16 needs {tuple(target.shape)}")
        out[key] = t.detach().to(torch.float32).contiguous()
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(dst), metadata={"source": src.name, "format": "pt",
                                       "converted_by": "training/convert_vgg16.py"})
    VGG16Features.from_safetensors(dst)  # check: loads as the perceptual loss will
    return list(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="torchvision VGG-16 checkpoint (.pth) you downloaded yourself")
    ap.add_argument("dst", help="output .safetensors")
    args = ap.parse_args(argv)
    keys = convert(args.src, args.dst)
    print(f"wrote {args.dst}: {len(keys)} tensors ({keys[0]} ... {keys[-1]})")


if __name__ == "__main__":
    main()
