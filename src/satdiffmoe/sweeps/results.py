"""What a sweep leaves in its folder after every run: trials.csv, best.json and Optuna's plots.

    trials.csv          study.trials_dataframe() (every trial, any state)
    best.json           the best trial, or the Pareto front for several objectives
    plots/*.png         parameter importances per objective, Pareto front (or optimisation history)

Plots that Optuna cannot draw yet (one finished trial, no parameter that varied) are skipped with a
logged reason rather than failing the sweep.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)


def trial_record(trial: FrozenTrial) -> dict:
    return {"number": trial.number, "values": trial.values, "params": trial.params,
            "eval": trial.user_attrs.get("eval")}


def best_trials(study: optuna.Study) -> dict[str, object]:
    """{"objectives": [...], "best": [trial records]}: one record, or the Pareto front."""
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    result: dict[str, object] = {"study": study.study_name,
                                 "objectives": [{"metric": n, "direction": d.name.lower()}
                                                for n, d in zip(names, study.directions, strict=True)]}
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        result["best"] = []
    elif len(study.directions) == 1:
        result["best"] = [trial_record(study.best_trial)]
    else:
        result["pareto_front"] = True
        result["best"] = [trial_record(t) for t in sorted(study.best_trials, key=lambda t: t.number)]
    return result


def write_results(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """Write trials.csv, best.json and the plots; returns the PNG paths written."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study.trials_dataframe().to_csv(sweep_dir / "trials.csv", index=False)
    (sweep_dir / "best.json").write_text(json.dumps(best_trials(study), indent=2, default=str))
    return write_plots(study, sweep_dir / "plots")


def write_plots(study: optuna.Study, plot_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # no display on sweep machines
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plot_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    jobs = []
    varied = [k for k in (complete[0].params if complete else {})
              if len({json.dumps(t.params.get(k), default=str) for t in complete}) > 1]
    if len(complete) < 2:
        log.info("skipping importance plot: %d finished trial(s), need at least 2", len(complete))
    elif not varied:
        log.info("skipping importance plot: no parameter varied across the finished trials")
    else:
        for index, name in enumerate(names):
            jobs.append((f"importance_{name}", lambda i=index, n=name: ovm.plot_param_importances(
                study, target=lambda t: t.values[i], target_name=n)))
    if len(study.directions) in (2, 3):
        jobs.append(("pareto_front", lambda: ovm.plot_pareto_front(study, target_names=names)))
    elif len(study.directions) == 1 and complete:
        jobs.append(("optimization_history", lambda: ovm.plot_optimization_history(study, target_name=names[0])))
    written = []
    for stem, plot in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on every matplotlib plot
                axes = plot()
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            path = plot_dir / f"{stem.replace('/', '_')}.png"
            figure.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(figure)
            written.append(path)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            log.info("skipping %s plot: %s", stem, exc)
    return written
