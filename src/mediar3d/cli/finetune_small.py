"""`mediar3d finetune` in small-data mode: settings from the data, a time budget, tuned thresholds.

See :mod:`mediar3d.training.fewshot`; flags the user gives (``--crop-size``, ``--lr``,
``--epochs`` ...) win over the plan.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from mediar3d.errors import ConfigError

log = logging.getLogger(__name__)


def wanted(args: argparse.Namespace, overrides: dict[str, Any]) -> bool:
    """Whether this `finetune` runs in small-data mode (the flag, else the size of the data)."""
    if args.small_data is not None:
        return bool(args.small_data)
    from mediar3d.data.mapping import load_mapping
    from mediar3d.training.fewshot_plan import is_small

    data = overrides.get("data")
    if not data and args.config:
        from mediar3d.training.config import read_config_file

        data = read_config_file(args.config).get("data")
        if data:
            from pathlib import Path

            data = str(Path(args.config).parent / data) if not Path(data).is_absolute() else data
    if not data:
        raise ConfigError("no training data: give --image IMG --labels LAB, or --data MAP.json")
    return is_small(load_mapping(data))


def given_keys(args: argparse.Namespace, overrides: dict[str, Any]) -> set[str]:
    """Config keys the user chose (flags, --set, config file): the plan leaves them alone."""
    given = set(overrides)
    if args.config:
        from mediar3d.training.config import read_config_file

        given |= set(read_config_file(args.config))
    return given


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Plan, fine-tune within ``--minutes``, re-tune thresholds; prints a one-line summary; returns 0."""
    from mediar3d.data.mapping import load_mapping
    from mediar3d.training import load_config
    from mediar3d.training.fewshot import finetune_small
    from mediar3d.training.fewshot_plan import apply_plan, plan_for

    config = load_config(args.config, overrides)
    if args.replay is not None and not 0 <= args.replay < 1:
        raise ConfigError(f"--replay must be at least 0 and below 1, got {args.replay}")
    plan = plan_for(config, load_mapping(config.data), replay=args.replay)
    config = apply_plan(config, plan, given_keys(args, overrides))
    print(f"small-data mode: {plan.objects} annotated objects in {plan.samples} training planes; crop "
          f"{config.crop_size}, batch {config.batch_size}, lr {config.lr:.2g}, up to "
          f"{config.epochs * max(1, (config.samples_per_epoch or 0) // config.batch_size) or plan.steps} steps"
          + (f", {plan.replay:.0%} of the draws from replay data" if plan.replay else "")
          + (f", {config.keep_start:.0%} of the start model's weights kept" if config.keep_start else "")
          + (f", budget {args.minutes:g} min" if args.minutes else ""), flush=True)
    result = finetune_small(config, minutes=args.minutes, resume=args.resume, overwrite=args.overwrite, plan=plan)
    print(result.summary())
    return 0
