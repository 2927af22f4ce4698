"""Name -> network class registry: ``create_model("fan", resolution=128)``."""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

from facelift._jsonfile import read_json_file
from facelift.errors import WeightsError
from facelift.models._base import CONFIG_NAME, FaceLiftModel

M = TypeVar("M", bound=type[FaceLiftModel])

MODEL_CLASSES: dict[str, type[FaceLiftModel]] = {}


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make ``cls`` available as ``create_model(name, ...)``."""

    def decorate(cls: M) -> M:
        if name in MODEL_CLASSES:
            raise ValueError(f"a model named {name!r} is already registered ({MODEL_CLASSES[name].__name__})")
        cls.model_type = name
        MODEL_CLASSES[name] = cls
        return cls

    return decorate


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODEL_CLASSES)


def create_model(name: str, **config: Any) -> FaceLiftModel:
    """A freshly initialised network by registry name; ``config`` overrides its defaults."""
    try:
        cls = MODEL_CLASSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None
    return cls(**config)


def load_model(path: str | os.PathLike, **overrides: Any) -> FaceLiftModel:
    """Load whichever registered network a ``save_pretrained`` directory holds."""
    config_file = os.path.join(os.fspath(path), CONFIG_NAME)
    try:  # capped in size and nesting, a JSON object
        class_name = read_json_file(config_file).get("_class_name")
    except WeightsError as e:
        raise WeightsError(f"cannot read {config_file}: {e}") from e
    for cls in MODEL_CLASSES.values():
        if cls.__name__ == class_name:
            return cls.from_pretrained(path, **overrides)
    raise WeightsError(f"{config_file} names {class_name!r}, not a registered model class")
