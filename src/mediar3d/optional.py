"""Optional dependencies: a one-line error naming the pip extra when one is missing.

The base install needs torch and the scientific stack only. The larger networks and the
3D network's sliding-window inference need the ``models`` extra, training needs ``train``,
block-wise Dask runs need ``dask``, plots with axes (tuning, learning curves) need ``plots``::

    try:
        from monai.transforms import Compose
    except ModuleNotFoundError as error:
        raise missing_extra(error, "train", "training augmentations") from None

or, for one module, ``Figure = require("matplotlib.figure", "plots", "tuning.png").Figure``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mediar3d.errors import ConfigError, Mediar3DError

#: Extras of the mediar3d distribution and what each adds (kept in step with pyproject.toml).
EXTRAS = {
    "models": "timm, segmentation-models-pytorch, torchvision, MONAI",
    "train": "MONAI, TensorBoard",
    "dask": "dask, distributed",
    "napari": "napari, magicgui",
    "bioimageio": "bioimageio.spec",
    "hdf5": "h5py",
    "plots": "matplotlib",
}


def missing_extra(error: ModuleNotFoundError, extra: str, purpose: str,
                  kind: type[Mediar3DError] = ConfigError) -> Mediar3DError:
    """The error to raise when `error` (a failed import) means the extra `extra` is not installed.

    Args:
        error: The ModuleNotFoundError of the import that failed.
        extra: Name of the mediar3d extra that installs the package (a key of `EXTRAS`).
        purpose: What needed it, e.g. ``"training augmentations"``.
        kind: Error class to return.

    Returns:
        An error of type `kind` whose message names the package and the install command.
        A failed import of a mediar3d module is a bug, not a missing extra: `error` is
        returned unchanged then, so the caller's ``raise`` re-raises it.
    """
    if error.name is None or error.name.split(".")[0] == "mediar3d":
        return error  # type: ignore[return-value]
    return kind(f"{purpose} needs the package {error.name.split('.')[0]!r}, which is not installed; "
                f"install it with: pip install 'mediar3d[{extra}]'")


def require(module: str, extra: str, purpose: str, kind: type[Mediar3DError] = ConfigError) -> ModuleType:
    """Import `module` (e.g. ``"matplotlib.figure"``), or raise `missing_extra`'s one-line error.

    Args:
        module: Dotted name of the module to import.
        extra: Name of the mediar3d extra that installs it (a key of `EXTRAS`).
        purpose: What needs it, e.g. ``"the tuning plot (tuning.png)"``.
        kind: Error class raised when it is missing.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise missing_extra(error, extra, purpose, kind) from None
