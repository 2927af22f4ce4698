"""Per-session and per-client limits on queued heavy work (reconstruct, downloads, turntable).

The downloads and the turntable are capped by gradio validators (`view_job_validator`,
`downloads_job_validator`); /reconstruct at the HTTP door (`door_refusal`, demo.http_guard), before
gradio reads its inputs. Both count gradio's queued and running events of the Blocks given to `attach`.
"""

from __future__ import annotations

import logging
import threading
import time

import gradio as gr

from demo.config import MAX_JOBS_PER_CLIENT, MAX_JOBS_PER_SESSION
from demo.uploads import named_paths, upload_root

log = logging.getLogger("facelift.app")

_blocks = None  # the gr.Blocks whose queue is counted (`attach`)


def attach(blocks) -> None:
    """Count the jobs of `blocks` (the app's page, once built and queued)."""
    global _blocks
    _blocks = blocks


def client_address(request) -> str | None:
    """The client's address as uvicorn reports it (see FORWARDED_ALLOW_IPS in README "The app")."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


def _queue_events() -> list:
    """gradio's queued and running events (of the Blocks given to `attach`)."""
    queue = getattr(_blocks, "_queue", None)
    if queue is None:
        return []
    events = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
    events += [e for job in list(queue.active_jobs) if job for e in list(job)]
    return events


def _heavy_events() -> list:
    """gradio's queued and running events of the heavy jobs (concurrency_id "heavy")."""
    return [e for e in _queue_events() if getattr(e, "concurrency_id", None) == "heavy"]


# A job accepted by a validator enters gradio's queue a moment later; until then it is counted
# from here (validators run concurrently: without this, a burst would all see a queue below the limit).
_accepted: list[tuple[str | None, str | None, float]] = []  # (session hash, address, time.monotonic())
_accepted_lock = threading.Lock()
ACCEPTED_WINDOW_S = 3.0


def job_refusal(request) -> str | None:
    """Why a new heavy job of this request's session/client is refused now (None: accepted and
    counted): at most MAX_JOBS_PER_SESSION per session and MAX_JOBS_PER_CLIENT per address,
    waiting or running."""
    session, address = getattr(request, "session_hash", None), client_address(request)
    with _accepted_lock:
        now = time.monotonic()
        events = _heavy_events()
        # an accepted job still counts here until an event of its session is in the queue (or a while passed)
        _accepted[:] = [(s, a, t) for s, a, t in _accepted if now - t < ACCEPTED_WINDOW_S and not any(
            e.session_hash == s and getattr(e, "enqueue_time", 0.0) >= t for e in events)]
        jobs = [(e.session_hash, client_address(e.request)) for e in events] + [(s, a) for s, a, _ in _accepted]
        of_session = sum(1 for s, _ in jobs if session is not None and s == session)
        of_client = sum(1 for _, a in jobs if address is not None and a == address)
        if of_session >= MAX_JOBS_PER_SESSION:
            return (f"This page already has {of_session} reconstructions or exports waiting or running; "
                    "wait for them to finish, then try again.")
        if of_client >= MAX_JOBS_PER_CLIENT:
            return (f"Too many reconstructions from your address are waiting or running ({of_client}); "
                    "wait for them to finish, then try again.")
        _accepted.append((session, address, now))
    return None


def job_started(request) -> None:
    """A job accepted by `job_refusal` is running: it no longer counts as accepted (gradio counts
    it while it runs), so a quick job does not hold its place for ACCEPTED_WINDOW_S after it ends."""
    session = getattr(request, "session_hash", None)
    with _accepted_lock:
        for i, (s, _, _) in enumerate(_accepted):
            if session is not None and s == session:
                del _accepted[i]
                return


def _refuse_or_accept(refusal: str | None, n_inputs: int) -> list:
    if refusal is not None:
        log.info("refused a job at the queue: %s", refusal)
    return [gr.validate(refusal is None, refusal or "")] + [gr.validate(True, "")] * (n_inputs - 1)


def view_job_validator(state, yaw, pitch, light_azimuth, light_elevation, light_intensity, details, mode,
                       lighting, albedo, request: gr.Request):
    """Run by gradio before a turntable job is queued."""
    return _refuse_or_accept(job_refusal(request), 10)


def downloads_job_validator(state, details, request: gr.Request):
    """Run by gradio before a downloads job is queued."""
    return _refuse_or_accept(job_refusal(request), 2)


def paths_in_jobs() -> set[str]:
    """The upload-folder paths that gradio's queued and running events name (never evicted)."""
    events = _queue_events()
    if not events:
        return set()
    root, found = upload_root(), set()
    for event in events:
        named_paths(getattr(getattr(event, "data", None), "data", None), root, found=found)
    return found


def job_fn(api_name: str | None, payload: dict):
    """The gradio event function a queue/call request asks for (None if unknown)."""
    fns = getattr(_blocks, "fns", {})
    if api_name is None:
        index = payload.get("fn_index")
        return fns.get(index) if isinstance(index, int) and not isinstance(index, bool) else None
    return next((fn for fn in fns.values() if fn.api_name == api_name), None)


def door_counts(fn) -> bool:
    """Whether `door_refusal` counts this event function: the heavy jobs that no gradio validator
    counts (/reconstruct)."""
    return fn is not None and fn.concurrency_id == "heavy" and getattr(fn, "validator", None) is None


def door_refusal(fn, session: str | None, address: str | None) -> str | None:
    """`job_refusal` for the jobs `door_counts`, checked at the HTTP door, so that no input is
    preprocessed (a non-image upload still gets FaceLift's message from the job itself) and a
    refused job never enters the queue. An accepted one counts as accepted until `door_joined`."""
    if not door_counts(fn):
        return None
    from types import SimpleNamespace

    return job_refusal(SimpleNamespace(session_hash=session, client=SimpleNamespace(host=address)))


def door_joined(session: str | None, address: str | None) -> None:
    """gradio answered the request of a job `door_refusal` accepted: the job is in its queue (and
    counted there) or was refused or already done, so it no longer counts as accepted."""
    with _accepted_lock:
        for i in range(len(_accepted) - 1, -1, -1):
            if _accepted[i][:2] == (session, address):
                del _accepted[i]
                return
