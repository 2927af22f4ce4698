"""The bundle: a folder (or Hub repo) holding config.json, the face model and one folder per
network. Its format (BUNDLE_FORMAT_VERSION), validation, loading and saving, and model card."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from . import _hub
from ._jsonfile import read_json_file
from ._version import __version__
from .errors import WeightsError
from .face_model import FaceModel

BUNDLE_FORMAT_VERSION = 1
DEFAULT_REPO_ID = _hub.DEFAULT_REPO_ID  # overridden by $FACELIFT_REPO_ID (see pipeline.default_weights)
NETWORKS = ("bnet", "fan", "drn")
# what the pipeline feeds each network and expects back (config key -> value)
_NETWORK_INTERFACE = {"bnet": {"in_channels": 3}, "fan": {"out_channels": 3}, "drn": {"out_channels": 1}}
_MAX_CONFIG_BYTES = 1 << 20

DEFAULT_BUNDLE_CONFIG = {
    "format_version": BUNDLE_FORMAT_VERSION,
    "uv_resolution": 256,
    "mesh_resolution": 256,
    "mesh_subdivisions": 2,
    "components": {"face_model": "face_model.safetensors", "bnet": None, "fan": "fan", "drn": "drn"},
}


def load_bundle(name_or_path: str | os.PathLike, *, revision: str | None = None,
                cache_dir: str | os.PathLike | None = None, local_files_only: bool | None = None):
    """Read a bundle (see `FaceLift.from_pretrained`): returns (name, local folder, config,
    face model, {network key: network or None})."""
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if not path.is_dir():
        if path.exists():
            raise WeightsError(f"{name} is a file; a FaceLift bundle is a directory holding config.json.")
        if _looks_like_a_path(name):
            raise WeightsError(f"{name}: no such directory (and it is not a Hub repo id 'owner/name').")
        path = _download_bundle(name, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    config = _read_bundle_config(path)
    components = config["components"]
    face_model = FaceModel.load(path / components["face_model"])
    nets = {key: _load_network(path, key, components.get(key), face_model) for key in NETWORKS}
    return name, path, config, face_model, nets


def save_bundle(pipe, directory: str | os.PathLike) -> Path:
    """Write `pipe` (a FaceLift) as a bundle; see `FaceLift.save_pretrained`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    source = Path(pipe.bundle_path) if getattr(pipe, "bundle_path", None) else None
    source_components = pipe.config.get("components") or {}

    def source_card(sub: str | None) -> bytes | None:  # read before anything is overwritten
        card = source / sub / "README.md" if source is not None and sub else None
        return card.read_bytes() if card is not None and card.is_file() else None

    cards = {key: source_card(source_components.get(key)) for key in NETWORKS}
    bundle_card = source_card(".")
    card_images = {rel: (source / rel).read_bytes() for rel in _card_images(bundle_card, source)} if source is not None else {}
    face_model_file = "face_model.safetensors"
    components: dict[str, str | None] = {"face_model": face_model_file}
    pipe.face_model.save(directory / face_model_file)
    for key in NETWORKS:
        net = getattr(pipe, key)
        components[key] = key if net is not None else None
        if net is None:
            continue
        sub = directory / key
        sub.mkdir(exist_ok=True)
        (sub / "README.md").unlink(missing_ok=True)  # the mixin writes its card only where there is none
        card = cards[key]
        if card is not None:
            (sub / "README.md").write_bytes(card)
        net.save_pretrained(str(sub))
    if bundle_card is not None:
        (directory / "README.md").write_bytes(bundle_card)
        for rel, data in card_images.items():
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            (directory / rel).write_bytes(data)
    else:
        (directory / "README.md").write_text(_model_card(components))
    config = {**pipe.config, "format_version": BUNDLE_FORMAT_VERSION, "components": components,
              "library_version": __version__}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def _read_bundle_config(path: Path) -> dict:
    """The bundle's config.json, validated (types and ranges), merged over the defaults."""
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        raise WeightsError(f"{path} is not a FaceLift bundle: {cfg_path} is missing.")
    # size, nesting depth and NaN capped; not valid JSON or not an object: a WeightsError naming it
    config = read_json_file(cfg_path, max_bytes=_MAX_CONFIG_BYTES)
    version = config.get("format_version")
    if type(version) is not int or version != BUNDLE_FORMAT_VERSION:
        newer = type(version) is int and version > BUNDLE_FORMAT_VERSION
        raise WeightsError(f"{cfg_path} has format_version {version!r}; this FaceLift ({__version__}) reads bundles "
                           f"of format {BUNDLE_FORMAT_VERSION}" + (" (upgrade FaceLift to read it)." if newer else "."))
    library_version = config.get("library_version")
    if library_version is not None and not isinstance(library_version, str):
        raise WeightsError(f"{cfg_path}: 'library_version' must be a string, got {library_version!r}.")
    components = config.get("components")
    if not isinstance(components, dict) or "face_model" not in components:
        raise WeightsError(f"{cfg_path} must list its components, including 'face_model'.")
    unknown = sorted(set(components) - {"face_model", *NETWORKS})
    if unknown:
        raise WeightsError(f"{cfg_path} lists unknown components {unknown}; known: face_model, {', '.join(NETWORKS)}.")
    face_model = components["face_model"]
    if not _is_bundle_relative(face_model) or not face_model.endswith(".safetensors"):
        raise WeightsError(f"{cfg_path}: components.face_model must be a .safetensors file inside the bundle, "
                           f"got {face_model!r}.")
    for key in NETWORKS:
        sub = components.get(key)
        if sub is not None and not _is_bundle_relative(sub):
            raise WeightsError(f"{cfg_path}: components.{key} must be null or a folder inside the bundle, "
                               f"got {sub!r}.")
    limits = {"uv_resolution": (1, 1024), "mesh_resolution": (1, 1024), "mesh_subdivisions": (0, 5)}
    for key, (low, high) in limits.items():
        value = config.get(key, DEFAULT_BUNDLE_CONFIG[key])
        if type(value) is not int or not low <= value <= high:
            raise WeightsError(f"{cfg_path}: '{key}' must be an integer in [{low}, {high}], got {value!r}.")
    return {**DEFAULT_BUNDLE_CONFIG, **config}


_CARD_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")


def _card_images(card: bytes | None, source: Path | None) -> list[str]:
    """The images a model card shows from inside its bundle (relative links, e.g. `albedo_pca.png`),
    so that a saved or pushed bundle's card still shows them on the Hub."""
    if card is None or source is None:
        return []
    found = []
    for link in _CARD_IMAGE.findall(card.decode("utf-8", "replace")):
        if _is_bundle_relative(link) and (source / link).is_file():
            found.append(link)
    return found


def _bundle_files(config: dict) -> list[str]:
    """The files of a bundle, relative to its root (README.md files are optional)."""
    components = config["components"]
    files = ["config.json", "README.md", components["face_model"]]
    for key in NETWORKS:
        sub = components.get(key)
        if sub:
            files += [f"{sub}/config.json", f"{sub}/model.safetensors", f"{sub}/README.md"]
    return files


def _download_bundle(repo_id: str, *, revision, cache_dir, local_files_only) -> Path:
    """The bundle `repo_id` from the Hub cache, downloading what is missing (see facelift._hub)."""
    return _hub.download_bundle(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                bundle_files=lambda folder: _bundle_files(_read_bundle_config(folder)))


def _load_network(path: Path, key: str, sub: str | None, face_model: FaceModel):
    """One network of a bundle (strict safetensors loading, float32), or None."""
    from .models import MODEL_CLASSES

    if not sub:
        return None
    folder = path / sub
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise WeightsError(f"The bundle {path} names {key} weights in '{sub}/', but {folder / name} "
                               f"does not exist.")
    try:
        net = MODEL_CLASSES[key].from_pretrained(str(folder))
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"Could not load {key} from {folder}: {exc}") from exc
    config = net.config
    for name, want in _NETWORK_INTERFACE[key].items():
        if config.get(name) != want:
            raise WeightsError(f"{folder / 'config.json'}: the pipeline needs a {key} with {name}={want}, "
                               f"got {config.get(name)!r}.")
    if key == "bnet" and config["n_albedo"] > face_model.n_albedo:
        raise WeightsError(f"{folder / 'config.json'}: B-Net predicts {config['n_albedo']} albedo coefficients, but "
                           f"the bundle's face model has only {face_model.n_albedo} albedo components.")
    return net.float()


def _is_bundle_relative(name) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or name.startswith("/"):
        return False
    parts = name.split("/")
    return all(part not in ("", ".", "..") for part in parts) and not Path(name).is_absolute()


def _looks_like_a_path(name: str) -> bool:
    """True for what can only be a local path (a Hub repo id is 'name' or 'owner/name')."""
    return (name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name) or (len(name) > 1 and name[1] == ":"))


def _model_card(components: dict) -> str:
    rows = [f"| `{components['face_model']}` | the face model: topology, shape basis, UV layout, albedo model |"]
    what = {"bnet": "B-Net (low-frequency albedo and lighting)", "fan": "FAN (facial albedo network)",
            "drn": "DRN (detail recovering network)"}
    rows += [f"| `{components[key]}/` | {what[key]}: `config.json` + `model.safetensors` |"
             for key in NETWORKS if components.get(key)]
    return (f"---\nlibrary_name: facelift\ntags:\n  - facelift\n  - 3d-face-reconstruction\n---\n\n"
            f"# FaceLift bundle\n\nWeights for FaceLift "
            f"{__version__} (bundle format {BUNDLE_FORMAT_VERSION}). Load with:\n\n"
            f"```python\nfrom facelift import FaceLift\n\n"
            f"pipe = FaceLift.from_pretrained(\"<this repo id or folder>\")\n"
            f"```\n\n| file | what |\n|---|---|\n| `config.json` | bundle format version, library version, "
            f"components |\n" + "\n".join(rows) + "\n")

