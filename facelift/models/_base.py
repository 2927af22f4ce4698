"""Common base of FaceLift networks: a JSON config, safetensors save/load, checks.

Every network is an ``nn.Module`` whose constructor keyword arguments are its config.
``save_pretrained(dir)`` writes ``config.json`` (the config plus ``_class_name``) and
``model.safetensors``; ``from_pretrained(dir)`` rebuilds the network from them. Loading
is strict: a missing file, an incompatible config or missing, unexpected or wrongly
shaped tensors raise :class:`~facelift.errors.WeightsError`. Pickle files are never read.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model
from torch import nn

from facelift._jsonfile import read_json_file
from facelift.errors import WeightsError
from facelift.models._config import Arg, bind, signature

T = TypeVar("T", bound="FaceLiftModel")

CONFIG_NAME = constants.CONFIG_NAME  # "config.json"
WEIGHTS_NAME = constants.SAFETENSORS_SINGLE_FILE  # "model.safetensors"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_MODEL_CARD = """---
{{ card_data }}
---

# {{ class_name }} (FaceLift)

Load with `facelift.models.{{ class_name }}.from_pretrained(path)`: the constructor
arguments are in `config.json`, the weights in `model.safetensors`.
"""


class FaceLiftModel(nn.Module, PyTorchModelHubMixin, library_name="facelift", tags=["facelift"],  # type: ignore[call-arg]
                    model_card_template=_MODEL_CARD):
    """Base class: a subclass lists its constructor arguments once, in ``config_args``
    (see :mod:`facelift.models._config`), takes ``(*args, **kwargs)`` in ``__init__`` and
    calls ``self._register_config(*args, **kwargs)``, which checks them, keeps the config
    and sets each normalised value as an attribute."""

    _config: dict[str, Any]
    model_type: ClassVar[str | None] = None  # registry name, set by @register_model
    config_args: ClassVar[tuple[Arg, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "config_args" in vars(cls):  # the signature the table describes, before the Hub mixin reads it
            init = cls.__init__

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                init(self, *args, **kwargs)

            __init__.__signature__ = signature(cls.config_args)  # type: ignore[attr-defined]
            __init__.__qualname__ = f"{cls.__qualname__}.__init__"
            __init__.__doc__ = init.__doc__
            cls.__init__ = __init__  # type: ignore[method-assign]
        super().__init_subclass__(**kwargs)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments this network was built with (a copy)."""
        return dict(self._config)

    def with_config(self: T, **changes: Any) -> T:
        """The same network (its weights, on its device, in its train/eval mode) under its config with
        `changes`, checked as the constructor checks them: e.g. ``drn.with_config(detail_gate=0.2)``."""
        net = type(self)(**{**self._config, **changes})
        net.load_state_dict(self.state_dict())
        return net.to(next(self.parameters()).device).train(self.training)

    def _register_config(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Bind a constructor call to ``config_args``, check and normalise each value, keep the
        config to save and set each value as an attribute; returns the values by name."""
        values, self._config = bind(type(self), self.config_args, args, kwargs)
        self._hub_mixin_config = dict(self._config)
        for name, value in values.items():
            setattr(self, name, value)
        return values

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._config.items()) if hasattr(self, "_config") else ""

    # ----------------------------------------------------------------- saving
    def generate_model_card(self, *args: Any, **kwargs: Any):
        return super().generate_model_card(*args, class_name=type(self).__name__, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        save_model(self, str(save_directory / WEIGHTS_NAME))
        config = {"_class_name": type(self).__name__, **self._config}
        (save_directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls: type[T], pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> T:
        """Load a network saved with ``save_pretrained`` (a local directory or a Hub repo
        id). Keyword arguments override config values. Returns the network in eval mode."""
        source = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(source):
            if not os.path.isfile(os.path.join(source, CONFIG_NAME)):
                raise WeightsError(f"{source}: no {CONFIG_NAME} (not a directory written by save_pretrained)")
            if not os.path.isfile(os.path.join(source, WEIGHTS_NAME)):
                raise WeightsError(f"{source}: no {WEIGHTS_NAME}")
            read_json_file(os.path.join(source, CONFIG_NAME))  # capped before the mixin reads it uncapped
            try:
                return super().from_pretrained(source, **kwargs)
            except json.JSONDecodeError as e:
                raise WeightsError(f"{os.path.join(source, CONFIG_NAME)} is not valid JSON: {e}") from e
        if os.path.exists(source) or not _HUB_ID.match(source):
            raise WeightsError(f"{source}: not a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")
        from facelift._hub import is_offline, translate_error

        if kwargs.get("local_files_only") is None:  # HF_HUB_OFFLINE as set now, not at import
            kwargs["local_files_only"] = is_offline()
        try:
            _check_hub_config(source, kwargs)
            return super().from_pretrained(source, **kwargs)
        except WeightsError:
            raise
        except (OSError, EntryNotFoundError, HFValidationError, HfHubHTTPError) as e:
            offline = bool(kwargs["local_files_only"])
            raise translate_error(e, source, kwargs.get("revision"), offline=offline,
                                  cache_dir=kwargs.get("cache_dir"),
                                  local_example=f"{cls.__name__}.from_pretrained('path/to/folder')") from e

    @classmethod
    def _from_pretrained(
        cls: type[T],
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str | torch.device = "cpu",
        config: dict | None = None,
        **model_kwargs: Any,
    ) -> T:
        if os.path.isdir(model_id):
            weights_file = os.path.join(model_id, WEIGHTS_NAME)
        else:
            weights_file = hf_hub_download(
                repo_id=model_id, filename=WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                force_download=force_download, token=token, local_files_only=local_files_only,
            )
        if config is None:
            raise WeightsError(f"{model_id}: no {CONFIG_NAME}")
        saved = config.get("_class_name")
        if saved is not None and saved not in {c.__name__ for c in _subclasses(cls)}:
            raise WeightsError(f"{model_id} holds a {saved}, which cannot be loaded as a {cls.__name__}")
        try:
            with torch.device("meta"):  # the architecture first, without allocating anything
                skeleton = cls(**model_kwargs)
        except (TypeError, ValueError) as e:
            raise WeightsError(f"{model_id}: its {CONFIG_NAME} does not describe a valid {cls.__name__}: {e}") from e
        n_values = sum(t.numel() for t in skeleton.state_dict().values())
        if n_values > MAX_NETWORK_VALUES:
            raise WeightsError(f"{os.path.join(model_id, CONFIG_NAME)} describes a {cls.__name__} with "
                               f"{n_values:,} weights, more than the {MAX_NETWORK_VALUES:,} FaceLift loads "
                               "(a size setting such as ngf is far too large).")
        check_safetensors_header(skeleton, weights_file, allow_unexpected=False)  # shapes before allocating
        del skeleton
        model = cls(**model_kwargs)
        load_safetensors(model, weights_file, allow_unexpected=False)
        return model.to(map_location).eval()


def _subclasses(cls: type) -> list[type]:
    found: list[type] = [cls]
    sub: type
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


#: Most weights (tensor values) one network may have: 100 M float32 = 400 MB. The shipped FAN
#: and DRN have about 3 M each, the B-Net (a ResNet) 25 M, VGG-16's features 15 M.
MAX_NETWORK_VALUES = 100_000_000
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


def _check_hub_config(repo_id: str, kwargs: dict) -> None:
    """A Hub network's config.json, downloaded (the mixin then reads it from the cache) and
    checked like a local one: size and nesting capped, a JSON object."""
    config_file = hf_hub_download(
        repo_id=repo_id, filename=CONFIG_NAME, revision=kwargs.get("revision"), cache_dir=kwargs.get("cache_dir"),
        force_download=kwargs.get("force_download", False), token=kwargs.get("token"),
        local_files_only=kwargs.get("local_files_only", False))
    read_json_file(config_file, what=f"{repo_id}/{CONFIG_NAME}")


def check_safetensors_header(module: nn.Module, path: str | os.PathLike, *, allow_unexpected: bool) -> None:
    """What `load_safetensors` checks that the file's header tells (keys, shapes, float or
    not), without reading any tensor: ``module`` may live on the meta device."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}")
    expected = module.state_dict()
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            keys = set(f.keys())
            _check_keys(module, path, expected, keys, allow_unexpected)
            for key, target in expected.items():
                part = f.get_slice(key)
                shape, dtype = tuple(part.get_shape()), part.get_dtype()
                if shape != tuple(target.shape):
                    raise WeightsError(f"{path}: tensor {key} has shape {shape}, "
                                       f"{type(module).__name__} needs {tuple(target.shape)}")
                if (dtype in _FLOAT_DTYPES) != target.dtype.is_floating_point:
                    raise WeightsError(f"{path}: tensor {key} has dtype {dtype}, expected {target.dtype}")
    except SafetensorError as e:
        raise WeightsError(f"{path} is not a readable safetensors file: {e}") from e


def _check_keys(module, path: str, expected, keys: set, allow_unexpected: bool) -> None:
    missing = sorted(k for k in expected if k not in keys)
    unexpected = sorted(keys - expected.keys())
    if missing:
        raise WeightsError(f"{path} lacks {len(missing)} tensor(s) {type(module).__name__} needs: "
                           f"{_preview(missing)}")
    if unexpected and not allow_unexpected:
        raise WeightsError(f"{path} holds {len(unexpected)} tensor(s) {type(module).__name__} does not have: "
                           f"{_preview(unexpected)}")


def load_safetensors(module: nn.Module, path: str | os.PathLike, *, allow_unexpected: bool) -> None:
    """Copy every tensor of ``module.state_dict()`` from the safetensors file ``path``.

    Raises WeightsError naming the file when it is missing or unreadable, when a key is
    missing or has the wrong shape or a non-float dtype (checked on the header, before any
    tensor is read), when a float tensor holds NaN or infinity, and (unless
    ``allow_unexpected``) when the file holds keys the module does not have.
    """
    path = os.fspath(path)
    check_safetensors_header(module, path, allow_unexpected=allow_unexpected)
    expected = module.state_dict()
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in expected}
    except SafetensorError as e:
        raise WeightsError(f"{path} is not a readable safetensors file: {e}") from e
    for key, target in expected.items():
        got = tensors[key]
        if got.shape != target.shape:
            raise WeightsError(f"{path}: tensor {key} has shape {tuple(got.shape)}, "
                               f"{type(module).__name__} needs {tuple(target.shape)}")
        if got.dtype.is_floating_point != target.dtype.is_floating_point:
            raise WeightsError(f"{path}: tensor {key} has dtype {got.dtype}, expected {target.dtype}")
        if got.dtype.is_floating_point and not bool(torch.isfinite(got).all()):
            raise WeightsError(f"{path}: tensor {key} holds NaN or infinite values (damaged or diverged weights).")
    module.load_state_dict(tensors, strict=True)


def _preview(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def init_pix2pix_weights(module: nn.Module) -> None:
    """pix2pix initialisation: conv weights N(0, 0.02), batch-norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of `module` in which every BatchNorm2d that directly follows a convolution
    in an nn.Sequential is folded into that convolution (and replaced by nn.Identity): the same
    outputs to float rounding, one pass over each feature map less. For inference only: its state
    dict has no BatchNorm entries, so save the original."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()
    for seq in list(folded.modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(1, len(seq)):
            conv, bn = seq[i - 1], seq[i]
            if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)):
                seq[i - 1] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                seq[i] = nn.Identity()
    return folded


def check_input(x: Any, channels: int, resolution: int | None, what: str) -> None:
    """Forward-pass input check: a float tensor (B, channels, R, R)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor; got {x.dtype}")
    size = "H, W" if resolution is None else f"{resolution}, {resolution}"
    if (x.ndim != 4 or x.shape[1] != channels
            or (resolution is not None and tuple(x.shape[2:]) != (resolution, resolution))):
        raise ValueError(f"{what} must have shape (B, {channels}, {size}); got {tuple(x.shape)}")

