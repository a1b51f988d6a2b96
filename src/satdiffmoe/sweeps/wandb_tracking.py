"""W&B for sweeps: one run per trial, grouped by study, plus one summary run per sweep invocation.

Offline by default (no account needed): runs land in `<sweep folder>/wandb/` and `wandb sync` uploads
them later; `WANDB_MODE=online` (or `wandb.mode: online` in the sweep file) syncs live.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial

from ..training.loggers import wandb_mode

log = logging.getLogger(__name__)


def init_timeout_s() -> float:
    """Seconds wandb.init may wait for the server; `WANDB_INIT_TIMEOUT` overrides."""
    return float(os.environ.get("WANDB_INIT_TIMEOUT") or 10)


def trial_summary(trial: FrozenTrial, metric_names: list[str]) -> dict[str, object]:
    """Flat W&B summary of a finished trial: state, objective values and every eval metric's mean."""
    summary: dict[str, object] = {"trial": trial.number, "state": trial.state.name}
    for name, value in zip(metric_names, trial.values or [], strict=False):
        summary[f"objective/{name}"] = value
    evaluation = trial.user_attrs.get("eval") or {}
    for name, metric in (evaluation.get("metrics") or {}).items():
        if "mean" in metric:
            summary[f"eval/{name}"] = metric["mean"]
            summary[f"eval/{name}_std"] = metric.get("std")
    for key in ("wall_time_s", "seconds_per_image", "num_scenes"):
        if key in evaluation:
            summary[f"eval/{key}"] = evaluation[key]
    for key in ("pruned_reason", "fail_reason"):
        reason = trial.user_attrs.get(key) or trial.system_attrs.get(key)
        if reason:
            summary[key] = str(reason)
    return summary


class TrialRunLogger:
    """Optuna callback: after each trial, one W&B run named trial-N in the study's group."""

    def __init__(self, spec: DictConfig, sweep_dir: Path):
        self.spec = spec
        self.sweep_dir = Path(sweep_dir)
        self.mode: str | None = None  # "offline" once an online init failed

    def _init(self, study: optuna.Study, name: str, job_type: str, config: dict):
        import wandb

        mode = self.mode or wandb_mode(self.spec.wandb.mode)
        kwargs = dict(project=self.spec.wandb.project, entity=self.spec.wandb.entity, group=study.study_name,
                      name=name, job_type=job_type, config=config, tags=list(self.spec.wandb.tags),
                      dir=str(self.sweep_dir), reinit="finish_previous")
        if mode != "online":
            return wandb.init(mode=mode, **kwargs)
        # wandb.init waits 90 s by default for an unreachable server, then raises CommError (UsageError
        # at once when not logged in): wait briefly, then keep this sweep's runs offline
        try:
            return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=init_timeout_s()), **kwargs)
        except wandb.errors.Error as exc:
            wandb.teardown()
            log.warning("W&B online failed (%s); logging this sweep offline to %s instead (upload later with "
                        "`wandb sync`)", str(exc).splitlines()[0], self.sweep_dir / "wandb")
            self.mode = "offline"
            return wandb.init(mode="offline", **kwargs)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if wandb_mode(self.spec.wandb.mode) == "disabled":
            return
        run = self._init(study, f"trial-{trial.number}", "trial", dict(trial.params))
        run.summary.update(trial_summary(trial, study.metric_names or []))
        run.finish()

    def log_study(self, study: optuna.Study, plots: list[Path]) -> None:
        """The summary run: every trial as a wandb.Table, and the importance / Pareto plots."""
        if wandb_mode(self.spec.wandb.mode) == "disabled":
            return
        import wandb

        run = self._init(study, "summary", "summary", {"study": study.study_name, "kind": self.spec.kind})
        frame = study.trials_dataframe()
        run.log({"trials": wandb.Table(dataframe=frame.astype(str))})
        run.log({f"plots/{path.stem}": wandb.Image(str(path)) for path in plots})
        run.finish()
        log.info("W&B runs (mode %s) in %s", self.mode or wandb_mode(self.spec.wandb.mode), self.sweep_dir / "wandb")
