"""Optional dependencies: a one-line error naming the pip extra when one is missing.

The base install needs torch and the scientific stack only. The larger networks and the
3D network's sliding-window inference need the ``models`` extra, training needs ``train``,
block-wise Dask runs need ``dask``::

    try:
        from monai.transforms import Compose
    except ModuleNotFoundError as error:
        raise missing_extra(error, "train", "training augmentations") from None
"""

from __future__ import annotations

from mediar3d.errors import ConfigError, Mediar3DError

#: Extras of the mediar3d distribution and what each adds (kept in step with pyproject.toml).
EXTRAS = {
    "models": "timm, segmentation-models-pytorch, torchvision, MONAI",
    "train": "MONAI, TensorBoard",
    "dask": "dask, distributed",
    "napari": "napari, magicgui",
    "bioimageio": "bioimageio.spec",
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
