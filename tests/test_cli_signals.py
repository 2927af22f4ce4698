"""The CLI under SIGTERM/SIGHUP, after a killed run, with very long names and a umask (issue 17).

Real signals to a real `facelift` process, like test_cli.py's SIGINT tests, plus in-process
runs of `facelift.cli.main`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facelift.cli import MAX_OUTPUT_NAME, _remove_stale_temporaries, main, output_names

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.png"
TMP_MARK = ".facelift-tmp-"
posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")


def _copy_astronauts(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(ASTRONAUT, folder / n)


def _complete_outputs(out: Path) -> list[str]:
    """The entries of `out`, each checked to be a complete export (none temporary)."""
    names = sorted(p.name for p in out.iterdir()) if out.exists() else []
    for n in names:
        assert not n.startswith("."), f"temporary folder left behind: {n}"
        files = {p.name for p in (out / n).iterdir()}
        assert {"mesh.glb", "params.json", "render.png", "texture.png"} <= files, (n, files)
    return names


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- SIGTERM / SIGHUP

@posix_only
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
@pytest.mark.slow
@pytest.mark.integration
def test_a_stop_signal_mid_batch_is_handled_like_ctrl_c(tmp_path, capsys, monkeypatch, signame):
    """The signal arrives while the third photo is reconstructed: exit 128 + signum, a summary,
    the finished folders kept and no temporary one left (it used to exit at once, no summary,
    leaving a hidden .facelift-tmp- folder)."""
    from facelift import FaceLift

    signum = getattr(signal, signame)
    src = tmp_path / "photos"
    _copy_astronauts(src, ["a.png", "b.png", "c.png", "d.png"])
    original, calls = FaceLift.reconstruct, {"n": 0}

    def signalled(self, image, face_index=0):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signum)
            time.sleep(0.5)  # the handler runs here, as it would at any point of the work
        return original(self, image, face_index=face_index)

    monkeypatch.setattr(FaceLift, "reconstruct", signalled)
    out = tmp_path / "out"
    before = signal.getsignal(signum)
    code = main(["reconstruct", str(src), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 128 + signum
    assert signal.getsignal(signum) == before  # the handlers are put back
    assert _complete_outputs(out) == ["a", "b"]
    assert f"interrupted by {signame} after 2 of 4 file(s): 2 reconstructed into {out}" in err
    assert "Traceback" not in err


@posix_only
def test_the_handlers_are_put_back_and_an_ignored_signal_stays_ignored(tmp_path, monkeypatch):
    """`nohup facelift ...` starts with SIGHUP ignored: the CLI must not turn it back on."""
    import facelift.cli as cli

    before = {s: signal.getsignal(s) for s in cli.STOP_SIGNALS}
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with cli._stop_signals_raise():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert {s: signal.getsignal(s) for s in cli.STOP_SIGNALS} == before


def _console_script() -> list[str]:
    exe = Path(sys.executable).with_name("facelift")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "facelift.cli"]


@posix_only
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
@pytest.mark.slow
@pytest.mark.integration
def test_real_stop_signal_to_a_running_batch(tmp_path, signame):
    """`facelift reconstruct folder/` in a subprocess, the signal as soon as an export's
    temporary folder appears: exit 128 + signum, a summary, no traceback, no temporary folder."""
    signum = getattr(signal, signame)
    src = tmp_path / "photos"
    _copy_astronauts(src, [f"p{i:02d}.png" for i in range(12)])
    out = tmp_path / "out"
    proc = subprocess.Popen(_console_script() + ["reconstruct", str(src), "-o", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 240
        while not (out.is_dir() and any(TMP_MARK in p.name for p in out.iterdir())):
            if proc.poll() is not None:
                pytest.fail(f"facelift ended (rc {proc.returncode}) too early: {proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("timed out waiting for the first export")
            time.sleep(0.02)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signum, err[-2000:]
    assert f"interrupted by {signame} after" in err and "Traceback" not in err, err[-2000:]
    assert len(_complete_outputs(out)) < 12


# ----------------------------------------------------------------------------- a killed run's leftovers

def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    stale = out / f".photo{TMP_MARK}{dead}-ab12_cd3"
    stale.mkdir()
    (stale / "mesh.glb").write_bytes(b"glTF")
    kept = [
        out / f".mine{TMP_MARK}{os.getpid()}-xyz12345",  # this process: alive
        out / f".init{TMP_MARK}1-xyz12345",  # pid 1: alive
        out / f"photo{TMP_MARK}{dead}-xyz12345",  # not hidden: not an export's name
        out / f".photo{TMP_MARK}{dead}-has space",  # not what mkdtemp makes
        out / f".photo{TMP_MARK}{dead}",  # no suffix
        out / ".notes",
    ]
    for folder in kept:
        folder.mkdir()
    (out / f".file{TMP_MARK}{dead}-abcdefgh").write_text("a file, not a folder")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (out / f".link{TMP_MARK}{dead}-abcdefgh").symlink_to(target)
    assert _remove_stale_temporaries(out) == 1
    assert not stale.exists()
    assert all(folder.is_dir() for folder in kept)
    assert (out / f".file{TMP_MARK}{dead}-abcdefgh").is_file() and target.is_dir()
    assert _remove_stale_temporaries(tmp_path / "missing") == 0


@pytest.mark.slow
@pytest.mark.integration
def test_the_next_run_cleans_up_after_a_killed_one(tmp_path, capsys):
    out = tmp_path / "out"
    stale = out / f".astronaut{TMP_MARK}{_dead_pid()}-ab12cd34"
    stale.mkdir(parents=True)
    (stale / "texture.png").write_bytes(b"half-written")
    assert main(["reconstruct", str(ASTRONAUT), "-o", str(out)]) == 0
    assert "removed 1 temporary folder(s)" in capsys.readouterr().err
    assert _complete_outputs(out) == ["astronaut"]


# ----------------------------------------------------------------------------- long names, permissions

def test_long_stems_are_shortened_uniquely():
    long_a, long_b = "a" * 240 + "x", "a" * 240 + "y"
    names = output_names([Path(f"{long_a}.png"), Path(f"{long_b}.png"), Path(f"{long_a}.jpg"), Path("short.png")])
    assert all(len(n) <= MAX_OUTPUT_NAME for n in names)
    assert len(set(names)) == 4 and names[3] == "short"
    assert names[0].startswith("a" * 150) and names[2] == names[0] + "_2"
    # the temporary name export makes from it fits NAME_MAX (255) even with a 7-digit pid
    assert len(f".{names[2]}{TMP_MARK}4194304-abcdefgh") <= 255
    assert output_names([Path("b" * (MAX_OUTPUT_NAME - 4) + ".png")]) == ["b" * (MAX_OUTPUT_NAME - 4)]  # kept whole


@pytest.mark.slow
@pytest.mark.integration
def test_a_250_character_stem_works_and_folders_follow_the_umask(tmp_path, capsys, with_umask):
    """The 250-character stem always failed ("File name too long": the temporary name was
    longer); the output folders were 0700 whatever the umask."""
    src = tmp_path / "in"
    stem = "portrait-" + "x" * 241
    _copy_astronauts(src, [f"{stem}.png", "second.png"])
    out = tmp_path / "out"
    assert with_umask(0o022, lambda: main(["reconstruct", str(src), "-o", str(out), "-q"])) == 0
    names = _complete_outputs(out)
    assert len(names) == 2 and names[0].startswith("portrait-xxx") and len(names[0]) <= MAX_OUTPUT_NAME
    for name in names:
        assert (out / name).stat().st_mode & 0o777 == 0o755, oct((out / name).stat().st_mode)
        assert (out / name / "params.json").stat().st_mode & 0o777 == 0o644
    assert with_umask(0o027, lambda: main(["reconstruct", str(src / "second.png"), "-o", str(out), "-q"])) == 0
    assert (out / "second").stat().st_mode & 0o777 == 0o750
    assert "Traceback" not in capsys.readouterr().err
