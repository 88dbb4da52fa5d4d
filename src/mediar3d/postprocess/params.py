"""Parameters of the flows -> masks post-processing, with defaults and help for a CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mediar3d.errors import ConfigError

__all__ = ["PostprocessParams"]


@dataclass(frozen=True)
class PostprocessParams:
    """Settings of :func:`mediar3d.postprocess.compute_masks` (Cellpose defaults).

    ``PostprocessParams().to_dict()`` gives the keyword arguments of ``compute_masks``;
    each field's ``metadata["help"]`` is a one-line description for a command-line flag.
    """

    niter: int = field(default=200, metadata={"help": "Euler steps of flow following"})
    cellprob_threshold: float = field(
        default=0.0, metadata={"help": "cell-probability logit above which a voxel is foreground "
                                       "(0 = probability 0.5; lower it to grow masks)"})
    flow_threshold: float = field(
        default=0.4, metadata={"help": "drop masks whose flow-consistency error exceeds this "
                                       "(0 turns the check off)"})
    min_size: int = field(default=15, metadata={"help": "drop masks with fewer voxels (0 keeps all)"})
    max_size_fraction: float = field(
        default=0.4, metadata={"help": "drop masks larger than this fraction of the volume"})
    min_size_fraction: float = field(
        default=0.0, metadata={"help": "drop masks smaller than this fraction of the typical mask "
                                       "(voxel-weighted median size; removes fragments; 0 keeps all)"})
    max_flow_norm: float = field(
        default=1.0, metadata={"help": "cap the flow length at this many voxels per step "
                                       "(summed orthogonal-slice flows reach ~2.8; 0 = no cap)"})
    seed_min_count: int = field(
        default=10, metadata={"help": "a seed needs more end points than this"})
    basin_threshold: int = field(
        default=2, metadata={"help": "basins grow through bins with more end points than this"})
    peak_kernel: int = field(default=5, metadata={"help": "max-pool window for seed detection"})
    basin_box: int = field(default=11, metadata={"help": "side of the box a basin may grow in"})

    def __post_init__(self) -> None:
        checks = {
            "niter": self.niter >= 0,
            "flow_threshold": self.flow_threshold >= 0,
            "max_size_fraction": 0 < self.max_size_fraction <= 1,
            "min_size_fraction": 0 <= self.min_size_fraction < 1,
            "max_flow_norm": self.max_flow_norm >= 0,
            "seed_min_count": self.seed_min_count >= 0,
            "basin_threshold": self.basin_threshold >= 0,
            "peak_kernel": self.peak_kernel >= 1 and self.peak_kernel % 2 == 1,
            "basin_box": self.basin_box >= 1 and self.basin_box % 2 == 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"postprocess parameter {name}={getattr(self, name)!r} is out of range "
                                  f"({self.help(name)})")

    @staticmethod
    def help(name: str) -> str:
        """One-line description of the parameter ``name``."""
        for f in fields(PostprocessParams):
            if f.name == name:
                return str(f.metadata.get("help", ""))
        raise ConfigError(f"unknown postprocess parameter {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Keyword arguments for ``compute_masks``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PostprocessParams:
        """Build from a mapping; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown postprocess parameter(s) {', '.join(unknown)}; "
                              f"valid: {', '.join(sorted(names))}")
        return cls(**values)
