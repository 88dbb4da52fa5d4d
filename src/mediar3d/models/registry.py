"""Name -> factory registry of segmentation networks (timm / smp style).

A factory is registered with `@register_model("name")`; `create_model(name, **kwargs)`
builds it and records the name and keyword arguments on the module so that
`save_checkpoint` can write a self-describing file.

Built-in networks are *declared* (`declare_model`: name, module, dimensionality, extra)
and their modules imported only when one of them is first built or described, so that
loading the default network imports torch only, not timm / segmentation_models_pytorch /
torchvision, which the larger networks need (the ``models`` extra).
"""

from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable

import torch

from mediar3d.errors import ModelError
from mediar3d.optional import missing_extra

Factory = Callable[..., torch.nn.Module]

#: Attribute names set on every module built by `create_model`.
ARCH_ATTR = "mediar3d_arch"
KWARGS_ATTR = "mediar3d_kwargs"

#: Keyword arguments that only matter when a network is first built (initial weights);
#: they are not stored in checkpoints, whose own weights replace them.
INIT_ONLY_KWARGS = ("encoder_weights",)


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture.

    Attributes:
        name: Registry name, e.g. ``"mediar"``.
        factory: Callable building the network from keyword arguments.
        description: One line for listings (`mediar3d info`, docs).
        thesis_params_m: Parameter count (millions) the thesis reports for the default
            configuration, or None when the thesis has no such model.
        spatial_dims: 2 for slice networks (B, C, H, W) -> (B, 3, H, W); 3 for volumetric
            ones (B, C, Z, Y, X) -> (B, 4, Z, Y, X).
    """

    name: str
    factory: Factory
    description: str
    thesis_params_m: float | None = None
    spatial_dims: int = 2


@dataclass(frozen=True)
class _Declaration:
    module: str
    spatial_dims: int
    extra: str | None


_REGISTRY: dict[str, ModelEntry] = {}
_DECLARED: dict[str, _Declaration] = {}


def declare_model(name: str, module: str, *, spatial_dims: int = 2, extra: str | None = None) -> None:
    """Announce a network registered by `module`, imported only when the network is first needed.

    Args:
        name: Registry name; `module` must register it with `@register_model(name)`.
        module: Dotted module name, e.g. ``"mediar3d.models.mediar"``.
        spatial_dims: 2 or 3 (listed by `list_models(spatial_dims=...)` without importing).
        extra: The pip extra of mediar3d that installs the module's optional dependencies,
            named in the error when one is missing; None when torch is enough.
    """
    _DECLARED[name] = _Declaration(module, spatial_dims, extra)


def register_model(name: str, *, description: str = "", thesis_params_m: float | None = None,
                   spatial_dims: int | None = None) -> Callable[[Factory], Factory]:
    """Decorator registering a network factory under `name`.

    Args:
        name: Registry name; must be unused.
        description: One-line description shown by `list_models(verbose=True)`.
        thesis_params_m: Parameter count in millions reported by the thesis, if any.
        spatial_dims: 2 or 3; by default the `spatial_dims` attribute of the class the
            factory's return annotation names, else 2.

    Returns:
        The decorator, which returns the factory unchanged.
    """

    def decorator(factory: Factory) -> Factory:
        previous = _REGISTRY.get(name)
        reloaded = previous is not None and (previous.factory.__module__, previous.factory.__qualname__) == (
            factory.__module__, factory.__qualname__)  # the same module imported again (importlib.reload)
        if previous is not None and not reloaded:
            raise ModelError(f"model name {name!r} is registered twice ({previous.factory.__module__} "
                             f"and {factory.__module__}); pick another name")
        declared = _DECLARED.get(name)
        if declared is not None and declared.module != factory.__module__:
            raise ModelError(f"model name {name!r} is registered twice ({declared.module} "
                             f"and {factory.__module__}); pick another name")
        doc = description or (inspect.getdoc(factory) or name).splitlines()[0]
        dims = spatial_dims if spatial_dims is not None else _annotated_spatial_dims(factory)
        if dims not in (2, 3) or (declared is not None and dims != declared.spatial_dims):
            raise ModelError(f"model {name!r}: spatial_dims={dims!r} must be 2 or 3 and match its declaration")
        _REGISTRY[name] = ModelEntry(name, factory, doc, thesis_params_m, dims)
        return factory

    return decorator


def _annotated_spatial_dims(factory: Factory) -> int:
    """`spatial_dims` of the class named by the factory's return annotation (2 if none)."""
    try:
        returned = typing.get_type_hints(factory).get("return")
    except (NameError, TypeError):
        return 2
    return int(getattr(returned, "spatial_dims", 2))


def list_models(verbose: bool = False, spatial_dims: int | None = None) -> list[str] | list[ModelEntry]:
    """Names of the registered networks, sorted.

    Args:
        verbose: Return the full `ModelEntry` records instead of the names.
        spatial_dims: Only networks for 2D slices (2) or volumes (3); None lists all.

    Returns:
        Sorted names (or entries).
    """
    dims = {n: d.spatial_dims for n, d in _DECLARED.items()} | {n: e.spatial_dims for n, e in _REGISTRY.items()}
    names = sorted(n for n, d in dims.items() if spatial_dims is None or d == spatial_dims)
    if verbose:
        return [get_model_entry(n) for n in names]
    return names


def get_model_entry(name: str) -> ModelEntry:
    """The registry entry for `name`, importing a declared network's module on first use.

    Raises:
        ModelError: Unknown name (listing the valid ones), or an optional package the
            network needs is missing (naming the pip extra that installs it).
    """
    entry = _REGISTRY.get(name)
    if entry is not None:
        return entry
    declared = _DECLARED.get(name)
    if declared is None:
        raise ModelError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    try:
        importlib.import_module(declared.module)
    except ModuleNotFoundError as error:
        if declared.extra is None:
            raise
        raise missing_extra(error, declared.extra, f"model {name!r}", ModelError) from None
    if name not in _REGISTRY:
        raise ModelError(f"model {name!r}: module {declared.module} does not register it")
    return _REGISTRY[name]


def create_model(name: str, **kwargs: Any) -> torch.nn.Module:
    """Build a registered network.

    Every 2D network maps a batch of 2D images (B, C_in, H, W) to (B, 3, H, W): channels
    0-1 are the flows (dy, dx) on the x5 training scale, channel 2 the cell-probability
    logit. H and W may be any size; the network pads to its stride and crops back.
    Volumetric networks (`spatial_dims` 3) map (B, C_in, Z, Y, X) to (B, 4, Z, Y, X).

    Args:
        name: Registry name (see `list_models()`).
        **kwargs: Architecture options passed to the factory (e.g. ``in_channels``,
            ``encoder``, ``encoder_weights`` = local path or URL of pretrained weights).

    Returns:
        The network, in training mode, on the CPU.

    Raises:
        ModelError: Unknown name, or keyword arguments the factory does not accept.
    """
    entry = get_model_entry(name)
    signature = inspect.signature(entry.factory)
    unknown = [k for k in kwargs if k not in signature.parameters]
    if unknown:
        valid = ", ".join(p for p in signature.parameters)
        raise ModelError(f"model {name!r} has no option(s) {', '.join(map(repr, unknown))}; valid options: {valid}")
    model = entry.factory(**kwargs)
    bound = signature.bind(**kwargs)
    bound.apply_defaults()
    resolved = {k: v for k, v in bound.arguments.items() if k not in INIT_ONLY_KWARGS}
    setattr(model, ARCH_ATTR, name)
    setattr(model, KWARGS_ATTR, _plain(resolved))
    return model


def _plain(value: Any) -> Any:
    """Tuples -> lists recursively, so kwargs survive a JSON or weights-only round trip."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
