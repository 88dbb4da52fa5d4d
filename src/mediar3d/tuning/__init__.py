"""Tuning and few-shot tools: threshold search, learning curves, ensembles and TTA.

- :mod:`~mediar3d.tuning.outputs`: network outputs of validation images, computed once.
- :mod:`~mediar3d.tuning.search`: grid / coordinate search of ``cellprob_threshold``,
  ``flow_threshold`` and ``min_size`` maximising AP, F1, SEG or Dice.
- :mod:`~mediar3d.tuning.report`: table, plots and the checkpoint with tuned thresholds.
- :mod:`~mediar3d.tuning.learning_curve`: checkpoints by annotated objects seen, and their scores.
- :mod:`~mediar3d.tuning.ensemble`: :class:`EnsembleModel`, :class:`FlipTTA`, :func:`load_ensemble`
  (defined in :mod:`mediar3d.inference.ensemble`).

Typical use::

    from mediar3d.tuning import predict_outputs, tune_thresholds, write_tuned_checkpoint
    outputs = [predict_outputs(image, gt, "model.pt") for image, gt in validation]
    result = tune_thresholds(outputs, metric="ap")
    write_tuned_checkpoint("model.pt", "model_tuned.pt", result)
"""

from mediar3d.tuning.ensemble import EnsembleModel, FlipTTA, load_ensemble
from mediar3d.tuning.learning_curve import (
    ObjectCountCheckpointer,
    evaluate_checkpoints,
    plot_learning_curve,
)
from mediar3d.tuning.outputs import (
    NetworkOutputs,
    load_outputs,
    predict_outputs,
    save_outputs,
)
from mediar3d.tuning.report import write_tuned_checkpoint, write_tuning_report
from mediar3d.tuning.search import (
    DEFAULT_GRID,
    METRICS,
    PARAMETERS,
    TuneResult,
    score_setting,
    tune_thresholds,
)

__all__ = [
    "DEFAULT_GRID", "METRICS", "PARAMETERS", "EnsembleModel", "FlipTTA", "NetworkOutputs", "ObjectCountCheckpointer",
    "TuneResult", "evaluate_checkpoints", "load_ensemble", "load_outputs", "plot_learning_curve", "predict_outputs",
    "save_outputs", "score_setting", "tune_thresholds", "write_tuned_checkpoint", "write_tuning_report",
]
