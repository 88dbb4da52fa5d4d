"""Training and fine-tuning of the 2D flow networks (thesis 3.4 and chapter 4).

- :mod:`~mediar3d.training.config`: :class:`TrainConfig` (defaults <- JSON <- flags).
- :mod:`~mediar3d.training.dataset`: samples from a dataset mapping (2D images, slices of volumes).
- :mod:`~mediar3d.training.transforms`: table 4.4 augmentations (MONAI) and run-time targets.
- :mod:`~mediar3d.training.supervision` / :mod:`~mediar3d.training.losses`: partial-annotation
  masks and the masked eq. 3.6 loss.
- :mod:`~mediar3d.training.sampling`: per-dataset probabilities, balancing weights, DDP shards.
- :mod:`~mediar3d.training.trainer`: the loop, checkpoints, exact resume, validation, logs.
- :mod:`~mediar3d.training.loader`: the training DataLoader (one numba/torch thread per worker).
- :mod:`~mediar3d.training.balancing`: k-means modality balancing (``mediar3d cluster``).
- :mod:`~mediar3d.training.flow3d`: optional 3D flow loss (Algorithm 2).
"""

from mediar3d.training.config import TrainConfig, config_from_dict, load_config, save_config
from mediar3d.training.losses import flow_loss_terms
from mediar3d.training.trainer import Trainer, TrainResult, train
from mediar3d.training.transforms import AugmentConfig, build_train_transforms

__all__ = [
    "AugmentConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_train_transforms",
    "config_from_dict",
    "flow_loss_terms",
    "load_config",
    "save_config",
    "train",
]
