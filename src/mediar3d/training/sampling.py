"""Which samples an epoch draws: per-dataset probabilities, per-pair weights, ranks.

:func:`sample_probabilities` turns a mapping's dataset ``probability`` values and per-pair
``weight`` values (modality balancing) into one probability per sample.
:class:`EpochSampler` draws an epoch from them with a generator seeded by
``(seed, epoch)`` alone, like ``torch.utils.data.WeightedRandomSampler`` (weighted, with
replacement) or a shuffled ``DistributedSampler`` (uniform, every sample once), and hands
each rank of a distributed run its own share. Each draw carries its own augmentation seed.
Resuming at epoch ``e`` therefore replays exactly what an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from mediar3d.errors import ConfigError
from mediar3d.training.dataset import SampleIndex


def sample_probabilities(index: SampleIndex, probability_mode: str = "dataset", *,
                         use_pair_weights: bool = True) -> np.ndarray:
    """Probability of drawing each sample of ``index`` (sums to 1).

    Within a dataset, a sample's share is proportional to its pair's ``weight``. Across
    datasets: with ``"dataset"`` mode each dataset's total is its ``probability``
    (normalised over the datasets present); with ``"sample"`` mode (thesis table 4.1)
    ``probability`` multiplies every sample's weight, so big datasets get more. Without
    probabilities every sample of weight 1 is equally likely.

    Args:
        index: The training samples.
        probability_mode: ``"dataset"`` or ``"sample"``.
        use_pair_weights: Use the pairs' ``weight`` values (else all 1).

    Returns:
        float64 array (n_samples,).

    Raises:
        ConfigError: If every sample ends up with weight 0.
    """
    n = len(index.samples)
    if n == 0:
        raise ConfigError("no training samples: the train split is empty or every slice is unlabelled")
    weights = np.empty(n, dtype=np.float64)
    datasets = np.empty(n, dtype=np.int64)
    names: dict[str, int] = {}
    for i, ref in enumerate(index.samples):
        item = index.items[ref.item]
        weights[i] = item.pair.weight if use_pair_weights else 1.0
        datasets[i] = names.setdefault(item.dataset.name, len(names))
    probs = {item.dataset.name: item.dataset.probability for item in index.items}
    if all(p is not None for p in probs.values()):
        factors = np.array([float(probs[name]) for name in names], dtype=np.float64)
        if probability_mode == "dataset":
            totals = np.bincount(datasets, weights=weights, minlength=len(names))
            factors = np.divide(factors, totals, out=np.zeros_like(factors), where=totals > 0)
        elif probability_mode != "sample":
            raise ConfigError(f"probability_mode {probability_mode!r} is unknown; use 'dataset' or 'sample'")
        weights = weights * factors[datasets]
    total = weights.sum()
    if not total > 0:
        raise ConfigError("every training sample has sampling weight 0; check the dataset probabilities and weights")
    return weights / total


class EpochSampler(Sampler):
    """Deterministic, resumable, distributed-aware sampler yielding ``(sample, aug_seed)`` keys.

    Args:
        probabilities: Per-sample probabilities (n,), or None for uniform.
        num_samples: Draws per epoch over all ranks (default n). Rounded up to a multiple
            of ``world_size`` so every rank takes the same number of steps.
        seed: Base seed.
        rank, world_size: This process's place in a distributed run.
    """

    def __init__(self, probabilities: np.ndarray | None, num_samples: int | None = None, *, n: int | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if probabilities is None and n is None:
            raise ValueError("give probabilities or n")
        self.n = int(n if probabilities is None else len(probabilities))
        self.probabilities = None if probabilities is None else np.asarray(probabilities, dtype=np.float64)
        self.uniform = self.probabilities is None or np.allclose(self.probabilities, 1.0 / self.n)
        total = int(num_samples) if num_samples else self.n
        self.total = -(-total // world_size) * world_size
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw the next iteration returns."""
        self.epoch = int(epoch)

    def draws(self) -> tuple[np.ndarray, np.ndarray]:
        """All ranks' draws of the current epoch: sample numbers and augmentation seeds."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.uniform:
            reps = -(-self.total // self.n)
            order = np.concatenate([rng.permutation(self.n) for _ in range(reps)])[: self.total]
        else:
            order = rng.choice(self.n, size=self.total, replace=True, p=self.probabilities)
        seeds = rng.integers(0, 2**31 - 1, size=self.total)
        return order, seeds

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order, seeds = self.draws()
        for i, s in zip(order[self.rank::self.world_size], seeds[self.rank::self.world_size]):
            yield int(i), int(s)

    def __len__(self) -> int:
        return self.total // self.world_size
