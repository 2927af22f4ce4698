"""The Hugging Face Hub layer: fetch a bundle, push one, explain what went wrong.

Everything here goes through ``huggingface_hub`` (``snapshot_download``, ``HfApi``); FaceLift
has no download code of its own. The Hub's environment variables are honoured: ``HF_ENDPOINT``
(a mirror or a test server), ``HF_HUB_OFFLINE`` (cache only), ``HF_TOKEN`` (private or gated
repos), ``HF_HOME``/``HF_HUB_CACHE`` (where the cache is). ``huggingface_hub`` reads
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once, when it is imported; FaceLift reads them again on
every call, so setting them later (in a notebook, or a test) works too.

Every failure becomes a :class:`~facelift.errors.WeightsError` whose message says what to do.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import WeightsError

ENV_REPO_ID = "FACELIFT_REPO_ID"
DEFAULT_REPO_ID = "facelift-project/facelift"
CONFIG_NAME = "config.json"
_TRUE = {"1", "on", "yes", "true"}


def default_repo_id() -> str:
    """The Hub repo the default weights come from: ``$FACELIFT_REPO_ID`` or DEFAULT_REPO_ID."""
    return os.environ.get(ENV_REPO_ID, "").strip() or DEFAULT_REPO_ID


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (or when huggingface_hub was imported)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE")
    if env is not None:
        return env.strip().lower() in _TRUE
    return bool(constants.is_offline_mode())


def endpoint() -> str:
    """``HF_ENDPOINT`` as set now, else the endpoint huggingface_hub was imported with."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT", "").strip() or constants.ENDPOINT).rstrip("/")


def download_bundle(repo_id: str, *, revision: str | None, cache_dir: str | os.PathLike | None,
                    local_files_only: bool | None, bundle_files: Callable[[Path], list[str]]) -> Path:
    """Fetch a bundle from the Hub into the Hub cache (or find it there) and return its folder.

    Two ``snapshot_download`` calls: the first gets ``config.json`` at ``revision`` (branch, tag
    or commit) and so resolves it to a commit; ``bundle_files(folder)`` reads and validates that
    config and names exactly the bundle's files; the second gets those files at that same commit.
    Nothing else in the repo (a stray ``pytorch_model.bin``, say) is ever downloaded.
    ``local_files_only=None`` follows ``HF_HUB_OFFLINE``.
    """
    from huggingface_hub import snapshot_download

    from ._version import __version__

    offline = is_offline() if local_files_only is None else bool(local_files_only)
    common = dict(repo_type="model", cache_dir=None if cache_dir is None else str(cache_dir),
                  local_files_only=offline, endpoint=endpoint(), library_name="facelift",
                  library_version=__version__)
    where = _describe(repo_id, revision)
    try:
        first = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG_NAME], **common))
        if not (first / CONFIG_NAME).is_file():
            raise WeightsError(f"{where} has no {CONFIG_NAME} at its top level, so it is not a FaceLift bundle.")
        files = bundle_files(first)
        # the snapshot folder is named after the commit: pin the second call to it
        folder = Path(snapshot_download(repo_id, revision=first.name, allow_patterns=files, **common))
    except WeightsError:
        raise
    except Exception as exc:  # huggingface_hub and httpx raise many types; translate the known ones
        raise translate_error(exc, repo_id, revision, offline=offline, cache_dir=cache_dir) from exc
    missing = [f for f in files if not f.endswith("README.md") and not (folder / f).is_file()]
    if missing:
        raise WeightsError(f"{where} lacks {', '.join(missing)}, which its {CONFIG_NAME} names "
                           f"(snapshot {folder}).")
    return folder


def translate_error(exc: BaseException, repo_id: str, revision: str | None, *, offline: bool,
                    cache_dir: str | os.PathLike | None = None,
                    local_example: str = "FaceLift.from_pretrained('path/to/checkpoints')") -> WeightsError:
    """A WeightsError that says what went wrong with a Hub download and how to fix it."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _describe(repo_id, revision)
    cache = str(cache_dir) if cache_dir is not None else constants.HF_HUB_CACHE
    local_hint = f"or pass a local directory, e.g. {local_example}"
    if isinstance(exc, HFValidationError):
        return WeightsError(f"'{repo_id}' is neither an existing directory nor a valid Hugging Face Hub repo id "
                            f"('owner/name'): {exc}")
    if isinstance(exc, LocalEntryNotFoundError):  # includes IncompleteSnapshotError
        if offline:
            return WeightsError(
                f"The weights {where} are not in the Hugging Face cache ({cache}), and downloading is switched off "
                f"(HF_HUB_OFFLINE=1 or local_files_only=True). To fix it: run once with network access and "
                f"HF_HUB_OFFLINE unset to fill the cache (or `hf download {repo_id}` on a connected machine with "
                f"the same HF_HOME), {local_hint}.")
        return WeightsError(
            f"Could not reach the Hugging Face Hub at {endpoint()} to download {where}, and it is not in the "
            f"cache ({cache}). Check the network connection (and HF_ENDPOINT if you use a mirror), then retry; "
            f"{local_hint}. Details: {exc}")
    if isinstance(exc, GatedRepoError):
        return WeightsError(
            f"The Hub repo '{repo_id}' is gated: accept its terms on {endpoint()}/{repo_id} with your account, "
            f"then set HF_TOKEN to an access token of that account (or run `hf auth login`).")
    if isinstance(exc, RepositoryNotFoundError):
        return WeightsError(
            f"There is no model repo '{repo_id}' on {endpoint()} (or it is private). Check the repo id "
            f"(the default comes from ${ENV_REPO_ID}); for a private repo set HF_TOKEN to a token that can "
            f"read it; {local_hint}.")
    if isinstance(exc, RevisionNotFoundError):
        return WeightsError(f"The Hub repo '{repo_id}' has no revision '{revision}' (a branch, tag or commit "
                            f"hash). Check the `revision` argument.")
    if isinstance(exc, RemoteEntryNotFoundError):
        return WeightsError(f"A file of the bundle is missing from {where}: {exc}")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return WeightsError(f"The Hub refused access to {where} (HTTP {status}). Set HF_TOKEN to a valid access "
                                f"token that can read the repo (or run `hf auth login`).")
        return WeightsError(f"The Hub at {endpoint()} failed while downloading {where} (HTTP {status}): {exc}. "
                            f"Retry later, {local_hint}.")
    return WeightsError(f"Could not download {where} from {endpoint()}: {type(exc).__name__}: {exc}")


def push_bundle(save: Callable[[Path], object], repo_id: str, *, token: str | None = None,
                private: bool | None = None, branch: str | None = None, create_pr: bool = False,
                commit_message: str = "Upload FaceLift bundle"):
    """Write a bundle with ``save(folder)`` into a temporary folder and upload it as one commit
    with ``HfApi.create_repo`` + ``HfApi.upload_folder``. Returns the ``CommitInfo``."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint(), token=token, library_name="facelift")
    repo_id = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True).repo_id
    if branch is not None:
        api.create_branch(repo_id=repo_id, branch=branch, repo_type="model", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facelift-push-") as tmp:
        folder = Path(tmp) / "bundle"
        save(folder)
        return api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=folder,
                                 commit_message=commit_message, revision=branch, create_pr=create_pr)


def _describe(repo_id: str, revision: str | None) -> str:
    return f"'{repo_id}'" + (f" (revision '{revision}')" if revision else "")
