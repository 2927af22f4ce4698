"""The morphable face model on MediaPipe's 468-vertex topology.

- `model`: `FaceModel` (mean shape, shape basis, triangles, UV layout, mirror map, albedo PCA; its
  safetensors file) and `TexelMap` (which surface point each texel of a UV map shows)
- `topology`: the triangles recovered from MediaPipe's edges, holes closed; the mirror map
- `uv_layout`: the symmetric LSCM (or cylindrical) UV layout and its distortion
- `ibug68`: the 68 iBUG 300-W landmarks as model vertices (landmarks.json, the evaluation)
- `build`: a `FaceModel` from the landmarks of many photos (Procrustes, PCA; training/build_face_model.py)
"""

from .model import FORMAT_VERSION, FaceModel, TexelMap

__all__ = ["FORMAT_VERSION", "FaceModel", "TexelMap"]
