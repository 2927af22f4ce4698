"""Does the app's memory come back after a burst of huge photos? (issue 17)

    python tests/memory_burst.py                     # the issue's run: 80 concurrent 49 MP JPEGs, then 90 normal
    python tests/memory_burst.py --flood 6 --normal 10            # a short run
    python tests/memory_burst.py --url http://127.0.0.1:7860/ --pid 12345   # an app already running

Without --url it starts `python app.py` on a free loopback port (tests/app_server.py) and stops it
at the end. The server's RSS (app.py and its children, sampled every 0.1 s) is measured in phases:

1. warm baseline: after --warmup normal /reconstructs (examples/astronaut.png, 512x512);
2. one big photo alone: a --megapixels JPEG (examples/astronaut.png upscaled), its peak above the
   baseline is the memory one request of the largest allowed photo needs;
3. the flood: --flood concurrent /reconstructs of that JPEG from one address, each through the
   HTTP API with a session of its own (uploaded once, as an attacker would); how many
   completed, were refused or failed, the peak, and the RSS once they are all answered;
4. --normal normal /reconstructs (gradio_client, --normal-clients at a time, each from an
   address of its own with a photo of its own), then the RSS.

Addresses are claimed with X-Forwarded-For (uvicorn trusts it from loopback), so per-address
limits see a flooder and visitors as on a real network.

Passes (exit status 0) when the RSS after the normal requests is within --max-growth-mb (200)
of the warm baseline. Prints the figures and writes them to test-artifacts/memory_burst.json.
tests/test_load.py::test_memory_returns_after_a_burst_of_big_photos runs a bounded version.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import ARTIFACTS  # noqa: E402
from load_test import MemoryMonitor, address_of, call_reconstruct, make_big_jpeg, make_photos, upload  # noqa: E402


def normal_requests(url: str, n: int, clients: int, timeout: float) -> list[tuple[str, float, str]]:
    """n /reconstructs of variants of the 512x512 example (each client its own, as in the load
    test: gradio caches an output under the hash of its bytes and rewrites the file in place,
    so two sessions with the same photo at once can be served an empty file), `clients`
    gradio_client sessions at a time."""
    from gradio_client import Client, handle_file

    counts = [n // clients + (i < n % clients) for i in range(clients)]
    results: list[tuple[str, float, str]] = []
    lock = threading.Lock()

    def visitor(index: int, count: int, folder: str) -> None:
        client = Client(url, verbose=False, download_files=folder, headers={"X-Forwarded-For": address_of(index)},
                        httpx_kwargs={"timeout": timeout})
        photo = photos[index][0]
        for _ in range(count):
            start = time.perf_counter()
            try:
                client.submit(handle_file(str(photo)), 0, api_name="/reconstruct").result(timeout=timeout)
                outcome = ("complete", time.perf_counter() - start, "")
            except Exception as exc:  # noqa: BLE001
                outcome = ("failed", time.perf_counter() - start, f"{type(exc).__name__}: {str(exc)[:160]}")
            with lock:
                results.append(outcome)

    with tempfile.TemporaryDirectory(prefix="facelift-memory-") as work, ThreadPoolExecutor(clients) as pool:
        photos = make_photos(clients, Path(work))
        for future in [pool.submit(visitor, i, c, work) for i, c in enumerate(counts) if c]:
            future.result()
    return results


def _settled_rss(monitor: MemoryMonitor, seconds: float) -> int:
    """The RSS after `seconds` of quiet (the last responses' buffers go; gradio's queue winds down)."""
    time.sleep(seconds)
    return monitor.rss()


def run_memory_burst(url: str, pid: int, *, megapixels: float = 49.0, flood: int = 80, normal: int = 90,
                     normal_clients: int = 3, warmup: int = 3, request_timeout: float = 600.0,
                     settle_s: float = 3.0, max_growth_mb: float = 200.0,
                     out: Path | None = ARTIFACTS / "memory_burst.json") -> dict:
    monitor = MemoryMonitor(pid, interval=0.1)
    monitor.start()
    mb = 1e6
    try:
        with tempfile.TemporaryDirectory(prefix="facelift-memory-") as work:
            big = make_big_jpeg(Path(work) / "big.jpg", megapixels)
            with Image.open(big) as im:
                size = im.size
            jpeg_mb = big.stat().st_size / mb
            warm = normal_requests(url, warmup, 1, request_timeout)
            baseline = _settled_rss(monitor, settle_s)
            hostile = {"X-Forwarded-For": address_of(0, hostile=True)}  # one address, a session per request
            image = upload(url, big, hostile)

            t0 = time.monotonic()
            single = call_reconstruct(url, image, request_timeout, hostile)
            single_peak = monitor.peak_since(t0)
            after_single = _settled_rss(monitor, settle_s)

            t0 = time.monotonic()
            with ThreadPoolExecutor(max(1, flood)) as pool:
                flood_results = list(pool.map(lambda _: call_reconstruct(url, image, request_timeout, hostile),
                                              range(flood)))
            flood_s = time.monotonic() - t0
            flood_peak = monitor.peak_since(t0)
            after_flood = _settled_rss(monitor, settle_s)

            t0 = time.monotonic()
            normal_results = normal_requests(url, normal, normal_clients, request_timeout)
            normal_s = time.monotonic() - t0
            after_normal = _settled_rss(monitor, settle_s)
    finally:
        monitor.stop()

    def outcomes(results):
        kinds = {}
        for kind, _, _ in results:
            kinds[kind] = kinds.get(kind, 0) + 1
        return kinds

    def seconds(results, kind="complete"):
        values = [s for k, s, _ in results if k == kind]
        return {"p50_s": round(float(np.percentile(values, 50)), 2), "p90_s": round(float(np.percentile(values, 90)), 2),
                "max_s": round(max(values), 2)} if values else None

    growth = (after_normal - baseline) / mb
    report = {
        "passed": growth < max_growth_mb and all(k == "complete" for k, _, _ in warm + normal_results)
                  and single[0] == "complete",
        "url": url,
        "big_photo": {"size": list(size), "megapixels": round(size[0] * size[1] / 1e6, 1), "jpeg_mb": round(jpeg_mb, 1)},
        "rss_mb": {"baseline": round(baseline / mb, 1), "single_peak": round(single_peak / mb, 1),
                   "after_single": round(after_single / mb, 1), "flood_peak": round(flood_peak / mb, 1),
                   "after_flood": round(after_flood / mb, 1), "after_normal": round(after_normal / mb, 1)},
        "above_baseline_mb": {"single_peak": round((single_peak - baseline) / mb, 1),
                              "flood_peak": round((flood_peak - baseline) / mb, 1),
                              "after_flood": round((after_flood - baseline) / mb, 1),
                              "after_normal": round(growth, 1)},
        "max_growth_mb": max_growth_mb,
        "single": {"outcome": single[0], "s": round(single[1], 2), "detail": single[2] if single[0] != "complete" else ""},
        "flood": {"requests": flood, "outcomes": outcomes(flood_results), "wall_s": round(flood_s, 1),
                  "latency": seconds(flood_results),
                  "examples": sorted({f"{k}: {d}" for k, _, d in flood_results if k != "complete"})[:5]},
        "normal": {"requests": normal, "clients": normal_clients, "outcomes": outcomes(normal_results),
                   "wall_s": round(normal_s, 1), "latency": seconds(normal_results),
                   "examples": sorted({d for k, _, d in normal_results if k != "complete"})[:5]},
        "conditions": {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
                       "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
                       "when": time.strftime("%Y-%m-%d %H:%M:%S")},
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(r: dict) -> str:
    rss, above, b = r["rss_mb"], r["above_baseline_mb"], r["big_photo"]
    lines = [f"FaceLift app memory after a burst, against {r['url']}",
             f"  big photo: {b['size'][0]}x{b['size'][1]} ({b['megapixels']} MP) JPEG of {b['jpeg_mb']} MB",
             f"  {'phase':<34}{'RSS MB':>9}{'vs baseline':>13}",
             f"  {'warm baseline':<34}{rss['baseline']:>9.1f}{'':>13}",
             f"  {'one big photo alone: peak':<34}{rss['single_peak']:>9.1f}{above['single_peak']:>+13.1f}",
             f"  {'flood: peak':<34}{rss['flood_peak']:>9.1f}{above['flood_peak']:>+13.1f}",
             f"  {'after the flood':<34}{rss['after_flood']:>9.1f}{above['after_flood']:>+13.1f}",
             f"  {'after the normal requests':<34}{rss['after_normal']:>9.1f}{above['after_normal']:>+13.1f}"
             f"   (limit +{r['max_growth_mb']:.0f})",
             f"  one big photo: {r['single']['outcome']} in {r['single']['s']} s {r['single']['detail']}",
             f"  flood: {r['flood']['requests']} concurrent /reconstructs in {r['flood']['wall_s']} s: "
             f"{r['flood']['outcomes']}, completed ones {r['flood']['latency']}"]
    lines += [f"    {e}" for e in r["flood"]["examples"]]
    lines.append(f"  normal: {r['normal']['requests']} /reconstructs ({r['normal']['clients']} clients) in "
                 f"{r['normal']['wall_s']} s: {r['normal']['outcomes']}, {r['normal']['latency']}")
    lines += [f"    {e}" for e in r["normal"]["examples"]]
    lines.append(f"  load average {r['conditions']['load_average']} on {r['conditions']['cpus']} CPUs")
    lines.append("PASSED" if r["passed"] else "FAILED")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=49.0, help="the big JPEG's size (the limit is 50)")
    parser.add_argument("--flood", type=int, default=80, help="concurrent big /reconstructs")
    parser.add_argument("--normal", type=int, default=90, help="normal /reconstructs after the flood")
    parser.add_argument("--normal-clients", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="normal /reconstructs before the baseline")
    parser.add_argument("--request-timeout", type=float, default=600.0)
    parser.add_argument("--max-growth-mb", type=float, default=200.0)
    parser.add_argument("--url", help="an app already running (default: start app.py on a free loopback port)")
    parser.add_argument("--pid", type=int, help="with --url: the app's process id (required to measure)")
    parser.add_argument("--out", type=Path, default=ARTIFACTS / "memory_burst.json")
    args = parser.parse_args(argv)
    if args.url and not args.pid:
        parser.error("--url needs --pid")
    server = None
    if args.url is None:
        from app_server import AppServer

        print("starting app.py ...", flush=True)
        server = AppServer()
        print(f"app.py up on {server.url} in {server.startup_s:.1f} s (pid {server.process.pid})", flush=True)
    try:
        report = run_memory_burst(args.url or server.url, args.pid or server.process.pid,
                                  megapixels=args.megapixels, flood=args.flood, normal=args.normal,
                                  normal_clients=args.normal_clients, warmup=args.warmup,
                                  request_timeout=args.request_timeout, max_growth_mb=args.max_growth_mb,
                                  out=args.out)
    finally:
        if server:
            server.stop()
    print(format_report(report))
    print(f"report: {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
