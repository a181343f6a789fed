"""Checkpoints by Hugging Face hub id: ``hf:ORG/NAME[@REVISION]`` → a local directory.

Wherever a config takes a checkpoint directory (extraction ``source_dir`` / ``teacher_dir``,
pretraining ``teacher_dir`` / ``init``, fine-tuning and Agora ``init``), you may write a
hub id instead: ``hf:bert-large-uncased``, ``hf:roberta-large``, ``hf:ORG/NAME@v1.0`` (a branch,
tag or commit). The local Hugging Face cache is used first (``HF_HOME`` / ``HF_HUB_CACHE``);
otherwise only the files the loader reads are downloaded (config.json, model.safetensors,
tokenizer files; never PyTorch weights, so a repository must hold model.safetensors). With
``HF_HUB_OFFLINE=1`` nothing is downloaded and a missing model is a one-line error naming the
id. The id names the cache folder: ``hf:bert-large-uncased`` does not find a copy cached as
``google-bert/bert-large-uncased``.

`resolve` is the one entry point; `bort_jax.hf.load` / `load_tokenizer` / `load_classifier`
call it, so ``hf.load("hf:roberta-large")`` works anywhere a path does.
"""

from __future__ import annotations

import os
import re

PREFIX = "hf:"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"  # the only weights bort_jax.hf.load reads
CONFIG_ONLY = (CONFIG_FILE,)  # resolve(..., files=CONFIG_ONLY): shapes before a large download

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_TRUE = ("1", "ON", "YES", "TRUE")


class HubError(FileNotFoundError):
    """A hub id that cannot be resolved to a local directory (message: one line, names the id)."""


def is_hub_id(path_or_id: object) -> bool:
    """True for a string written ``hf:...``."""
    return isinstance(path_or_id, str) and path_or_id.startswith(PREFIX)


def parse(hub_id: str) -> tuple[str, str | None]:
    """``hf:ORG/NAME@REV`` → ("ORG/NAME", "REV"); the revision is None when absent.

    Raises ValueError for a malformed id.
    """
    body = hub_id[len(PREFIX) :] if hub_id.startswith(PREFIX) else hub_id
    repo, sep, revision = body.partition("@")
    if not _REPO_ID.match(repo) or ".." in repo or (sep and not revision):
        raise ValueError(
            f"{hub_id!r} is not a Hugging Face hub id: write hf:NAME or hf:ORG/NAME, "
            "optionally @REVISION (e.g. hf:bert-large-uncased, hf:FacebookAI/roberta-large@main)"
        )
    return repo, (revision or None)


def resolve(
    path_or_id: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    files: tuple[str, ...] | None = None,
) -> str:
    """The local directory for a path or a ``hf:`` id.

    Anything not written ``hf:...`` (a plain path, "", a ``gs://`` URL) comes back unchanged (as
    a str). A hub id is looked up in the local cache (``cache_dir``, else ``HF_HUB_CACHE`` /
    ``HF_HOME``): a cached snapshot holding config.json and model.safetensors is returned as is,
    with no network access. Otherwise `files` (those present in the repository) are downloaded,
    unless ``allow_download=False`` or ``HF_HUB_OFFLINE`` is set; then a partial snapshot (e.g.
    a tokenizer-only repository) is still returned, and no snapshot at all raises `HubError`.
    `files` defaults to `loader_files()`; ``files=CONFIG_ONLY`` fetches only config.json (the
    shapes, e.g. to validate or plan before a large download).
    """
    if not is_hub_id(path_or_id):
        return os.fspath(path_or_id)
    repo, revision = parse(path_or_id)
    from huggingface_hub import snapshot_download

    files = loader_files() if files is None else tuple(files)
    cache = os.fspath(cache_dir) if cache_dir is not None else default_cache_dir()
    kwargs = dict(revision=revision, cache_dir=cache, allow_patterns=list(files))
    local = None
    try:
        local = snapshot_download(repo, local_files_only=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - not cached, or incomplete: download below
        local = getattr(e, "snapshot_path", None)  # IncompleteSnapshotError: the partial folder
    needed = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if f in files]
    if local is not None and all(os.path.isfile(os.path.join(local, f)) for f in needed):
        return local
    if not allow_download or offline():
        if local is not None:
            return local
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE is set" if offline() else "downloads are off"
        where = cache or constants.HF_HUB_CACHE
        raise HubError(
            f"{path_or_id}: not in the Hugging Face cache {where} and {why}; download it "
            "once online, or set HF_HUB_CACHE / HF_HOME to the cache that holds it"
        )
    try:
        return snapshot_download(repo, **kwargs)
    except Exception as e:  # noqa: BLE001 - any hub/network failure: one line naming the id
        if local is not None:
            return local
        raise HubError(
            f"{path_or_id}: cannot download from the Hugging Face hub: {_line(e)}"
        ) from e


def loader_files() -> tuple[str, ...]:
    """The files `bort_jax.hf` reads from a checkpoint directory: config.json, the weights
    (model.safetensors; PyTorch/TF/Flax weights are never fetched), a fine-tuned classifier's
    head and the tokenizer files."""
    from bort_jax import hf

    return (CONFIG_FILE, WEIGHTS_FILE, hf.HEAD_FILE, *hf.TOKENIZER_FILES)


def default_cache_dir() -> str | None:
    """``HF_HUB_CACHE``, else ``$HF_HOME/hub``, read now (huggingface_hub reads them at import);
    None: huggingface_hub's default."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return os.path.expanduser(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"])
    if env.get("HF_HOME"):
        return os.path.join(os.path.expanduser(env["HF_HOME"]), "hub")
    return None


def offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set, now or when huggingface_hub loaded."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or env.upper() in _TRUE


def _line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."
