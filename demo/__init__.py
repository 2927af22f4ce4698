"""The FaceLift demo app's parts; `app.py` at the repository root lays out the page and launches it.

config       sizes, limits (the FACELIFT_APP_* environment variables) and shared messages
sessions     what each session keeps (Session), the bound on kept reconstructions (KEPT), the work folder
photo        the photo a session keeps, the overlay's layers and their blend
uploads      which files a request may make the app read; the photo input; safe display names
jobs         per-session and per-client caps on queued heavy jobs (validators, the door's count)
handlers     the event handlers (the API's endpoints) and the shared FaceLift pipeline
http_guard   the ASGI middleware: security headers, upload bytes per address, the disk budget, the door
memory       malloc arenas and freed memory handed back after heavy jobs

The demo imports facelift, never the other way round (tests/test_imports.py). Importing any of these
modules reads the environment but writes nothing: no environment variable, no folder (the sessions'
work folder is made on first use).
"""
