"""Finding and reading weight files: local paths, URLs with a sha256-checked cache, state dicts."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import struct
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch

from mediar3d.errors import ModelError
from mediar3d.optional import missing_extra

logger = logging.getLogger(__name__)

#: Key prefixes added by wrappers, stripped explicitly when loading: DistributedDataParallel /
#: DataParallel (`module.`) and torch.compile (`_orig_mod.`).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_URL_SCHEMES = ("http", "https", "file")

#: What torch.load raises on a file that is not a torch file (a text file makes the legacy
#: unpickler fail with KeyError, a few stray bytes with struct.error).
UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
              struct.error, pickle.UnpicklingError, zipfile.BadZipFile)


def default_cache_dir() -> Path:
    """Where downloaded weights are kept: $MEDIAR3D_CACHE, else ~/.cache/mediar3d/weights."""
    env = os.environ.get("MEDIAR3D_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mediar3d" / "weights"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights(url_or_path: str | os.PathLike, sha256: str | None = None,
                    cache_dir: str | os.PathLike | None = None, progress: bool = False) -> Path:
    """Return a local file for a weights path or URL, downloading URLs into a cache once.

    Args:
        url_or_path: A local file path, or an http(s):// or file:// URL.
        sha256: Expected hex digest (full or a prefix of at least 8 characters); checked
            for local files and downloads. A cached file that does not match is fetched again.
        cache_dir: Download cache; defaults to `default_cache_dir()`.
        progress: Show a download progress bar (tqdm, on stderr).

    Returns:
        Path of the local file.

    Raises:
        ModelError: Missing file, failed download, or sha256 mismatch.
    """
    text = os.fspath(url_or_path)
    if sha256 is not None and (len(sha256) < 8 or any(c not in "0123456789abcdefABCDEF" for c in sha256)):
        raise ModelError(f"sha256={sha256!r} for {text} is not a hex digest (at least 8 hex characters)")
    scheme = urlparse(text).scheme.lower()
    if scheme not in _URL_SCHEMES:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ModelError(f"weights file {path} does not exist; give a local file path or an http(s)/file URL")
        _check_digest(path, sha256, text)
        return path
    name = Path(unquote(urlparse(text).path)).name
    if not name:
        raise ModelError(f"weights URL {text} does not end in a file name")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = folder / name
    if target.is_file():
        if sha256 is None or sha256_of(target).startswith(sha256.lower()):
            logger.debug("using cached weights %s", target)
            return target
        logger.warning("cached weights %s do not match sha256 %s; downloading again", target, sha256)
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    logger.info("downloading %s to %s", text, target)
    try:
        torch.hub.download_url_to_file(text, str(partial), hash_prefix=None, progress=progress)
    except (OSError, ValueError) as error:  # urllib's URLError is an OSError
        partial.unlink(missing_ok=True)
        raise ModelError(f"could not download weights from {text}: {error}") from error
    try:
        _check_digest(partial, sha256, text)
    except ModelError:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return target


def _check_digest(path: Path, sha256: str | None, source: str) -> None:
    if sha256 is None:
        return
    actual = sha256_of(path)
    if not actual.startswith(sha256.lower()):
        raise ModelError(f"weights {source} have sha256 {actual}, expected {sha256}; "
                         "the file is corrupt or not the one meant")


def describe_load_error(error: BaseException) -> str:
    """One line saying why torch.load failed (the unpickler's KeyError 101 means: not a torch file)."""
    if isinstance(error, (KeyError, IndexError, TypeError, AttributeError, struct.error)) or not str(error):
        return "not a file written by torch.save"
    return str(error).splitlines()[0]


def read_weights_file(path: str | os.PathLike) -> dict:
    """Load a weights file safely; raise ModelError if unreadable.

    Args:
        path: A `.safetensors` file, or a file written by `torch.save` (.pt/.pth/.ckpt),
            read with `weights_only=True` (no arbitrary code runs).

    Returns:
        The loaded object, which must be a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as error:
        raise ModelError(f"{path} is not a readable torch weights file (truncated or corrupt?): "
                         f"{describe_load_error(error)}") from error
    if not isinstance(obj, dict):
        raise ModelError(f"{path} holds a {type(obj).__name__}, not a dict of weights")
    return obj


def unwrap_state_dict(obj: Mapping, keys: Iterable[str] = ("state_dict", "model", "model_state_dict")) -> dict:
    """Return the state dict inside a checkpoint that nests it under a common key."""
    for key in keys:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
            return dict(inner)
    return dict(obj)


def strip_prefixes(state_dict: Mapping[str, torch.Tensor],
                   prefixes: Iterable[str] = WRAPPER_PREFIXES) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (`module.`, `_orig_mod.`) that every key carries.

    A prefix is removed only if all keys start with it; repeated until none applies, so
    `module._orig_mod.` is handled too.
    """
    state = dict(state_dict)
    changed = True
    while changed and state:
        changed = False
        for prefix in prefixes:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                logger.debug("stripped key prefix %r", prefix)
                changed = True
    return state


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries whose key starts with `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def adapt_input_conv_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a pretrained first-conv kernel (out, C_w, kh, kw) to `in_channels` inputs.

    For 1 channel the RGB kernels are summed: the network then computes exactly what it
    computed on a grey image replicated to three channels (timm's `adapt_input_conv`).
    """
    if weight.ndim != 4 or weight.shape[1] == in_channels:
        return weight  # nothing to adapt (a wrong shape is reported by load_strict)
    try:
        from timm.models import adapt_input_conv
    except ModuleNotFoundError as error:
        raise missing_extra(error, "models", "adapting pretrained input weights", ModelError) from None
    return adapt_input_conv(in_channels, weight)


def load_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with a one-line ModelError naming a few bad keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
                parts.append(f"{len(keys)} {label} key(s): {shown}")
        raise ModelError(f"weights in {source} do not fit {type(module).__name__}: " + "; ".join(parts))
    # nn.Module's own method: some encoders (smp's MiT) override load_state_dict without `strict`
    torch.nn.Module.load_state_dict(module, state_dict, strict=True)
