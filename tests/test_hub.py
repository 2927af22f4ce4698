"""FaceLift and the Hugging Face Hub, against a fake Hub on loopback (no internet here).

How the fake Hub is wired in: huggingface_hub copies HF_ENDPOINT into
`huggingface_hub.constants.ENDPOINT` (and the resolve-URL template built from it) once, when it
is imported. FaceLift reads HF_ENDPOINT again on every call and passes it to
`snapshot_download(endpoint=...)`, so the tests set the environment variable, as a user would.
They also point the import-time constants at the fake Hub, so that a code path that does not
take the endpoint (a single network's `from_pretrained`, through PyTorchModelHubMixin) cannot
reach the real Hub either; and `test_hf_endpoint_set_before_import` runs a fresh interpreter
with HF_ENDPOINT in its environment from the start, the usual way of setting it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from facelift import FaceLift, pipeline
from facelift.errors import WeightsError
from facelift.models import FAN
from facelift.pipeline import _download_bundle, default_weights

from bundle_helpers import FakeHub, folder_files, make_bundle

REPO = "test/facelift"
BUNDLE_FILES = {"config.json", "README.md", "face_model.safetensors", "fan/config.json", "fan/model.safetensors",
                "fan/README.md", "drn/config.json", "drn/model.safetensors", "drn/README.md"}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    fake = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setattr(constants, "ENDPOINT", fake.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("FACELIFT_REPO_ID", raising=False)
    try:
        yield fake
    finally:
        fake.stop()


def _fan_state(path: Path) -> dict:
    return FAN.from_pretrained(path).state_dict()


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.slow
def test_download_load_then_load_from_cache_with_the_hub_stopped(hub, tmp_path, monkeypatch):
    local = make_bundle(tmp_path / "a", seed=0, pickles=True)
    commit = hub.add_folder(REPO, local, "main")
    # no checkpoints/ next to the package: the default is the Hub repo, overridable by env var
    monkeypatch.setattr(pipeline, "CHECKPOINTS_DIR", tmp_path / "no-checkpoints")
    monkeypatch.setenv("FACELIFT_REPO_ID", REPO)
    assert default_weights() == REPO

    pipe = FaceLift.from_pretrained()
    assert pipe.source == REPO
    assert pipe.bundle_path == tmp_path / "hf-cache" / "models--test--facelift" / "snapshots" / commit
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in pipe.fan.state_dict().values()
               if t.is_floating_point())
    _assert_same_state(pipe.fan.state_dict(), _fan_state(local / "fan"))
    assert pipe.config["seed"] == 0 and pipe.drn is not None and pipe.bnet is None
    pipe.close()
    # exactly the bundle's files were fetched: never the pickles, nothing else
    fetched = {p.split(f"/resolve/{commit}/", 1)[1] for p in hub.requested("/resolve/")}
    assert fetched == BUNDLE_FILES
    assert not hub.requested(r"\.bin$")
    assert {p.relative_to(pipe.bundle_path).as_posix() for p in pipe.bundle_path.rglob("*") if p.is_file()} \
        == BUNDLE_FILES

    hub.stop()
    n_requests = len(hub.requests)
    again = FaceLift.from_pretrained(REPO)  # online mode, Hub unreachable: falls back to the cache
    _assert_same_state(again.fan.state_dict(), _fan_state(local / "fan"))
    again.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = FaceLift.from_pretrained(REPO)
    assert offline.bundle_path == pipe.bundle_path
    offline.close()
    assert len(hub.requests) == n_requests


def test_pinned_revision_returns_that_revisions_files(hub, tmp_path):
    a, b = make_bundle(tmp_path / "a", seed=0), make_bundle(tmp_path / "b", seed=1)
    commit_a = hub.add_folder(REPO, a, "main")
    commit_b = hub.add_folder(REPO, b, "v1")
    assert folder_files(a)["fan/model.safetensors"] != folder_files(b)["fan/model.safetensors"]

    pipe = FaceLift.from_pretrained(REPO, revision="v1")
    assert pipe.config["seed"] == 1 and pipe.bundle_path.name == commit_b
    _assert_same_state(pipe.fan.state_dict(), _fan_state(b / "fan"))
    pipe.close()
    for revision, commit, source in ((None, commit_a, a), ("main", commit_a, a), (commit_b, commit_b, b),
                                     (commit_a, commit_a, a)):
        folder = _download_bundle(REPO, revision=revision, cache_dir=None, local_files_only=None)
        assert folder.name == commit
        fan = "fan/model.safetensors"
        assert (folder / fan).read_bytes() == (source / fan).read_bytes()
    # the cache records which commit each branch or tag pointed to
    refs = tmp_path / "hf-cache" / "models--test--facelift" / "refs"
    assert (refs / "main").read_text() == commit_a and (refs / "v1").read_text() == commit_b


def test_a_corrupted_file_gives_a_clear_error(hub, tmp_path):
    bundle = make_bundle(tmp_path / "a")
    weights = bundle / "fan" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    hub.add_folder(REPO, bundle, "main")
    with pytest.raises(WeightsError, match=r"fan/model\.safetensors.*not a readable safetensors file"):
        FaceLift.from_pretrained(REPO)

    bundle = make_bundle(tmp_path / "b")
    (bundle / "face_model.safetensors").write_bytes(b"\0" * 64)
    hub.add_folder("test/bad-face-model", bundle, "main")
    with pytest.raises(WeightsError, match=r"face_model\.safetensors"):
        FaceLift.from_pretrained("test/bad-face-model")


def test_an_incompatible_bundle_is_refused_before_its_weights_are_fetched(hub, tmp_path):
    bundle = make_bundle(tmp_path / "a")
    cfg = json.loads((bundle / "config.json").read_text())
    (bundle / "config.json").write_text(json.dumps({**cfg, "format_version": 2}))
    hub.add_folder(REPO, bundle, "main")
    with pytest.raises(WeightsError, match=r"config\.json has format_version 2.*upgrade FaceLift"):
        FaceLift.from_pretrained(REPO)
    assert not hub.requested(r"\.safetensors$")


def test_a_file_the_config_names_but_the_repo_lacks(hub, tmp_path):
    files = folder_files(make_bundle(tmp_path / "a"))
    del files["drn/model.safetensors"]
    hub.add_commit(REPO, files, "main")
    with pytest.raises(WeightsError, match=r"lacks drn/model\.safetensors"):
        FaceLift.from_pretrained(REPO)


def test_hub_errors_say_how_to_fix_them(hub, tmp_path, monkeypatch):
    hub.add_folder(REPO, make_bundle(tmp_path / "a"), "main")
    with pytest.raises(WeightsError, match=r"no model repo 'test/nothing-here'.*HF_TOKEN"):
        FaceLift.from_pretrained("test/nothing-here")
    with pytest.raises(WeightsError, match=r"no revision 'v9'"):
        FaceLift.from_pretrained(REPO, revision="v9")
    with pytest.raises(WeightsError, match=r"is neither an existing directory nor a valid"):
        FaceLift.from_pretrained("not a repo id")
    with pytest.raises(WeightsError, match=r"no such directory"):
        FaceLift.from_pretrained(str(tmp_path / "missing" / "bundle"))

    hub.add_folder("test/gated", make_bundle(tmp_path / "g"), "main")
    hub.gated.add("test/gated")
    with pytest.raises(WeightsError, match=r"gated.*HF_TOKEN"):
        FaceLift.from_pretrained("test/gated")

    hub.add_folder("test/private", make_bundle(tmp_path / "p"), "main")
    hub.tokens["test/private"] = "hf_secret"
    with pytest.raises(WeightsError, match="HF_TOKEN"):
        _download_bundle("test/private", revision=None, cache_dir=None, local_files_only=None)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    folder = _download_bundle("test/private", revision=None, cache_dir=None, local_files_only=None)
    assert (folder / "fan" / "model.safetensors").is_file()


def test_offline_with_an_empty_cache_says_how_to_fix_it(hub, tmp_path, monkeypatch):
    hub.add_folder(REPO, make_bundle(tmp_path / "a"), "main")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        FaceLift.from_pretrained(REPO, cache_dir=tmp_path / "empty-cache")
    message = str(info.value)
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert "local directory" in message and str(tmp_path / "empty-cache") in message
    assert hub.requests == []
    # local_files_only=True does the same whatever HF_HUB_OFFLINE says
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(WeightsError, match="local_files_only"):
        FaceLift.from_pretrained(REPO, cache_dir=tmp_path / "empty-cache", local_files_only=True)
    assert hub.requests == []


def test_a_single_network_offline_with_an_empty_cache_says_how_to_fix_it(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        FAN.from_pretrained("test/fan-only", cache_dir=tmp_path / "empty-cache")
    message = str(info.value)
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    assert "FAN.from_pretrained('path/to/folder')" in message
    assert hub.requests == []


def test_unreachable_hub_with_an_empty_cache(hub, tmp_path):
    hub.stop()
    with pytest.raises(WeightsError, match=r"Could not reach the Hugging Face Hub.*HF_ENDPOINT"):
        FaceLift.from_pretrained(REPO, cache_dir=tmp_path / "empty-cache")


def test_a_single_network_from_the_hub_at_a_revision(hub, tmp_path):
    torch.manual_seed(0)
    FAN(resolution=128, ngf=2).save_pretrained(tmp_path / "v0")
    FAN(resolution=128, ngf=2).save_pretrained(tmp_path / "v1")
    hub.add_folder("test/fan", tmp_path / "v0", "main")
    hub.add_folder("test/fan", tmp_path / "v1", "v1")
    cache = tmp_path / "net-cache"
    net = FAN.from_pretrained("test/fan", revision="v1", cache_dir=cache)
    _assert_same_state(net.state_dict(), _fan_state(tmp_path / "v1"))
    assert next(cache.glob("models--test--fan/snapshots/*/model.safetensors")).is_file()
    net = FAN.from_pretrained("test/fan", cache_dir=cache)
    _assert_same_state(net.state_dict(), _fan_state(tmp_path / "v0"))


def test_push_to_hub_uploads_a_bundle_with_hfapi(tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload_folder"] = (repo_id, kwargs)
        calls["files"] = set(folder_files(Path(folder_path)))
        calls["config"] = json.loads((Path(folder_path) / "config.json").read_text())
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    pipe = FaceLift.from_pretrained(make_bundle(tmp_path / "a"))
    assert pipe.push_to_hub("me/my-facelift", private=True, commit_message="hi") == "commit-info"
    pipe.close()
    assert calls["create_repo"] == ("me/my-facelift", {"repo_type": "model", "private": True, "exist_ok": True})
    assert calls["upload_folder"][0] == "me/my-facelift" and calls["upload_folder"][1]["commit_message"] == "hi"
    assert calls["files"] == BUNDLE_FILES
    assert calls["config"]["library_version"] and calls["config"]["format_version"] == 1


@pytest.mark.slow
def test_hf_endpoint_set_before_import(hub, tmp_path):
    """A fresh interpreter with HF_ENDPOINT and HF_HUB_CACHE in its environment from the start."""
    local = make_bundle(tmp_path / "a", seed=3)
    commit = hub.add_folder(REPO, local, "main")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(tmp_path / "child-cache"), HF_HUB_DISABLE_TELEMETRY="1")
    code = ("import json; from facelift import FaceLift; p = FaceLift.from_pretrained('test/facelift'); "
            "print(json.dumps([str(p.bundle_path), p.config['seed']]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    path, seed = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(path) == tmp_path / "child-cache" / "models--test--facelift" / "snapshots" / commit and seed == 3
