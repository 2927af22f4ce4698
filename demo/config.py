"""The demo's settings: sizes, limits and the messages shown by more than one module.

The limits a host may change are environment variables (README "The app"), read once when this
module is imported; nothing here writes the environment or the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "examples"
EXAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg")
# the example photos the page offers (a click shows each one's kept result at once: demo.handlers.ExampleResults)
EXAMPLES = sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in EXAMPLE_SUFFIXES) \
    if EXAMPLES_DIR.is_dir() else []
MB = 1024 * 1024

# ---- the photo, the views, the sessions ----
MAX_UPLOAD_MB = 50          # what gradio's upload route accepts (launch(max_file_size=...)), and what we read
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
# Photos are downscaled to at most this many pixels on the longer side before any heavy stage (a
# JPEG is decoded at reduced scale): the face needs no 50 megapixels, and the memory one
# reconstruction needs is bounded by it (README "The app": about +270 MB at 2048 px, +850 MB for
# a 50-megapixel photo at full size).
MAX_SIDE = int(os.environ.get("FACELIFT_APP_MAX_SIDE", "2048"))
RENDER_SIZE = 512          # the 3D view, pixels
TURNTABLE_SIZE = 320       # the turntable GIF, pixels
TURNTABLE_FRAMES = 24
TURNTABLE_AMPLITUDE = 35.0  # degrees of yaw either side
STATE_TTL_S = 3600          # a session's reconstruction (and its files) is dropped after an hour
# ... and at most this many reconstructions are kept in memory across all sessions (about 8 MB
# each): beyond it the least recently used one is dropped and its visitor asked to reconstruct again
MAX_KEPT = int(os.environ.get("FACELIFT_APP_MAX_SESSIONS", "64"))
# ... and at most this many per client address: a flood of sessions from one address (80 big photos
# kept 64 reconstructions, 650 MB, for an hour) then replaces its own, not other visitors'
MAX_KEPT_PER_CLIENT = int(os.environ.get("FACELIFT_APP_MAX_SESSIONS_PER_CLIENT", "8"))
TURNTABLES_KEPT = 2         # turntable folders kept per session (older ones are deleted; one export folder)
SMALL_FACE_PX = 80          # below this many pixels across the face, warn: blurry texture and details
CONCURRENCY = 2             # reconstructions at a time (the machine's cores are shared)
QUEUE_SIZE = 64             # requests waiting, all sessions together
# Heavy jobs (reconstruct, downloads, turntable) queued or running at once, per session and per client
# address (the address uvicorn reports: behind a reverse proxy, set FORWARDED_ALLOW_IPS to the
# proxy's address so that each visitor is told apart). One flooding client (many sessions from
# one address) cannot fill the queue for everyone else.
MAX_JOBS_PER_SESSION = int(os.environ.get("FACELIFT_APP_MAX_JOBS_PER_SESSION", "2"))
MAX_JOBS_PER_CLIENT = int(os.environ.get("FACELIFT_APP_MAX_JOBS_PER_CLIENT", "4"))
GENERIC_ERROR = "Something went wrong on the server while processing this photo. Please try again or use another photo."
# The one answer to any image input that is not a file uploaded to this page (or a shipped example):
# the same words whatever the path is (missing, a folder, a pipe, a server file), so that it tells
# nothing about the server's files.
NOT_AN_UPLOAD = ("FaceLift only reads photos uploaded to this page. Upload the photo (or pick an example) "
                 "and press Reconstruct.")
OVERLAY_SIDE = 768          # the "In the photo" view (and /overlay), pixels on the longer side at most
PHOTO_JPEG_QUALITY = 95     # the kept photo (for overlay.png and depth.png in the downloads)
# what the downloads offer (facelift.export.OUTPUTS; "obj" brings mesh.mtl and albedo.png, zipped)
APP_OUTPUTS = ("glb", "obj", "texture", "visibility", "skin_confidence", "albedo_pca", "displacement", "normal_map",
               "normal_map_details", "overlay", "landmarks", "depth")
DOWNLOAD_FILES = ("albedo.png", "texture.png", "visibility.png", "skin_confidence.png", "albedo_pca.png",
                  "displacement.png", "normal_map.png", "normal_map_details.png", "overlay.png", "landmarks.json",
                  "depth.png", "params.json")
# a session whose reconstruction is gone (replaced, expired or evicted), or that never had one
EXPIRED = "Upload a photo and press Reconstruct first (or your session expired: reconstruct again)."

# ---- the HTTP layer (demo.http_guard) ----
# Bytes one client address may send (uploads and request bodies) within a sliding window: 429 beyond it
UPLOAD_MB_PER_CLIENT = float(os.environ.get("FACELIFT_APP_UPLOAD_MB_PER_CLIENT", "200"))
UPLOAD_WINDOW_S = float(os.environ.get("FACELIFT_APP_UPLOAD_WINDOW_S", "600"))
# gradio's upload/cache folder is kept under this size: the oldest files go first, never one younger
# than EVICT_AFTER_S, one a queued or running job names, or one that was there before the app served
UPLOAD_DISK_MB = float(os.environ.get("FACELIFT_APP_UPLOAD_DISK_MB", "2048"))
EVICT_AFTER_S = float(os.environ.get("FACELIFT_APP_EVICT_AFTER_S", "60"))
MAX_BODY_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + MB  # one request: a 50 MB photo as base64 in JSON, at most

# Gradio reports usage to its makers unless told not to: off unless the operator set
# GRADIO_ANALYTICS_ENABLED=True (gradio's own default is on). Handed to gr.Blocks, so that the
# environment is left as it is.
ANALYTICS_ENABLED = os.environ.get("GRADIO_ANALYTICS_ENABLED") == "True"
