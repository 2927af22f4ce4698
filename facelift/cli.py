"""Command line: `facelift reconstruct IMAGE_OR_DIR... -o OUTDIR`, `facelift evaluate`, `facelift benchmark`."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import FaceLiftError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}


def collect_inputs(inputs: list[str], skipped: list[Path] | None = None) -> list[Path]:
    """Files as given; folders expand (recursively) to the images inside, sorted. The other
    files found in folders (no image extension) are appended to `skipped`, if given, as
    paths relative to their folder."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(f for f in p.rglob("*") if f.is_file()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(f)
                elif skipped is not None:
                    skipped.append(f.relative_to(p))
        else:
            paths.append(p)
    return paths


SKIPPED_SHOWN = 5  # names listed in the one "skipped" line


def skipped_line(skipped: list[Path]) -> str:
    """One line naming the files a folder held that were not tried (not images by their
    extension): the count and the first few names."""
    n = len(skipped)
    names = ", ".join(one_line(p, escape_whitespace=True) for p in skipped[:SKIPPED_SHOWN])
    more = f" and {n - SKIPPED_SHOWN} more" if n > SKIPPED_SHOWN else ""
    what = "1 file that is not an image" if n == 1 else f"{n} files that are not images"
    return f"facelift: skipped {what} by {'its' if n == 1 else 'their'} extension: {names}{more}"


def output_names(paths: list[Path]) -> list[str]:
    """A safe, unique sub-folder name per input (file stem; clashes get a numeric suffix)."""
    names, seen = [], {}
    for p in paths:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem).strip("._") or "image"
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        names.append(stem if n == 0 else f"{stem}_{n + 1}")
    return names


def one_line(text, *, escape_whitespace: bool = False) -> str:
    """`text` on a single line: runs of whitespace (newlines in a message) become one space,
    or with `escape_whitespace` (a file name) every control character is shown escaped."""
    text = str(text)
    if not escape_whitespace:
        text = " ".join(text.split())
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


def _face_list(rec) -> str:
    boxes = ", ".join(f"{i} at {x0:.0f},{y0:.0f}-{x1:.0f},{y1:.0f}"
                      for i, (x0, y0, x1, y1) in enumerate(f.box for f in rec.faces))
    return (f"{len(rec.faces)} faces found (largest first; boxes x0,y0-x1,y1): {boxes}; "
            f"reconstructed face {rec.face_index}, --face-index N picks another")


def _remove_temporaries(out: Path, names: list[str]) -> None:
    """Temporary export folders of this process (`Reconstruction.export` normally removes its
    own; this catches one a second Ctrl-C or a kill in the middle of the clean-up left)."""
    import glob
    import shutil

    from .pipeline import TMP_MARK

    for name in set(names):
        for tmp in out.glob(f".{glob.escape(name)}{TMP_MARK}{os.getpid()}-*"):
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _ctrl_c_noted():
    """Ctrl-C raises KeyboardInterrupt as usual and also sets `state["hit"]`, so that an
    interrupt is not lost where Python ignores the exception (raised inside a weakref callback
    or `__del__`, e.g. during an import) or a library turns it into another error."""
    state = {"hit": False}

    def handler(signum, frame):
        state["hit"] = True
        raise KeyboardInterrupt

    def unraisable(info):  # the ignored KeyboardInterrupt: noted above, no "Exception ignored" traceback
        if not (state["hit"] and isinstance(info.exc_value, KeyboardInterrupt)):
            previous_hook(info)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield state
        return
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield state
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def cmd_reconstruct(args) -> int:
    """Reconstruct every input into OUT/<name>/. One `FAILED path: message` line (stderr) per
    file that fails, as it fails; the batch goes on, and a batch lists its failures again at
    the end, with one line naming the files in input folders that were skipped as not images
    by their extension (not failures: they do not change the exit code; not shown with -q). Exit 0 when all succeed, 1 when any
    failed, 2 when there is nothing to do or no weights, 130 on Ctrl-C (finished folders are
    kept, no half-written one is left)."""
    with _ctrl_c_noted() as ctrl_c:
        return _reconstruct(args, ctrl_c)


def _reconstruct(args, ctrl_c: dict) -> int:
    from tqdm import tqdm

    from .pipeline import FaceLift

    skipped: list[Path] = []
    paths = collect_inputs(args.inputs, skipped)
    if not paths:
        print("facelift: no images found in " + ", ".join(args.inputs), file=sys.stderr)
        if skipped:
            print(skipped_line(skipped), file=sys.stderr)
        return 2
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        print(f"facelift: the output {out} is a file; give a folder (-o DIR)", file=sys.stderr)
        return 2
    try:
        fl = FaceLift.from_pretrained(args.weights, max_faces=args.max_faces)
    except FaceLiftError as exc:
        if ctrl_c["hit"]:
            raise KeyboardInterrupt from exc
        print(f"facelift: {one_line(exc)}", file=sys.stderr)
        return 2
    names = output_names(paths)
    failures: list[tuple[Path, str]] = []
    written = done = 0
    bar = tqdm(list(zip(paths, names)), unit="image", disable=len(paths) < 2 or args.quiet)
    try:
        for path, name in bar:
            if ctrl_c["hit"]:  # an interrupt that something swallowed
                raise KeyboardInterrupt
            bar.set_postfix_str(path.name[-30:])
            shown = one_line(path, escape_whitespace=True)
            error = None
            try:
                rec = fl.reconstruct(path, face_index=args.face_index)
                rec.export(out / name, render_size=args.size)
            except FaceLiftError as exc:
                error = one_line(exc)
            except Exception as exc:  # a batch must survive one bad file; report it, keep going
                error = one_line(f"unexpected {type(exc).__name__}: {exc}")
            if error is not None and ctrl_c["hit"]:  # the interrupt, turned into an error by a library
                raise KeyboardInterrupt
            done += 1
            if error is not None:
                failures.append((path, error))
                tqdm.write(f"FAILED {shown}: {error}", file=sys.stderr)
                continue
            written += 1
            if not args.quiet:
                if len(rec.faces) > 1:
                    tqdm.write(f"{shown}: {_face_list(rec)}", file=sys.stdout)
                for warning in rec.warnings:
                    tqdm.write(f"WARNING {shown}: {one_line(warning)}", file=sys.stderr)
        if ctrl_c["hit"]:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        _remove_temporaries(out, names)
        failed = f", {len(failures)} failed (listed above)" if failures else ""
        print(f"\nfacelift: interrupted after {done} of {len(paths)} file(s): {written} reconstructed into {out}"
              f"{failed}; no half-written output folder was left.", file=sys.stderr)
        return 130
    finally:
        bar.close()
        fl.close()
    if failures and len(paths) > 1:  # the lines above may have scrolled away in a long batch
        print(f"\nfailed ({len(failures)} of {len(paths)}):", file=sys.stderr)
        for path, error in failures:
            print(f"  {one_line(path, escape_whitespace=True)}: {error}", file=sys.stderr)
    if not args.quiet:
        if skipped:  # next to the summary, where a long batch's user looks
            print(skipped_line(skipped), file=sys.stderr)
        failed = f", {len(failures)} failed" if failures else ""
        print(f"{written} of {len(paths)} reconstructed into {out}{failed}")
    return 1 if failures else 0


def cmd_evaluate(args) -> int:
    import json

    from .evaluation.runner import collect_images, evaluate_paths, format_markdown, format_table
    from .pipeline import FaceLift

    paths = collect_images(args.images, limit=args.limit)
    if not paths:
        print(f"facelift: no images found in {args.images}", file=sys.stderr)
        return 2
    lpips = None
    if not args.no_lpips:
        from .evaluation.metrics import LPIPSMetric, default_lpips_weights

        weights = args.lpips_weights or default_lpips_weights()
        if Path(weights).is_file():
            lpips = LPIPSMetric(weights)
        else:
            print(f"facelift: LPIPS weights not found at {weights}; LPIPS is skipped "
                  f"(pass --lpips-weights FILE or set FACELIFT_LPIPS_WEIGHTS)", file=sys.stderr)
    try:
        fl = FaceLift.from_pretrained(args.weights)
    except FaceLiftError as exc:
        print(f"facelift: {exc}", file=sys.stderr)
        return 2
    try:
        result = evaluate_paths(fl, paths, seed=args.seed, lpips=lpips, progress=not args.quiet and len(paths) > 1,
                                root=args.images)
    finally:
        fl.close()
    result["config"] = {"images": str(args.images), "limit": args.limit, "seed": args.seed,
                        "weights": fl.source, "trained": _trained_flags(fl.source),
                        "lpips": None if lpips is None else lpips.path, "bnet": fl.bnet is not None,
                        "albedo_pca_components": int(fl.face_model.n_albedo)}
    print(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(result) + "\n")
    return 0


def _trained_flags(source):
    import json

    try:
        return json.loads((Path(source) / "config.json").read_text()).get("trained")
    except (OSError, ValueError, TypeError):
        return None


def cmd_benchmark(args) -> int:
    from .benchmark import format_markdown, format_table, run_benchmark

    try:
        result = run_benchmark(args.image, size=args.size, repeat=args.repeat, weights=args.weights,
                               batch=args.batch)
    except FaceLiftError as exc:
        print(f"facelift: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(format_markdown(result) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="facelift", description="One photo in, a relightable 3D face out.")
    parser.add_argument("--version", action="version", version=f"facelift {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconstruct", help="reconstruct faces from photos or folders of photos")
    rec.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    rec.add_argument("-o", "--output", required=True, help="output folder (one sub-folder per image)")
    rec.add_argument("--weights", default=None, help="bundle directory or Hub repo id (default: checkpoints/)")
    rec.add_argument("--face-index", type=int, default=0,
                     help="which face, largest first (default 0); photos with several faces list them")
    rec.add_argument("--max-faces", type=_max_faces, default=20,
                     help="look for at most this many faces per photo (default 20, at most 100)")
    rec.add_argument("--size", type=int, default=512, help="size of render.png (default 512)")
    rec.add_argument("-q", "--quiet", action="store_true")
    rec.set_defaults(func=cmd_reconstruct)
    bench = sub.add_parser("benchmark", help="print per-stage speed and memory figures for this machine")
    bench.add_argument("--image", default=None, help="photo (default: examples/astronaut.png)")
    bench.add_argument("--size", type=int, default=512, help="photo size in pixels (default 512)")
    bench.add_argument("--repeat", type=int, default=20)
    bench.add_argument("--weights", default=None)
    bench.add_argument("--batch", type=int, default=8, help="photos in the batch-throughput run (default 8)")
    bench.add_argument("--json", default=None, help="also write the figures to this JSON file")
    bench.add_argument("--markdown", default=None, help="also write the table as Markdown to this file")
    bench.set_defaults(func=cmd_benchmark)
    ev = sub.add_parser("evaluate", help="quality metrics of the pipeline on a folder of photos (docs/EVALUATION.md)")
    ev.add_argument("images", help="folder of photos (searched recursively) or one photo")
    ev.add_argument("--weights", default=None, help="bundle directory or Hub repo id (default: checkpoints/)")
    ev.add_argument("--json", default=None, help="write every per-image figure and the summary to this file")
    ev.add_argument("--markdown", default=None, help="write the summary table as Markdown to this file")
    ev.add_argument("--limit", type=int, default=None,
                    help="evaluate N photos, evenly spaced over the sorted list (deterministic)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the occluders and lights (default 0)")
    ev.add_argument("--lpips-weights", default=None,
                    help="LPIPS VGG-16 safetensors (default: ../shared/weights/vgg16_imagenet_lpips.safetensors)")
    ev.add_argument("--no-lpips", action="store_true", help="skip LPIPS (faster)")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def _max_faces(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be from 1 to 100, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # MediaPipe's native start-up lines on stderr would bury the per-file lines; the command
    # line (single-threaded) may redirect fd 2 for those moments (see facelift/landmarks.py).
    # Restored afterwards, for a caller that runs main() inside a longer-lived process.
    previous = None
    try:
        from .landmarks import quiet_native_startup_logs

        previous = quiet_native_startup_logs(True)
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C while loading (imports, weights): no traceback
        print("\nfacelift: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            quiet_native_startup_logs(previous)


if __name__ == "__main__":
    sys.exit(main())
