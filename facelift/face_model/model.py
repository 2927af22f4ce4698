"""The morphable face model: topology, mean shape, shape basis, UV layout, albedo PCA.

Stored as one safetensors file whose metadata holds the JSON config. See
`docs/ARCHITECTURE.md` for the coordinate and UV conventions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable

import numpy as np

from ..errors import WeightsError
from ..geometry.rasterize import rasterize_uv

FORMAT_VERSION = 1
_ARRAYS = ("mean_shape", "shape_basis", "triangles", "uv", "mirror", "albedo_mean", "albedo_basis")
_INTEGER_ARRAYS = ("triangles", "mirror")
# Bounds on a face model, checked on a file's header before any array is read (a crafted file
# must not make FaceLift allocate gigabytes or rasterise for minutes). The shipped model:
# 468 vertices, 898 triangles, 40 shape and 80 albedo components, albedo at 64x64.
MAX_VERTICES = 10_000
MAX_TRIANGLES = 20_000
MAX_COMPONENTS = 1_000        # shape or albedo components
MAX_ALBEDO_RESOLUTION = 1_024
MAX_VALUES = 100_000_000      # all arrays together: 400 MB of float32
MAX_COORDINATE_M = 10.0       # |mean shape coordinates|, metres (a face is about 0.2 m across)
MAX_CONFIG_CHARS = 1 << 20    # the JSON config in the file's metadata
_UV_SLACK = 1e-4              # uv must lie in [0, 1] up to rounding


@dataclass(frozen=True, eq=False)
class TexelMap:
    """Which surface point every texel of an RxR UV map shows.

    `tri` (R, R) int32 is the triangle id (-1 outside the layout), `bary` (R, R, 3)
    float32 its barycentric coordinates, `mask` (R, R) bool the texels inside.
    """

    resolution: int
    tri: np.ndarray
    bary: np.ndarray
    mask: np.ndarray

    def interpolate(self, vertex_values: np.ndarray) -> np.ndarray:
        """Per-vertex values (N, C) -> UV map (R, R, C); zero outside the layout."""
        out = np.zeros((self.resolution, self.resolution, vertex_values.shape[1]), np.float32)
        return self.interpolate_into(vertex_values, out)

    def interpolate_into(self, vertex_values: np.ndarray, out: np.ndarray) -> np.ndarray:
        assert self._triangles is not None, "a TexelMap made by FaceModel.texel_map"
        tri_ids = self.tri[self.mask]
        corners = self._triangles[tri_ids]  # (M, 3)
        w = self.bary[self.mask]
        vals = (vertex_values[corners] * w[..., None]).sum(axis=1)
        out[self.mask] = vals
        return out

    # set by FaceModel.texel_map
    _triangles: np.ndarray | None = field(default=None, repr=False)


@dataclass(eq=False)
class FaceModel:
    """A linear face model on MediaPipe's 468-vertex topology.

    mean_shape   (N, 3)      float32, metres, model space (ARCHITECTURE.md)
    shape_basis  (K, N, 3)   float32; columns scaled by their standard deviation, so the
                             coefficients are ~N(0, 1)
    triangles    (F, 3)      int32, counter-clockwise seen from +Z
    uv           (N, 2)      float32 in [0, 1], left-right symmetric
    mirror       (N,)        int32, index of the mirrored vertex
    albedo_mean  (3, A, A)   float32 in [0, 1], UV space at `albedo_resolution` A
    albedo_basis (Ka, 3, A, A) float32, scaled by standard deviation (Ka may be 0)
    config       dict        JSON-serialisable description (sources, UV method, ...)
    """

    mean_shape: np.ndarray
    shape_basis: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    mirror: np.ndarray
    albedo_mean: np.ndarray
    albedo_basis: np.ndarray
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean_shape = np.asarray(self.mean_shape, np.float32)
        self.shape_basis = np.asarray(self.shape_basis, np.float32)
        self.triangles = np.asarray(self.triangles, np.int32)
        self.uv = np.asarray(self.uv, np.float32)
        self.mirror = np.asarray(self.mirror, np.int32)
        self.albedo_mean = np.asarray(self.albedo_mean, np.float32)
        self.albedo_basis = np.asarray(self.albedo_basis, np.float32)
        self.validate()
        self._derived: dict[Hashable, Any] = {}

    # ---- sizes -------------------------------------------------------------------
    @property
    def n_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def n_shape(self) -> int:
        return self.shape_basis.shape[0]

    @property
    def n_albedo(self) -> int:
        return self.albedo_basis.shape[0]

    @property
    def albedo_resolution(self) -> int:
        return self.albedo_mean.shape[-1]

    @property
    def light_brightness(self) -> float | None:
        """Mean irradiance on the visible face of the white light the albedo model was learned
        under (`geometry.sh.light_prior`), or None when it was learned with free per-channel lighting
        (then no light prior applies)."""
        value = self.config.get("albedo_light_brightness")
        return None if value is None else float(value)

    def validate(self) -> None:
        """Raise WeightsError ("Invalid face model: ...") unless the arrays fit together, lie
        within the size bounds above, and hold sensible values: finite floats, triangle and
        mirror indices in range (the mirror map an involution), uv in [0, 1], the mean shape
        in metres."""
        problem = _shape_problem({name: getattr(self, name).shape for name in _ARRAYS})
        if problem is None:
            problem = self._value_problem()
        if problem is not None:
            raise WeightsError(f"Invalid face model: {problem}.")

    def _value_problem(self) -> str | None:
        n = self.n_vertices
        if not isinstance(self.config, dict):
            return f"its config must be a JSON object, not {type(self.config).__name__}"
        brightness = self.config.get("albedo_light_brightness")
        if brightness is not None and (isinstance(brightness, bool) or not isinstance(brightness, (int, float))
                                       or not 0 < brightness < 100):
            return "albedo_light_brightness must be a positive number"
        for name in ("mean_shape", "shape_basis", "uv", "albedo_mean", "albedo_basis"):
            if not np.isfinite(getattr(self, name)).all():
                return f"{name} holds NaN or infinite values"
        if self.triangles.size and (self.triangles.min() < 0 or self.triangles.max() >= n):
            return "triangles index outside the vertices"
        if self.mirror.size and (self.mirror.min() < 0 or self.mirror.max() >= n):
            return f"mirror indices must lie in [0, {n - 1}]"
        if not np.array_equal(self.mirror[self.mirror], np.arange(n)):
            return "mirror must pair vertices (the mirror of a vertex's mirror is the vertex itself)"
        if self.uv.size and (self.uv.min() < -_UV_SLACK or self.uv.max() > 1 + _UV_SLACK):
            return "uv coordinates must lie in [0, 1]"
        if np.abs(self.mean_shape).max(initial=0.0) > MAX_COORDINATE_M:
            return (f"mean_shape is in metres (a face is about 0.2 m across); it holds coordinates beyond "
                    f"{MAX_COORDINATE_M:g} m")
        return None

    # ---- geometry ----------------------------------------------------------------
    def shape(self, coefficients: np.ndarray | None = None) -> np.ndarray:
        """Vertices (N, 3) for shape coefficients (K,) (zeros/None = the mean)."""
        if coefficients is None or len(coefficients) == 0:
            return self.mean_shape.copy()
        k = len(coefficients)
        return self.mean_shape + np.tensordot(np.asarray(coefficients, np.float32), self.shape_basis[:k], 1)

    def derived(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """``build()``, computed once per ``key`` and kept with this model: the one cache of
        data derived from the model (texel maps here, the unwrap's texel gather)."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    def texel_map(self, resolution: int = 256) -> TexelMap:
        """Per-texel triangle ids and barycentrics, computed once per resolution."""

        def build() -> TexelMap:
            tri, bary = rasterize_uv(self.uv, self.triangles, resolution)
            return TexelMap(resolution, tri, bary, tri >= 0, _triangles=self.triangles)

        return self.derived(("texel_map", resolution), build)

    @property
    def albedo_texel_rows(self) -> np.ndarray:
        """The albedo basis as (A*A, Ka*3), one contiguous row per texel (for gathering texels)."""
        A = self.albedo_basis.shape[-1]
        return self.derived("albedo_texel_rows",
                            lambda: np.ascontiguousarray(self.albedo_basis.reshape(-1, A * A).T))

    def albedo_map(self, coefficients: np.ndarray | None = None) -> np.ndarray:
        """PCA albedo (eq. 2) at the model's albedo resolution, (3, A, A), clipped to [0, 1]."""
        out = self.albedo_mean.copy()
        if coefficients is not None and len(coefficients):
            k = len(coefficients)
            out += np.tensordot(np.asarray(coefficients, np.float32), self.albedo_basis[:k], 1)
        return np.clip(out, 0.0, 1.0)

    # ---- IO ------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = dict(self.config)
        cfg["format_version"] = FORMAT_VERSION
        tensors = {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}
        save_file(tensors, str(path), metadata={"config": json.dumps(cfg)})

    @classmethod
    def load(cls, path: str | Path) -> "FaceModel":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"Face model file not found: {path}")
        try:
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata()
                keys = set(f.keys())
                missing = [k for k in _ARRAYS if k not in keys]
                if missing:
                    raise WeightsError(f"Face model file {path} lacks {', '.join(missing)}.")
                headers = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in _ARRAYS}
                problem = _shape_problem({k: shape for k, (shape, _) in headers.items()}) or _dtype_problem(headers)
                if problem is not None:  # before any array is read
                    raise WeightsError(f"Face model file {path} is not a valid face model: {problem}.")
                tensors = {k: f.get_tensor(k) for k in _ARRAYS}  # other tensors in the file are not read
        except WeightsError:
            raise
        except Exception as exc:  # safetensors raises several types for bad files
            raise WeightsError(f"Face model file {path} is not a valid safetensors file: {exc}") from exc
        config = _metadata_config(meta, path)
        n = headers["mean_shape"][0][0]
        for name in _INTEGER_ARRAYS:  # before the int32 cast, which would wrap huge indices around
            values = tensors[name]
            if values.size and (values.min() < 0 or values.max() >= n):
                raise WeightsError(f"Face model file {path} is not a valid face model: {name} index outside "
                                   f"the {n} vertices.")
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise WeightsError(
                f"Face model file {path} has format version {version!r}; this FaceLift reads {FORMAT_VERSION}."
            )
        try:
            return cls(**{k: tensors[k] for k in _ARRAYS}, config=config)
        except WeightsError as exc:
            raise WeightsError(f"{path}: {exc}") from exc


def _metadata_config(meta, path: Path) -> dict:
    """The JSON config a face model file keeps in its metadata: a JSON object (size and
    nesting capped), or a WeightsError naming the file."""
    from .._jsonfile import parse_json

    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise WeightsError(f"Face model file {path} has unreadable metadata.")
    text = meta.get("config", "{}")
    if not isinstance(text, str) or len(text) > MAX_CONFIG_CHARS:
        raise WeightsError(f"Face model file {path} has an unreadable config (not text, or over "
                           f"{MAX_CONFIG_CHARS:,} characters).")
    config = parse_json(text, f"The config in face model file {path}")
    if not isinstance(config, dict):
        raise WeightsError(f"Face model file {path} has an unreadable config: a JSON object is needed, "
                           f"not {type(config).__name__}.")
    return config


def _shape_problem(shapes: dict[str, tuple]) -> str | None:
    """What is wrong with these array shapes (from a file's header or the arrays), or None."""
    mean, basis, tris, uv, mirror = (tuple(shapes[k]) for k in ("mean_shape", "shape_basis", "triangles", "uv",
                                                                 "mirror"))
    albedo_mean, albedo_basis = tuple(shapes["albedo_mean"]), tuple(shapes["albedo_basis"])
    if len(mean) != 2 or mean[1] != 3:
        return "mean_shape must be (N, 3)"
    n = mean[0]
    if not 1 <= n <= MAX_VERTICES:
        return f"it has {n:,} vertices; FaceLift loads face models of 1 to {MAX_VERTICES:,}"
    if len(basis) != 3 or basis[1:] != (n, 3):
        return "shape_basis must be (K, N, 3)"
    if len(tris) != 2 or tris[1] != 3:
        return "triangles must be (F, 3)"
    if tris[0] > MAX_TRIANGLES:
        return f"it has {tris[0]:,} triangles; FaceLift loads face models of at most {MAX_TRIANGLES:,}"
    if uv != (n, 2):
        return "uv must be (N, 2)"
    if mirror != (n,):
        return "mirror must be (N,)"
    if len(albedo_mean) != 3 or albedo_mean[0] != 3 or albedo_mean[1] != albedo_mean[2]:
        return "albedo_mean must be (3, A, A)"
    if not 1 <= albedo_mean[1] <= MAX_ALBEDO_RESOLUTION:
        return f"its albedo is {albedo_mean[1]}x{albedo_mean[2]}; at most {MAX_ALBEDO_RESOLUTION} is loaded"
    if len(albedo_basis) != 4 or albedo_basis[1:] != albedo_mean:
        return "albedo_basis must be (K, 3, A, A)"
    if basis[0] > MAX_COMPONENTS or albedo_basis[0] > MAX_COMPONENTS:
        return f"it has {basis[0]:,} shape and {albedo_basis[0]:,} albedo components; at most {MAX_COMPONENTS:,} each"
    total = sum(int(np.prod(shape, dtype=np.int64)) for shape in shapes.values())
    if total > MAX_VALUES:
        return f"its arrays hold {total:,} values, more than the {MAX_VALUES:,} FaceLift loads"
    return None


def _dtype_problem(headers: dict[str, tuple]) -> str | None:
    for name, (_, dtype) in headers.items():
        integer = dtype in ("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64")
        floating = dtype in ("F16", "BF16", "F32", "F64")
        if name in _INTEGER_ARRAYS and not integer:
            return f"{name} must hold integers, not {dtype}"
        if name not in _INTEGER_ARRAYS and not floating:
            return f"{name} must hold floating-point numbers, not {dtype}"
    return None
