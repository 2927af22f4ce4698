"""Load test of the demo app (issue 6): concurrent gradio_client clients against a running app.

    python tests/load_test.py                    # the full run: 8 clients x 25 reconstructions
    python tests/load_test.py --reconstructions 3 --warmup 1      # a short run
    python tests/load_test.py --url http://127.0.0.1:7860/ --pid 12345   # an app already running
    python tests/load_test.py --clients 16 --flooders 1 --compare --reconstructions 5   # issue 17

Without --url it starts `python app.py` on a free loopback port (tests/app_server.py) and stops
it at the end. Each client is its own gradio session with its own photo (a variant of
examples/astronaut.png: its own crop, so its own size, colours and mirroring) and, per
reconstruction, sends /reconstruct, a reference /render and a random /render (and /downloads
every --downloads-every reconstructions, and once in the warm-up). It checks:

* no failed request (each one has --request-timeout seconds);
* no crossed results: the annotated photo /reconstruct returns has the client's photo size;
  the reference view (the same view parameters every time) is identical to the client's own
  reference, taken at warm-up, and nearest to it of all clients' references; /downloads names
  its files after the client's upload and params.json holds the client's photo size;
* the server's memory (RSS of app.py and its children, sampled every 0.25 s) grows less than
  --max-growth-mb from the end of the warm-up to the end of the run.

With --flooders N, N of the clients are hostile (issue 17): from an address of their own, each
keeps --flood-concurrency /reconstructs of a --flood-megapixels JPEG (uploaded anew for each
request, each in a session of its own, through gradio's /call API) in flight until the normal
visitors are done. Their requests are not checked (refusals are expected) but counted; the
latencies reported are the normal visitors'. With --compare the same run is made first without
the flooders, each on a fresh server, and the normal visitors' p90 with the flooders is
compared with the p90 without (issue 17: within 2x). Every client sends its own
X-Forwarded-For address (uvicorn trusts it from loopback), so per-address limits tell the
flooder apart from the visitors as they would on a real network.

It prints the figures and writes them (latency p50/p90/max per endpoint, memory, failures,
conditions) to test-artifacts/load_test.json. Exit status 0 when every check passes. The whole
run stops by itself after --deadline seconds (a failure). tests/test_load.py runs a bounded
version under pytest (FACELIFT_LOAD_FULL=1: this full one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import ARTIFACTS, REPO  # noqa: E402

EXAMPLE = REPO / "examples" / "astronaut.png"
# The reference view: photo lighting and the PCA albedo make every client's variant look
# clearly different (mean absolute difference >= 7 grey levels between the 8 defaults), while
# the same photo renders identically every time (the pipeline is deterministic).
REFERENCE_VIEW = dict(yaw=25, pitch=-10, light_azimuth=25, light_elevation=25, light_intensity=1.0,
                      details=True, mode="shaded", lighting="photo", albedo="pca")
COLOURS = [np.eye(3), np.eye(3)[[2, 1, 0]], np.full((3, 3), 1 / 3), np.diag([1.0, 0.85, 0.7]),
           np.diag([0.75, 0.9, 1.0]), np.eye(3)[[1, 0, 2]], 0.5 * np.eye(3) + 0.5 / 3, np.eye(3)[[1, 2, 0]]]
MAX_CLIENTS = 16
ENDPOINTS = ("/reconstruct", "/render", "/downloads", "/turntable")


def make_photos(n: int, folder: Path) -> list[tuple[Path, tuple[int, int]]]:
    """n different photos of the example face: client i's has its own crop (so its own size),
    colour matrix and mirroring. Returns (path, (width, height))."""
    if not 1 <= n <= MAX_CLIENTS:
        raise ValueError(f"1 to {MAX_CLIENTS} clients, got {n}")
    with Image.open(EXAMPLE) as im:
        src = np.asarray(im.convert("RGB"), np.float32)
    photos = []
    for i in range(n):
        img = src @ COLOURS[i % len(COLOURS)].T
        if i % 2:
            img = img[:, ::-1]
        h, w = img.shape[:2]
        img = img[4 * i: h - 3 * i, 6 * i: w - 10 * i]
        path = folder / f"client{i}.png"
        Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8)).save(path)
        photos.append((path, (img.shape[1], img.shape[0])))
    return photos


def make_big_jpeg(path: Path, megapixels: float = 49.0, noise: float = 0.0, quality: int = 90) -> Path:
    """examples/astronaut.png upscaled to a square of about `megapixels` (the limit is 50); with
    `noise` (grey levels, standard deviation), grain that makes the file as large as a camera's."""
    side = int((megapixels * 1e6) ** 0.5)
    with Image.open(EXAMPLE) as im:
        big = im.convert("RGB").resize((side, side), Image.BICUBIC)
    if noise:
        pixels = np.asarray(big, np.int16)
        grain = np.random.default_rng(0).normal(0.0, noise, pixels.shape[:2] + (1,)).astype(np.int16)
        big = Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))
    big.save(path, quality=quality)
    return path


def address_of(index: int, hostile: bool = False) -> str:
    """The address client `index` claims (X-Forwarded-For): one per client, as on a real network."""
    return f"198.51.100.{index + 1}" if hostile else f"203.0.113.{index + 1}"


def upload(url: str, path: Path, headers: dict | None = None, timeout: float = 120.0) -> dict:
    """Upload a file to gradio's /gradio_api/upload; returns the FileData to pass as an input."""
    import httpx

    with open(path, "rb") as fh:
        r = httpx.post(url + "gradio_api/upload", files={"files": (path.name, fh, "image/jpeg")}, headers=headers,
                       timeout=timeout)
    r.raise_for_status()
    return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def call_reconstruct(url: str, image: dict, timeout: float, headers: dict | None = None) -> tuple[str, float, str]:
    """One /reconstruct through gradio's /call API, in a session of its own (as a script would):
    ("complete" | "error" | "refused" | "failed", seconds, detail)."""
    import httpx

    start = time.perf_counter()
    try:
        with httpx.Client(timeout=timeout, headers=headers) as client:
            r = client.post(url + "gradio_api/call/reconstruct", json={"data": [image, 0, 0.7]})
            if r.status_code != 200:
                return "refused", time.perf_counter() - start, f"HTTP {r.status_code} {r.text[:120]}"
            event_id = r.json()["event_id"]
            event = ""
            with client.stream("GET", url + f"gradio_api/call/reconstruct/{event_id}") as stream:
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:") and event in ("complete", "error"):
                        return event, time.perf_counter() - start, line[5:].strip()[:160]
            return "failed", time.perf_counter() - start, f"stream ended after event {event!r}"
    except Exception as exc:  # noqa: BLE001 - every failure is a finding
        return "failed", time.perf_counter() - start, f"{type(exc).__name__}: {str(exc)[:160]}"


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(np.floor(k)), int(np.ceil(k))
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class MemoryMonitor(threading.Thread):
    """Samples the RSS of a process and its children (bytes) every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def rss(self) -> int:
        import psutil

        total = 0
        for p in [self.process, *self.process.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), self.rss()))
            except Exception:  # the server went away: the requests will say so
                pass
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def peak_since(self, t0: float) -> int:
        return max((rss for t, rss in self.samples if t >= t0), default=0)


@dataclass
class Shared:
    """What the client threads share: the deadline, the references, the records."""
    deadline: float
    request_timeout: float
    n_clients: int
    stop: threading.Event = field(default_factory=threading.Event)
    references: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list = field(default_factory=list)   # (endpoint, seconds, phase)
    failures: list = field(default_factory=list)  # (client, endpoint, message)
    crossed: list = field(default_factory=list)   # (client, what, detail)
    barrier: threading.Barrier | None = None
    reference_margin: float = 0.0


class LoadClient(threading.Thread):
    def __init__(self, index: int, url: str, photo: Path, size: tuple[int, int], shared: Shared, *,
                 warmup: int, reconstructions: int, downloads_every: int, download_dir: Path, seed: int):
        super().__init__(name=f"client{index}", daemon=True)
        self.address = address_of(index)
        self.index, self.url, self.photo, self.size, self.shared = index, url, photo, size, shared
        self.warmup, self.reconstructions, self.downloads_every = warmup, reconstructions, downloads_every
        self.download_dir = download_dir
        self.rng = random.Random(seed)
        self.completed = 0

    # one request, timed; None when it failed (recorded)
    def _call(self, endpoint: str, phase: str, *args, **kwargs):
        if self.shared.stop.is_set():
            return None
        timeout = min(self.shared.request_timeout, max(1.0, self.shared.deadline - time.monotonic()))
        start = time.perf_counter()
        try:
            result = self.client.submit(*args, api_name=endpoint, **kwargs).result(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            message = f"{type(exc).__name__}: {str(exc)[:300]}"
            with self.shared.lock:
                self.shared.failures.append((self.index, endpoint, message))
            return None
        seconds = time.perf_counter() - start
        with self.shared.lock:
            self.shared.records.append((endpoint, seconds, phase))
        return result

    def _crossed(self, what: str, detail: str) -> None:
        with self.shared.lock:
            self.shared.crossed.append((self.index, what, detail))

    def _check_reconstruct(self, out) -> bool:
        detected, summary = out[1], out[10]  # out[0] is the face over the photo
        h, w = _rgb(detected).shape[:2]
        if (w, h) != self.size:
            self._crossed("/reconstruct", f"annotated photo is {w}x{h}, this client's photo is "
                                          f"{self.size[0]}x{self.size[1]}")
            return False
        if "Face 1 of 1" not in str(summary):
            self._crossed("/reconstruct", f"summary {summary!r}")
            return False
        return True

    def _check_reference(self, view_path) -> None:
        view = _rgb(view_path)
        distances = {i: float(np.abs(view - ref).mean()) for i, ref in self.shared.references.items()}
        nearest = min(distances, key=distances.get)
        if nearest != self.index or distances[self.index] > self.shared.reference_margin:
            self._crossed("/render", f"reference view: distance to own {distances[self.index]:.2f}, nearest is "
                                     f"client {nearest} ({distances[nearest]:.2f})")

    def _check_downloads(self, out) -> None:
        glb, files = out
        names = {Path(f).name: Path(f) for f in files}
        stem = self.photo.stem
        if f"{stem}_obj.zip" not in names:
            self._crossed("/downloads", f"files {sorted(names)} are not named after {stem}")
            return
        params = json.loads(names["params.json"].read_text())
        if tuple(params["image_size"]) != self.size:
            self._crossed("/downloads", f"params.json image_size {params['image_size']}, expected {list(self.size)}")

    def _iteration(self, phase: str, i: int) -> None:
        from gradio_client import handle_file

        out = self._call("/reconstruct", phase, handle_file(str(self.photo)), 0)
        if out is None or not self._check_reconstruct(out):
            return
        ref = self._call("/render", phase, **REFERENCE_VIEW)
        if ref is not None:
            if phase == "warmup":
                with self.shared.lock:
                    self.shared.references.setdefault(self.index, _rgb(ref))
            elif self.shared.references:
                self._check_reference(ref)
        view = dict(yaw=self.rng.uniform(-60, 60), pitch=self.rng.uniform(-30, 30),
                    light_azimuth=self.rng.uniform(-180, 180), light_elevation=self.rng.uniform(-60, 60),
                    light_intensity=self.rng.uniform(0.3, 1.8), details=self.rng.random() < 0.5,
                    mode=self.rng.choice(["albedo", "shaded", "normals"]),
                    lighting=self.rng.choice(["directional", "photo"]), albedo=self.rng.choice(["fan", "pca"]))
        rendered = self._call("/render", phase, **view)
        if rendered is not None and _rgb(rendered).shape != (512, 512, 3):
            self._crossed("/render", f"random view has shape {_rgb(rendered).shape}")
        # /downloads once in the warm-up too, so the baseline has its code paths (GLB, GIF) warm
        if self.downloads_every and ((i + 1) % self.downloads_every == 0 if phase == "measured" else i == 0):
            out = self._call("/downloads", phase)
            if out is not None:
                self._check_downloads(out)
                self._call("/turntable", phase)  # its own job since issue 14

    def run(self) -> None:
        from gradio_client import Client

        try:
            # gradio_client's own HTTP timeout (20 s) would cut uploads and downloads on a busy
            # server short: each request has request_timeout seconds instead
            self.client = Client(self.url, verbose=False, download_files=str(self.download_dir),
                                 headers={"X-Forwarded-For": self.address},
                                 httpx_kwargs={"timeout": self.shared.request_timeout})
            for i in range(self.warmup):
                self._iteration("warmup", i)
        except Exception:  # noqa: BLE001
            with self.shared.lock:
                self.shared.failures.append((self.index, "client", traceback.format_exc(limit=3)))
        try:
            self.shared.barrier.wait(timeout=max(1.0, self.shared.deadline - time.monotonic()))
        except threading.BrokenBarrierError:
            self.shared.stop.set()
            return
        try:
            for i in range(self.reconstructions):
                if self.shared.stop.is_set() or time.monotonic() > self.shared.deadline:
                    break
                self._iteration("measured", i)
                self.completed += 1
        except Exception:  # noqa: BLE001
            with self.shared.lock:
                self.shared.failures.append((self.index, "client", traceback.format_exc(limit=3)))


class Flooder(threading.Thread):
    """A hostile client: from the warm-up's end until the run stops, `concurrency` /reconstructs of
    a big JPEG in flight at once, each uploaded anew and in a session of its own."""

    def __init__(self, index: int, url: str, photo: Path, shared: Shared, concurrency: int):
        super().__init__(name=f"flooder{index}", daemon=True)
        self.url, self.photo, self.shared, self.concurrency = url, photo, shared, concurrency
        self.headers = {"X-Forwarded-For": address_of(index, hostile=True)}
        self.results: list[tuple[str, float, str]] = []
        self._lock = threading.Lock()

    def _worker(self) -> None:
        while not self.shared.stop.is_set():
            start = time.perf_counter()
            try:
                image = upload(self.url, self.photo, self.headers, timeout=self.shared.request_timeout)
            except Exception as exc:  # noqa: BLE001 - a refused upload is an outcome, not a failure
                outcome = ("upload refused", time.perf_counter() - start, f"{type(exc).__name__}: {str(exc)[:120]}")
                time.sleep(0.5)
            else:
                outcome = call_reconstruct(self.url, image, self.shared.request_timeout, self.headers)
            if not self.shared.stop.is_set():
                with self._lock:
                    self.results.append(outcome)

    def run(self) -> None:
        try:
            self.shared.barrier.wait(timeout=max(1.0, self.shared.deadline - time.monotonic()))
        except threading.BrokenBarrierError:
            return
        for i in range(self.concurrency):
            threading.Thread(target=self._worker, name=f"{self.name}-{i}", daemon=True).start()
        self.shared.stop.wait()

    def summary(self) -> dict:
        with self._lock:
            results = list(self.results)
        kinds: dict[str, int] = {}
        for kind, _, _ in results:
            kinds[kind] = kinds.get(kind, 0) + 1
        done = [s for k, s, _ in results if k == "complete"]
        return {"concurrency": self.concurrency, "requests": len(results), "outcomes": kinds,
                "complete_p50_s": round(_percentile(done, 50), 2) if done else None,
                "examples": sorted({f"{k}: {d}" for k, _, d in results if k != "complete"})[:4]}


def run_load_test(url: str, pid: int | None, *, clients: int = 8, reconstructions: int = 25, warmup: int = 2,
                  downloads_every: int = 5, request_timeout: float = 180.0, deadline_s: float = 1800.0,
                  max_growth_mb: float = 200.0, seed: int = 0, out: Path | None = ARTIFACTS / "load_test.json",
                  server_log=None, flooders: int = 0, flood_concurrency: int = 16, flood_megapixels: float = 49.0,
                  flood_noise: float = 12.0) -> dict:
    """Run the load test against the app at `url` (its process id `pid`, for memory) and
    return the report (also written to `out`). `clients` counts the `flooders` too."""
    if not 0 <= flooders < clients:
        raise ValueError(f"flooders must be 0 to clients - 1, got {flooders}")
    visitors = clients - flooders
    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="facelift-load-"))
    monitor = None
    try:
        photos = make_photos(visitors, work)
        big = make_big_jpeg(work / "flood.jpg", flood_megapixels, flood_noise) if flooders else None
        shared = Shared(deadline=t_start + deadline_s, request_timeout=request_timeout, n_clients=visitors)
        warmed = threading.Event()
        marks: dict[str, float] = {}

        def after_warmup():  # run by one thread when all clients reached the barrier
            refs = shared.references
            if len(refs) == visitors and visitors > 1:
                keys = sorted(refs)
                pairs = [float(np.abs(refs[a] - refs[b]).mean()) for a in keys for b in keys if a < b]
                shared.reference_margin = min(pairs) / 4
                marks["min_reference_distance"] = min(pairs)
            else:
                shared.reference_margin = 0.5
            time.sleep(1.0)  # let the last responses' buffers go
            marks["baseline_rss"] = monitor.rss() if monitor else 0
            marks["t_measured"] = time.monotonic()
            warmed.set()

        shared.barrier = threading.Barrier(visitors + flooders, action=after_warmup)
        if pid:
            monitor = MemoryMonitor(pid)
            monitor.start()
            marks["start_rss"] = monitor.rss()
        threads = [LoadClient(i, url, path, size, shared, warmup=max(1, warmup), reconstructions=reconstructions,
                              downloads_every=downloads_every, download_dir=work / f"downloads{i}", seed=seed + i)
                   for i, (path, size) in enumerate(photos)]
        hostile = [Flooder(visitors + i, url, big, shared, flood_concurrency) for i in range(flooders)]
        for t in threads + hostile:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, shared.deadline - time.monotonic()) + 5)
        timed_out = any(t.is_alive() for t in threads) or time.monotonic() > shared.deadline
        shared.stop.set()
        t_end = time.monotonic()
        if monitor:
            time.sleep(1.0)
            end_rss = monitor.rss()
            monitor.stop()
        report = _report(shared, threads, marks, monitor, end_rss if monitor else None, t_start, t_end,
                         timed_out=timed_out, clients=visitors, reconstructions=reconstructions, warmup=warmup,
                         downloads_every=downloads_every, max_growth_mb=max_growth_mb, url=url, deadline_s=deadline_s)
        if flooders:  # the flood's jobs are still queued at the end: memory is tests/memory_burst.py's to measure
            report["checks"].pop("memory_growth_under_limit")
            report["passed"] = all(report["checks"].values())
            report["flooders"] = [f.summary() for f in hostile]
            report["flood_photo"] = {"megapixels": round(flood_megapixels, 1),
                                     "jpeg_mb": round(big.stat().st_size / 1e6, 1)}
        if server_log is not None:
            errors = [line for line in server_log().splitlines() if " ERROR " in line or "Traceback" in line]
            report["server_log_errors"] = errors[:20]
            if errors:
                report["passed"] = False
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n")
        return report
    finally:
        if monitor and monitor.is_alive():
            monitor.stop()
        shutil.rmtree(work, ignore_errors=True)


def _report(shared: Shared, threads, marks, monitor, end_rss, t_start, t_end, *, timed_out, clients,
            reconstructions, warmup, downloads_every, max_growth_mb, url, deadline_s) -> dict:
    latency = {}
    for endpoint in ENDPOINTS:
        values = [s for e, s, phase in shared.records if e == endpoint and phase == "measured"]
        if values:
            latency[endpoint] = {"count": len(values), "p50_s": round(_percentile(values, 50), 3),
                                 "p90_s": round(_percentile(values, 90), 3), "max_s": round(max(values), 3),
                                 "mean_s": round(statistics.fmean(values), 3)}
    done = sum(t.completed for t in threads)
    memory = None
    if monitor is not None and "baseline_rss" in marks:
        baseline, peak = marks["baseline_rss"], monitor.peak_since(marks["t_measured"])
        t0 = marks["t_measured"]
        timeline = {}  # RSS at the end of each 10 s of the measured run: growth that levels off vs a leak
        for t, rss in monitor.samples:
            if t >= t0:
                timeline[int((t - t0) // 10) * 10] = round(rss / 1e6, 1)
        memory = {"start_mb": round(marks.get("start_rss", 0) / 1e6, 1), "after_warmup_mb": round(baseline / 1e6, 1),
                  "peak_mb": round(peak / 1e6, 1), "end_mb": round(end_rss / 1e6, 1),
                  "growth_mb": round((end_rss - baseline) / 1e6, 1),
                  "peak_growth_mb": round((peak - baseline) / 1e6, 1), "limit_mb": max_growth_mb,
                  "timeline_mb": {f"{k}s": v for k, v in sorted(timeline.items())}}
    measured_s = t_end - marks.get("t_measured", t_end)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    checks = {
        "no_failed_request": not shared.failures,
        "no_crossed_result": not shared.crossed,
        "all_requests_done": done == clients * reconstructions and not timed_out,
        "memory_growth_under_limit": memory is None or memory["growth_mb"] < max_growth_mb,
    }
    return {
        "passed": all(checks.values()),
        "checks": checks,
        "url": url,
        "clients": clients,
        "reconstructions_per_client": reconstructions,
        "warmup_per_client": warmup,
        "downloads_every": downloads_every,
        "reconstructions_done": done,
        "requests_measured": sum(1 for r in shared.records if r[2] == "measured"),
        "measured_wall_s": round(measured_s, 1),
        "total_wall_s": round(t_end - t_start, 1),
        "reconstructions_per_s": round(done / measured_s, 3) if measured_s > 0 else None,
        "latency": latency,
        "memory": memory,
        "min_reference_distance": round(marks.get("min_reference_distance", float("nan")), 2),
        "failures": [{"client": c, "endpoint": e, "error": m} for c, e, m in shared.failures[:50]],
        "crossed": [{"client": c, "what": w, "detail": d} for c, w, d in shared.crossed[:50]],
        "timed_out": timed_out,
        "deadline_s": deadline_s,
        "conditions": {"cpus": os.cpu_count(), "load_average_at_end": [round(x, 2) for x in load] if load else None,
                       "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
                       "machine": platform.machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")},
    }


def format_report(report: dict) -> str:
    flooders = report.get("flooders", [])
    hostile = f" and {len(flooders)} flooding client(s)" if flooders else ""
    lines = [f"FaceLift app load test: {report['clients']} clients x {report['reconstructions_per_client']} "
             f"reconstructions (+ 2 renders each, /downloads every {report['downloads_every']}){hostile} against "
             f"{report['url']}",
             f"  done {report['reconstructions_done']} reconstructions, {report['requests_measured']} requests in "
             f"{report['measured_wall_s']} s ({report['reconstructions_per_s']} reconstructions/s); "
             f"load average at end {report['conditions']['load_average_at_end']} on {report['conditions']['cpus']} CPUs",
             f"  {'endpoint':<13}{'count':>7}{'p50 s':>9}{'p90 s':>9}{'max s':>9}{'mean s':>9}"]
    for endpoint, s in report["latency"].items():
        lines.append(f"  {endpoint:<13}{s['count']:>7}{s['p50_s']:>9.3f}{s['p90_s']:>9.3f}{s['max_s']:>9.3f}"
                     f"{s['mean_s']:>9.3f}")
    m = report["memory"]
    if m:
        lines.append(f"  server RSS: {m['after_warmup_mb']} MB after warm-up, peak {m['peak_mb']} MB, end "
                     f"{m['end_mb']} MB: growth {m['growth_mb']} MB (peak +{m['peak_growth_mb']} MB; limit "
                     f"{m['limit_mb']} MB)")
    lines.append(f"  references: nearest pair differs by {report['min_reference_distance']} grey levels")
    for i, f in enumerate(flooders):
        photo = report["flood_photo"]
        lines.append(f"  flooder {i}: {f['concurrency']} /reconstructs of a {photo['megapixels']} MP JPEG "
                     f"({photo['jpeg_mb']} MB) in flight: {f['requests']} answered {f['outcomes']}, "
                     f"completed ones p50 {f['complete_p50_s']} s")
        lines += [f"    {e}" for e in f["examples"]]
    for name, ok in report["checks"].items():
        lines.append(f"  {'ok  ' if ok else 'FAIL'} {name}")
    for f in report["failures"][:10]:
        lines.append(f"  failed: client {f['client']} {f['endpoint']}: {f['error']}")
    for c in report["crossed"][:10]:
        lines.append(f"  crossed: client {c['client']} {c['what']}: {c['detail']}")
    for e in report.get("server_log_errors", [])[:10]:
        lines.append(f"  server log: {e}")
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--reconstructions", type=int, default=25, help="per client, after the warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="reconstructions per client before measuring")
    parser.add_argument("--downloads-every", type=int, default=5, help="/downloads after every N reconstructions "
                                                                         "(0: never)")
    parser.add_argument("--request-timeout", type=float, default=180.0)
    parser.add_argument("--deadline", type=float, default=1800.0, help="the whole run stops after this many s")
    parser.add_argument("--max-growth-mb", type=float, default=200.0)
    parser.add_argument("--url", help="an app already running (default: start app.py on a free loopback port)")
    parser.add_argument("--pid", type=int, help="with --url: the app's process id, to measure its memory")
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "load_test.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flooders", type=int, default=0, help="of the --clients, how many flood (issue 17)")
    parser.add_argument("--flood-concurrency", type=int, default=16, help="each flooder's requests in flight")
    parser.add_argument("--flood-megapixels", type=float, default=49.0)
    parser.add_argument("--compare", action="store_true",
                        help="with --flooders: first the same run without them (--clients normal clients), each on "
                             "a fresh server, then compare the normal visitors' p90 latency (limit 2x)")
    args = parser.parse_args(argv)
    if args.compare and not args.flooders:
        parser.error("--compare needs --flooders")
    if args.compare and args.url:
        parser.error("--compare starts its own servers (no --url)")
    runs = [(0, args.out.with_name(args.out.stem + "_no_flooder.json"))] if args.compare else []
    reports = [_run_once(args, flooders, out) for flooders, out in runs + [(args.flooders, args.out)]]
    report = reports[-1]
    if args.compare:
        print(format_comparison(reports[0], report))
        comparison = compare_p90(reports[0], report)
        report["comparison"] = comparison
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        return 0 if report["passed"] and comparison["within_limit"] else 1
    return 0 if report["passed"] else 1


#: the normal visitors' p90 with a flooder must stay within this factor of the p90 without (issue 17)
FLOODER_P90_LIMIT = 2.0


def compare_p90(without: dict, with_flooder: dict) -> dict:
    """The normal visitors' p90 latency per endpoint with the flooder over the p90 without."""
    ratios = {}
    for endpoint, s in with_flooder["latency"].items():
        base = without["latency"].get(endpoint)
        if base and base["p90_s"] > 0:
            ratios[endpoint] = {"p90_without_s": base["p90_s"], "p90_with_s": s["p90_s"],
                                "ratio": round(s["p90_s"] / base["p90_s"], 2)}
    within = bool(ratios) and all(r["ratio"] <= FLOODER_P90_LIMIT for r in ratios.values())
    return {"ratios": ratios, "limit": FLOODER_P90_LIMIT, "within_limit": within}


def format_comparison(without: dict, with_flooder: dict) -> str:
    c = compare_p90(without, with_flooder)
    n = len(with_flooder.get("flooders", []))
    lines = [f"Normal visitors' p90 latency: {without['clients']} clients alone vs {with_flooder['clients']} clients "
             f"+ {n} flooder(s)",
             f"  {'endpoint':<13}{'without s':>11}{'with s':>9}{'ratio':>8}"]
    for endpoint, r in c["ratios"].items():
        lines.append(f"  {endpoint:<13}{r['p90_without_s']:>11.3f}{r['p90_with_s']:>9.3f}{r['ratio']:>8.2f}")
    lines.append(f"  {'ok  ' if c['within_limit'] else 'FAIL'} every p90 within {c['limit']:g}x")
    return "\n".join(lines)


def _run_once(args, flooders: int, out: Path) -> dict:
    """One load test (on a server of its own unless --url), printed; returns its report."""
    server = None
    if args.url is None:
        from app_server import AppServer

        print("starting app.py ...", flush=True)
        server = AppServer()
        print(f"app.py up on {server.url} in {server.startup_s:.1f} s (pid {server.process.pid})", flush=True)
    try:
        url = args.url or server.url
        pid = args.pid if args.url else server.process.pid
        log_start = len(server.log()) if server else 0
        report = run_load_test(url, pid, clients=args.clients, reconstructions=args.reconstructions,
                               warmup=args.warmup, downloads_every=args.downloads_every,
                               request_timeout=args.request_timeout, deadline_s=args.deadline,
                               max_growth_mb=args.max_growth_mb, seed=args.seed, out=out,
                               server_log=(lambda: server.log()[log_start:]) if server else None,
                               flooders=flooders, flood_concurrency=args.flood_concurrency,
                               flood_megapixels=args.flood_megapixels)
    finally:
        if server:
            server.stop()
    print(format_report(report))
    print(f"report: {out}", flush=True)
    return report


if __name__ == "__main__":
    sys.exit(main())
