"""Where a model comes from: a bundled name, a checkpoint file, a bioimage.io package, a URL.

`resolve_source` turns any of these into the path of a local mediar3d checkpoint (the
file `load_model` reads):

- ``None`` or a bundled name (`BUNDLED_MODELS`: ``default``/``nuclei``, ``cells``): the checkpoint
  shipped in the package;
- a path to a checkpoint written by `save_checkpoint`;
- a BioImage Model Zoo package (a ``.zip`` holding ``rdf.yaml`` / ``bioimageio.yaml``)
  written by ``mediar3d export-bioimageio``: the mediar3d checkpoint inside it
  (`PACKAGE_CHECKPOINT`) is extracted into the cache once;
- an ``https://`` URL of either, with its digest as ``#sha256=<64 hex digits>`` (or given
  apart: `pin_sha256`, the CLI's ``--sha256``): downloaded
  into the cache once (`mediar3d.models.weights.default_cache_dir`, ``$MEDIAR3D_CACHE``)
  and checked against the digest. Plain ``http://`` is accepted only for the local
  machine (localhost, 127.0.0.0/8, ::1), for testing and for serving files to oneself.

Nothing downloads unless the user names a URL.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
import zipfile
from importlib import resources
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag, urlparse

from mediar3d.errors import ModelError
from mediar3d.models.weights import default_cache_dir, resolve_weights, sha256_of

#: Bundled checkpoint of the nuclei model (the default; in mediar3d/weights/) and its names.
BUNDLED_FILE = "unet-small-nuclei.pt"
BUNDLED_NAMES = ("default", "unet-small", "unet-small-nuclei", "nuclei")


@dataclass(frozen=True)
class BundledModel:
    """A model named in the package: its checkpoint file in mediar3d/weights/, the names users
    may pass, what it is for, and its model card."""

    file: str
    names: tuple[str, ...]
    purpose: str
    card: str


#: Name of the mediar3d checkpoint inside a bioimage.io package written by mediar3d.
PACKAGE_CHECKPOINT = "mediar3d_model.pt"

#: File names of the resource description at the root of a bioimage.io package.
PACKAGE_DESCRIPTIONS = ("rdf.yaml", "bioimageio.yaml")

#: Every bundled model, the default (nuclei) first; `mediar3d info` lists them in this order.
BUNDLED_MODELS: tuple[BundledModel, ...] = (
    BundledModel(BUNDLED_FILE, BUNDLED_NAMES, "nuclei (a nuclear stain: DAPI, Hoechst, H2B-FP)", "MODEL_CARD.md"),
    BundledModel("unet-small-cells.pt", ("cells", "unet-small-cells", "membrane"),
                 "whole cells whose boundaries are stained (membrane / cell-wall marker), densely packed tissue",
                 "MODEL_CARD_cells.md"),
)


def bundled_model(name: str | None) -> BundledModel | None:
    """The bundled model called `name` (None: the default), or None if no bundled model has that name."""
    if name is None:
        return BUNDLED_MODELS[0]
    return next((model for model in BUNDLED_MODELS if name in model.names), None)


def all_bundled_names() -> tuple[str, ...]:
    """Every name of every bundled model."""
    return tuple(name for model in BUNDLED_MODELS for name in model.names)


def weights_dir() -> Path:
    """The folder of the bundled checkpoints (mediar3d/weights/ in the installed package)."""
    return Path(str(resources.files("mediar3d") / "weights"))


def bundled_checkpoint(name: str | None = None) -> Path:
    """Path of a bundled checkpoint (default: the nuclei model).

    Raises:
        ModelError: `name` is not a bundled model, or the package lacks its file.
    """
    model = bundled_model(name)
    if model is None:
        raise ModelError(f"model {name!r} is not a bundled model ({', '.join(all_bundled_names())})")
    path = weights_dir() / model.file
    if not path.is_file():
        raise ModelError(f"bundled model {path}: file is missing from the installed package; reinstall mediar3d")
    return path


def is_url(text: str) -> bool:
    """True for ``http://`` and ``https://`` addresses."""
    return urlparse(text).scheme.lower() in ("http", "https")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_url(text: str, sha256: str | None = None) -> tuple[str, str]:
    """(URL without fragment, lower-case sha256) of a model URL; checks scheme and digest.

    Args:
        text: ``https://host/path/model.zip#sha256=<64 hex>`` (http only for the local machine).
        sha256: The digest, when not given in the URL's fragment.

    Raises:
        ModelError: Another scheme, plain http to another machine, or no / a malformed digest.
    """
    url, fragment = urldefrag(text)
    parsed = urlparse(url)
    if parsed.scheme.lower() != "https" and not (parsed.scheme.lower() == "http" and _is_loopback(parsed.hostname)):
        raise ModelError(f"model URL {url}: use https (plain http only for localhost)")
    if fragment:
        key, _, value = fragment.partition("=")
        if key.lower() != "sha256":
            raise ModelError(f"model URL {text}: the fragment must be #sha256=<64 hex digits>, not #{fragment}")
        if sha256 is not None and sha256.lower() != value.lower():
            raise ModelError(f"model URL {text}: sha256 {sha256} differs from the one in the URL")
        sha256 = value
    digest = (sha256 or "").lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ModelError(f"model URL {url}: give the file's sha256 as {url}#sha256=<64 hex digits> "
                         "(print it with: sha256sum FILE)")
    return url, digest


def _check_hex(sha256: str) -> str:
    digest = sha256.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ModelError(f"sha256 {sha256!r}: expected 64 hex digits (print it with: sha256sum FILE)")
    return digest


def pin_sha256(models: list[str] | None, sha256: str | None) -> list[str] | None:
    """Apply a digest given apart from the model (``--sha256``) to the one model named.

    A URL gets it as its ``#sha256=`` fragment (checked after the download); a local
    checkpoint or package, or a bundled name, is checked now.

    Args:
        models: The ``--model`` values (None: the bundled model).
        sha256: 64 hex digits, or None to change nothing.

    Returns:
        ``models`` with the URL's digest added.

    Raises:
        ModelError: Malformed digest, several models, a digest that differs from the URL's
            or from the file's.
    """
    if sha256 is None:
        return models
    digest = _check_hex(sha256)
    if models is not None and len(models) != 1:
        raise ModelError("--sha256 checks one --model; for an ensemble put each URL's digest into it "
                         "(URL#sha256=<64 hex digits>)")
    model = None if models is None else models[0]
    if model is not None and is_url(os.fspath(model)):
        url, digest = split_url(os.fspath(model), digest)
        return [f"{url}#sha256={digest}"]
    bundled = model is None or (isinstance(model, str) and bundled_model(model) is not None)
    path = resolve_source(model) if bundled else Path(os.fspath(model)).expanduser()
    if not path.is_file():
        resolve_source(model)  # the usual one-line error for a missing file
    actual = sha256_of(path)
    if actual != digest:
        raise ModelError(f"model {path}: sha256 is {actual}, not the expected {digest} (--sha256)")
    return models


def package_description(path: Path) -> str | None:
    """Name of the resource description if `path` is a bioimage.io package (zip), else None."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    return next((name for name in PACKAGE_DESCRIPTIONS if name in names), None)


def checkpoint_from_package(path: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """The mediar3d checkpoint inside a bioimage.io package, extracted into the cache once.

    Raises:
        ModelError: The package holds no mediar3d checkpoint (not exported by mediar3d).
    """
    with zipfile.ZipFile(path) as archive:
        if PACKAGE_CHECKPOINT not in archive.namelist():
            raise ModelError(f"{path}: a bioimage.io package without a mediar3d checkpoint ({PACKAGE_CHECKPOINT}); "
                             "mediar3d runs packages written by `mediar3d export-bioimageio`")
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        target = folder / "packages" / sha256_of(path)[:16] / PACKAGE_CHECKPOINT
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=target.name + ".", suffix=".partial", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as out, archive.open(PACKAGE_CHECKPOINT) as member:
                for block in iter(lambda: member.read(1 << 20), b""):
                    out.write(block)
            os.replace(temp, target)
        except (OSError, zipfile.BadZipFile) as error:
            raise ModelError(f"{path}: cannot extract {PACKAGE_CHECKPOINT} ({error})") from error
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    return target


def resolve_source(model: str | os.PathLike | None, *, sha256: str | None = None,
                   cache_dir: str | os.PathLike | None = None) -> Path:
    """Local path of the mediar3d checkpoint that `model` names (see the module docstring).

    Args:
        model: None / a bundled name, a checkpoint or package path, or an https URL.
        sha256: Digest of the file a URL points to, if not in the URL (``#sha256=...``).
        cache_dir: Download and extraction cache; defaults to `default_cache_dir()`.

    Raises:
        ModelError: Unknown name or missing file, bad URL or digest, failed download,
            or a package without a mediar3d checkpoint.
    """
    if model is None or (isinstance(model, str) and bundled_model(model) is not None):
        return bundled_checkpoint(model)
    text = os.fspath(model)
    if is_url(text):
        url, digest = split_url(text, sha256)
        path = resolve_weights(url, sha256=digest, cache_dir=cache_dir)
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ModelError(f"model {text!r}: {path} does not exist, and it is not a bundled model "
                             f"({', '.join(all_bundled_names())}) nor an https URL")
    if package_description(path) is not None:
        return checkpoint_from_package(path, cache_dir)
    return path
