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


def collect_inputs(inputs: list[str], skipped: list[Path] | None = None) -> list[Path]:
    """Files as given; folders expand (recursively) to the images inside, sorted. The other
    files found in folders (no image extension) are appended to `skipped`, if given, as
    paths relative to their folder."""
    from .image import IMAGE_SUFFIXES

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


#: Longest output sub-folder name (a name must fit in NAME_MAX, 255 bytes; export shortens its own
#: temporary names); a longer stem keeps its first characters and gets a hash of the whole stem,
#: so that names stay unique.
MAX_OUTPUT_NAME = 200


def output_names(paths: list[Path]) -> list[str]:
    """A safe, unique sub-folder name per input (file stem; clashes get a numeric suffix;
    stems over MAX_OUTPUT_NAME characters are shortened, with a hash of the full stem)."""
    import hashlib

    names: list[str] = []
    seen: dict[str, int] = {}
    for p in paths:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem).strip("._") or "image"
        if len(stem) > MAX_OUTPUT_NAME - 4:  # room for a clash suffix "_NNN"
            digest = hashlib.sha1(stem.encode()).hexdigest()[:8]
            stem = stem[:MAX_OUTPUT_NAME - 4 - 9].rstrip("._") + "-" + digest
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

    from .export.folder import temporary_prefix

    for name in set(names):
        for tmp in out.glob(f"{glob.escape(temporary_prefix(name))}*"):
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_temporaries(out: Path) -> int:
    """Remove the temporary export folders (`.<name>.facelift-tmp-<pid>-...`) in `out` whose
    process is no longer alive: what a run killed outright (SIGKILL, a power cut) left. A
    folder of a running process, this one or another, is never touched; so is anything whose
    name does not have exactly that form. The pids are this machine's: an output folder
    shared between machines over a network file system could lose a running export of
    another machine's process. Returns the number removed."""
    import shutil

    from .export.folder import TMP_MARK

    removed = 0
    try:
        entries = list(out.iterdir()) if out.is_dir() else []
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or TMP_MARK not in name:
            continue
        match = re.fullmatch(r"(\d{1,9})-[A-Za-z0-9_]+", name.rsplit(TMP_MARK, 1)[1])
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        pid = int(match.group(1))
        if pid <= 0 or pid == os.getpid() or _process_alive(pid):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += not entry.exists()
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):  # alive (another user's), or not ours to judge
        return True
    return True


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C), SIGTERM or SIGHUP: handled like Ctrl-C; the exit status is 128 + signum."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = int(signum)


#: The signals that stop a batch the way Ctrl-C does (a summary, no temporary folder left).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextmanager
def _stop_signals_raise(state: dict | None = None):
    """While inside: SIGINT, SIGTERM and SIGHUP raise `Interrupted` (a KeyboardInterrupt) and
    set `state["hit"]` / `state["signum"]`, so that an interrupt is not lost where Python
    ignores the exception (raised inside a weakref callback or `__del__`, e.g. during an
    import) or a library turns it into another error. A signal the process was started with
    ignored (`nohup` ignores SIGHUP) stays ignored. Main thread only (elsewhere: no change)."""
    state = {"hit": False, "signum": signal.SIGINT} if state is None else state

    def handler(signum, frame):
        state["hit"] = True
        state["signum"] = signum
        raise Interrupted(signum)

    def unraisable(info):  # the ignored KeyboardInterrupt: noted above, no "Exception ignored" traceback
        if not (state["hit"] and isinstance(info.exc_value, KeyboardInterrupt)):
            previous_hook(info)

    previous = {}
    try:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield state
        return
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield state
    finally:
        sys.unraisablehook = previous_hook
        for signum, old in previous.items():
            if old is None:
                old = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, old)


def _print_err(text: str) -> None:
    """A line on stderr that does not fail when stderr has gone (SIGHUP: the terminal closed)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def cmd_reconstruct(args) -> int:
    """Reconstruct every input into OUT/<name>/. One `FAILED path: message` line (stderr) per
    file that fails, as it fails; the batch goes on, and a batch lists its failures again at
    the end, with one line naming the files in input folders that were skipped as not images
    by their extension (not failures: they do not change the exit code; not shown with -q). Exit 0 when all succeed, 1 when any
    failed, 2 when there is nothing to do or no weights, 130 on Ctrl-C and 128 + signum on
    SIGTERM (143) or SIGHUP (129), handled the same way (finished folders are kept, no
    half-written one is left, a summary). Temporary folders in the output folder that a
    killed run left (its process gone) are removed first."""
    with _stop_signals_raise() as ctrl_c:
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
    stale = _remove_stale_temporaries(out)
    if stale and not args.quiet:
        print(f"facelift: removed {stale} temporary folder(s) in {out} left by an interrupted run", file=sys.stderr)
    if not args.quiet:  # torch, MediaPipe and the networks take a few seconds to start
        _print_err("facelift: loading the models...")
    try:
        fl = FaceLift.from_pretrained(args.weights, max_faces=args.max_faces)
    except FaceLiftError as exc:
        if ctrl_c["hit"]:
            raise Interrupted(ctrl_c["signum"]) from exc
        print(f"facelift: {one_line(exc)}", file=sys.stderr)
        return 2
    names = output_names(paths)
    failures: list[tuple[Path, str]] = []
    written = done = 0
    bar = tqdm(list(zip(paths, names)), unit="image", disable=len(paths) < 2 or args.quiet)
    try:
        for path, name in bar:
            if ctrl_c["hit"]:  # an interrupt that something swallowed
                raise Interrupted(ctrl_c["signum"])
            bar.set_postfix_str(path.name[-30:])
            shown = one_line(path, escape_whitespace=True)
            error = None
            try:
                rec = fl.reconstruct(path, face_index=args.face_index)
                rec.export(out / name, render_size=args.size, outputs=args.outputs)
            except FaceLiftError as exc:
                error = one_line(exc)
            except Exception as exc:  # a batch must survive one bad file; report it, keep going
                error = one_line(f"unexpected {type(exc).__name__}: {exc}")
            if error is not None and ctrl_c["hit"]:  # the interrupt, turned into an error by a library
                raise Interrupted(ctrl_c["signum"])
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
            raise Interrupted(ctrl_c["signum"])
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        with _stop_signals_held():  # a second signal must not cut the clean-up short
            try:
                bar.close()
            except (OSError, ValueError):  # stderr gone (SIGHUP)
                pass
            _remove_temporaries(out, names)
            failed = f", {len(failures)} failed (listed above)" if failures else ""
            how = "interrupted" if signum == signal.SIGINT else f"interrupted by {_signal_name(signum)}"
            _print_err(f"\nfacelift: {how} after {done} of {len(paths)} file(s): {written} reconstructed into "
                       f"{out}{failed}; no half-written output folder was left.")
        return 128 + signum
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
                                root=args.images, photo_metrics=args.photo_metrics)
    finally:
        fl.close()
    result["config"] = {"images": str(args.images), "limit": args.limit, "seed": args.seed,
                        "weights": fl.source, "trained": _trained_flags(fl.source),
                        "lpips": None if lpips is None else lpips.path, "bnet": fl.bnet is not None,
                        "albedo_pca_components": int(fl.face_model.n_albedo), "photo_metrics": args.photo_metrics}
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
    from ._version import __version__

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
    rec.add_argument("--outputs", type=_outputs, default=None, metavar="NAMES",
                     help="comma-separated outputs to write (default: all): " + ", ".join(_output_names())
                          + "; params.json is always written")
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
    ev.add_argument("--photo-metrics", action=argparse.BooleanOptionalAction, default=True,
                    help="image-space occlusion and photo consistency: 11 more reconstructions per photo "
                         "(default on; --no-photo-metrics skips them)")
    ev.add_argument("-q", "--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def _output_names() -> list[str]:
    from .export import OUTPUTS

    return list(OUTPUTS)


def _outputs(text: str) -> tuple[str, ...]:
    from .export import select_outputs

    try:
        return select_outputs(text)
    except FaceLiftError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _max_faces(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be from 1 to 100, got {value}")
    return value


@contextmanager
def _stop_signals_held():
    """Stop signals wait (are blocked) while inside; delivered on leaving. POSIX only."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM and SIGHUP end a run the way Ctrl-C does, from the start (imports, weights) on:
    # no traceback, exit status 128 + signum (130, 143, 129)
    with _stop_signals_raise():
        try:
            return _main(argv)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            _print_err("\nfacelift: interrupted" + ("" if signum == signal.SIGINT else f" by {_signal_name(signum)}"))
            return 128 + signum


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    # MediaPipe's native start-up lines on stderr would bury the per-file lines; the command
    # line (single-threaded) may redirect fd 2 for those moments (see facelift/landmarks.py).
    # Restored afterwards, for a caller that runs main() inside a longer-lived process.
    previous = None
    try:
        from .landmarks import quiet_native_startup_logs

        previous = quiet_native_startup_logs(True)
        return args.func(args)
    finally:
        if previous is not None:
            quiet_native_startup_logs(previous)


if __name__ == "__main__":
    sys.exit(main())
