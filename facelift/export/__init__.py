"""Writing a reconstruction: file formats (`formats`) and the atomic export folder (`folder`).

The names of `facelift.export.formats` are re-exported here: `from facelift.export import
save_png` keeps working, and `Reconstruction.export` calls the writers through this package.
"""

from .folder import EXPORT_FILES, TMP_MARK, check_export_target, export_folder
from .formats import (
                      DEPTH_METRES_PER_UNIT,
                      GLB_ROUGHNESS,
                      OUTPUTS,
                      decode_depth,
                      decode_displacement,
                      encode_depth,
                      encode_displacement,
                      export_glb,
                      export_obj,
                      load_png16,
                      normal_map_to_uint8,
                      save_png,
                      save_png16,
                      select_outputs,
                      to_uint8,
)

__all__ = [
    "DEPTH_METRES_PER_UNIT", "EXPORT_FILES", "GLB_ROUGHNESS", "OUTPUTS", "TMP_MARK", "check_export_target",
    "decode_depth", "decode_displacement", "encode_depth", "encode_displacement", "export_folder", "export_glb",
    "export_obj", "load_png16", "normal_map_to_uint8", "save_png", "save_png16", "select_outputs", "to_uint8",
]
