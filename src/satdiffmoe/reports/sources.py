"""Read what reports are made of — training logs, eval JSONs, Optuna studies — into plain structures.

The formats are pinned by docs/ARCHITECTURE.md ("Training log", "Evaluation output", "Sweep trials");
nothing here imports the code that writes them, so a report can be rebuilt from files alone, on any
machine, long after the runs finished.

    runs = read_training_runs(["runs/synth_satdiffmoe", "runs/synth_controlnet/20261125-1200"])
    evals = read_eval_summaries(["runs/x/1/eval", "bicubic.json"])
    sources = read_ablation_sources("runs/sweeps/fusion")      # sweep folder, URL, name@URL, journal:path
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from ..errors import UserError
from ..evaluation.catalog import METRICS
from ..evaluation.dataset import dataset_label, same_dataset
from ..sweeps.storage import redact

log = logging.getLogger(__name__)

# Keys of a training-log line that are bookkeeping, not metrics.
LOG_KEYS = ("step", "wall_time", "epoch")
# Params that index repetitions of the same configuration rather than a factor of the ablation.
REPLICATE_KEYS = ("seed", "eval.seeds", "eval.seed", "trial_seed")


# ----------------------------------------------------------------------------------- training logs
@dataclass
class TrainingRun:
    """One training run: its method (config `stage`), its name and the parsed metrics.jsonl lines."""

    path: Path
    method: str
    name: str
    run_id: str
    records: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return f"{self.name}/{self.run_id}"

    def metrics(self) -> list[str]:
        keys = {k for r in self.records for k, v in r.items()
                if k not in LOG_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return sorted(keys)

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps, wall-clock seconds, values) of the lines that logged `metric`, ordered by step."""
        # A run resumed after a kill trains the steps after its last checkpoint again: the later line wins.
        by_step = {r["step"]: (r["step"], _number_or_nan(r.get("wall_time")), r[metric]) for r in self.records
                   if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])}
        rows = sorted(by_step.values(), key=lambda row: row[0])
        if not rows:
            return np.zeros(0), np.zeros(0), np.zeros(0)
        steps, times, values = map(np.asarray, zip(*rows))
        return steps.astype(float), times.astype(float), values.astype(float)


def _number_or_nan(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def find_run_folders(path: Path) -> list[Path]:
    """A run folder itself, or every run folder (holding metrics.jsonl) below an experiment folder."""
    if not path.exists():
        raise UserError(f"run folder not found: {path}; pass runs/<experiment>/<run-id> (or runs/<experiment>)")
    if path.is_file():
        return [path.parent] if path.name == "metrics.jsonl" else []
    if (path / "metrics.jsonl").is_file():
        return [path]
    return sorted(p.parent for p in path.rglob("metrics.jsonl"))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a run killed mid-write leaves one partial last line
                log.warning("%s: ignoring the truncated last line %d", path, number)
                continue
            raise UserError(f"{path}:{number} is not valid JSON; fix or delete that line") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
            raise UserError(f"{path}:{number} has no numeric 'step'; metrics.jsonl lines are JSON objects with step, wall_time, metrics")
        records.append(record)
    return records


def read_training_run(folder: Path) -> TrainingRun:
    config_path = folder / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"no config.yaml in {folder}; the run's method is read from its `stage` (pass a run folder made by `satdiffmoe train`)")
    cfg = OmegaConf.load(config_path)
    records = _read_jsonl(folder / "metrics.jsonl")
    if not records:
        raise UserError(f"{folder / 'metrics.jsonl'} is empty; the run logged nothing yet")
    return TrainingRun(path=folder, method=str(cfg.get("stage", "unknown")), name=str(cfg.get("name", folder.parent.name)),
                       run_id=str(cfg.get("run_id") or folder.name), records=records)


def read_training_runs(paths: Sequence[str]) -> list[TrainingRun]:
    runs = []
    for spec in paths:
        folders = find_run_folders(Path(spec))
        if not folders:
            raise UserError(f"no metrics.jsonl under {spec}; pass training run folders (runs/<experiment>/<run-id>)")
        runs.extend(read_training_run(f) for f in folders)
    return runs


# -------------------------------------------------------------------------------------- eval JSONs
@dataclass
class EvalSummary:
    """One `eval/<name>.json` written by `satdiffmoe evaluate` (the dict is kept as written)."""

    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data.get("name") or self.path.stem)

    @property
    def method(self) -> str:
        return str(self.data.get("method") or self.data.get("stage") or "unknown")

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.data["metrics"]

    def per_scene(self) -> list[dict[str, Any]] | None:
        """The rows of the eval/<name>.jsonl beside the JSON (one per scene and seed); None when absent."""
        if not hasattr(self, "_rows"):
            path = self.path.with_suffix(".jsonl")
            self._rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
                if path.is_file() else None
        return self._rows


def _is_eval_summary(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("metrics"), dict)


def _load_json(path: Path, strict: bool = True) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        if not strict:  # a folder may hold unrelated or half-written JSON files: say so, go on
            log.warning("skipping %s: not valid JSON (line %d)", path, exc.lineno)
            return None
        raise UserError(f"{path} is not valid JSON (line {exc.lineno}); re-run `satdiffmoe evaluate` to rewrite it") from None


def read_eval_summaries(paths: Sequence[str]) -> list[EvalSummary]:
    """Eval JSON files, or folders searched recursively for them (other JSON files are skipped)."""
    found: list[EvalSummary] = []
    seen: set = set()
    for spec in paths:
        path = Path(spec)
        if path.is_file():
            data = _load_json(path)
            if not _is_eval_summary(data):
                raise UserError(f"{path} is not an evaluation summary (no 'metrics' object); pass eval/<name>.json files")
            candidates = [EvalSummary(path, data)]
        elif path.is_dir():
            candidates = [EvalSummary(p, d) for p in sorted(path.rglob("*.json"))
                          if "wandb" not in p.parts and _is_eval_summary(d := _load_json(p, strict=False))]
            if not candidates:
                raise UserError(f"no evaluation JSONs under {path}; run `satdiffmoe evaluate` first or pass eval/<name>.json")
        else:
            raise UserError(f"eval file or folder not found: {path}")
        for summary in candidates:  # a file named twice (itself and via its folder) counts once
            if summary.path.resolve() not in seen:
                seen.add(summary.path.resolve())
                found.append(summary)
    refuse_mixed_datasets(found)
    return found


def refuse_mixed_datasets(summaries: Sequence[EvalSummary]) -> None:
    """One table = one dataset: results that scored different data (their `dataset` differs) are refused."""
    groups: list[tuple[dict[str, Any] | None, list[EvalSummary]]] = []
    for summary in summaries:
        identity = summary.data.get("dataset")
        for known, members in groups:
            if same_dataset(known, identity):
                members.append(summary)
                break
        else:
            groups.append((identity, [summary]))
    if len(groups) > 1:
        shown = "; ".join(f"{dataset_label(identity)}: {len(members)} file(s), e.g. {members[0].path}"
                          for identity, members in groups)
        raise UserError(f"these evaluations scored {len(groups)} different datasets ({shown}); "
                        "report one dataset at a time (pass only its eval folders or JSON files)")


# ---------------------------------------------------------------------------- method and metric names
# What a method's or metric's name means for a reader: evaluation metrics come from the catalog
# (evaluation/catalog.py); training-curve names (loss, time) are added here.
_CURVE_LABELS = {"loss": "loss", "seconds_per_image": "time (s/image)"}
_CURVE_LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "seconds_per_image")
METRIC_ORDER = tuple(METRICS)


METHOD_NAMES = {"satdiffmoe": "SatDiffMoE", "controlnet": "ControlNet", "diffusionsat": "DiffusionSat",
                "highresnet": "HighRes-net", "rams": "RAMS", "srcnn": "SRCNN",
                "bicubic_nearest": "Bicubic (nearest LR)", "mean_bicubic": "Mean of bicubic LRs",
                "autoencoder": "Autoencoder reconstruction of the HR",
                "unc_constant": "Constant uncertainty map", "unc_lr_std": "Std of the bicubic LRs"}


def method_name(method: str) -> str:
    """Display name of a config `stage` / eval `method`."""
    return METHOD_NAMES.get(method, method)


def metric_base(metric: str) -> str:
    """'val/psnr' -> 'psnr'."""
    return metric.rsplit("/", 1)[-1]


def metric_label(metric: str) -> str:
    base = metric_base(metric)
    label = METRICS[base].label if base in METRICS else _CURVE_LABELS.get(base, base)
    prefix = metric[: -len(base)]
    return f"{prefix}{label}" if prefix else label


def higher_is_better(metric: str) -> bool | None:
    """True/False, or None for a metric with no better direction (nothing is marked best)."""
    base = metric_base(metric)
    if base in METRICS:
        return METRICS[base].higher_is_better
    return not (base in _CURVE_LOWER_IS_BETTER or base.endswith("loss"))


def ordered_metrics(names) -> list[str]:
    """The paper's metric order first, then the rest alphabetically; time always last."""
    names = set(names)
    first = [m for m in METRIC_ORDER if m in names]
    rest = sorted(names - set(first) - {"seconds_per_image"})
    return first + rest + (["seconds_per_image"] if "seconds_per_image" in names else [])


# --------------------------------------------------------------------------- ablation observations
@dataclass
class Observation:
    """One evaluated configuration: the swept keys' values and the eval summary's metrics."""

    params: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    seconds_per_image: float | None
    origin: str  # "trial 7" or the eval JSON path, for messages
    scenes: list[dict[str, Any]] | None = None  # per-scene rows {key, seed, <metric>: value}, for paired Δ


@dataclass
class AblationSource:
    name: str
    origin: str
    observations: list[Observation] = field(default_factory=list)


def normalize_value(key: str, value: Any) -> Any:
    """'off' for disabled fusion (null, 0, False), as the sweep contract spells it; lists become tuples."""
    if key.endswith("fusion_every") and value in (None, 0, False, "null", "none", "None"):
        return "off"
    if isinstance(value, list):
        return tuple(value)
    return value


def observation_from_eval(summary: EvalSummary) -> Observation:
    data = summary.data
    params: dict[str, Any] = {"method": summary.method}
    for key, value in (data.get("sampler") or {}).items():
        if not isinstance(value, (dict, list)):
            params[f"sampler.{key}"] = value
    if "num_lr" in data:
        params["data.num_lr"] = data["num_lr"]
    if "nfe" in data:
        params["sampler.nfe"] = data["nfe"]
    seeds = data.get("seeds")
    if seeds is not None:
        params["eval.seeds"] = seeds
    params = {k: normalize_value(k, v) for k, v in params.items()}
    return Observation(params, summary.metrics, data.get("seconds_per_image"), str(summary.path),
                       summary.per_scene())


def scene_rows(columns: Any) -> list[dict[str, Any]] | None:
    """A trial's `scenes` attribute ({"key": [...], "seed": [...], "<metric>": [...]}) as rows."""
    if not isinstance(columns, dict) or not isinstance(columns.get("key"), list):
        return None
    names = [k for k, v in columns.items() if isinstance(v, list) and len(v) == len(columns["key"])]
    return [{name: columns[name][i] for name in names} for i in range(len(columns["key"]))]


def _trial_observation(trial, metric_names: list[str]) -> Observation:
    summary = trial.user_attrs.get("eval")
    params = {k: normalize_value(k, v) for k, v in trial.params.items()}
    if _is_eval_summary(summary):
        return Observation(params, summary["metrics"], summary.get("seconds_per_image"), f"trial {trial.number}",
                           scene_rows(trial.user_attrs.get("scenes")))
    # No eval summary (a sweep made by other tools): fall back to the objective values.
    metrics = {name: {"mean": float(v), "n": 1} for name, v in zip(metric_names, trial.values or [])}
    return Observation(params, metrics, None, f"trial {trial.number}")


# ------------------------------------------------------------------------------- Optuna storages
_NAME_AT = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)@(?P<rest>.+)$")


def _open_storage(spec: str):
    """A storage object for a sweep folder, a .db file, an RDB URL or `journal:path`; None = not a study."""
    import optuna

    if spec.startswith("journal:"):
        path = Path(spec[len("journal:"):])
        if not path.is_file():  # JournalFileBackend would silently create an empty journal
            raise UserError(f"journal file not found: {path}")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    if "://" in spec:
        if spec.startswith("sqlite:///") and not Path(spec[len("sqlite:///"):]).is_file():
            raise UserError(f"SQLite study file not found: {spec[len('sqlite:///'):]} (Optuna would create an empty one)")
        return optuna.storages.RDBStorage(spec)
    path = Path(spec)
    if path.is_dir():
        return _open_storage(f"sqlite:///{path / 'study.db'}") if (path / "study.db").is_file() else None
    if path.is_file() and path.suffix in (".db", ".sqlite", ".sqlite3"):
        return _open_storage(f"sqlite:///{path}")
    if path.is_file() and path.suffix == ".log":
        return _open_storage(f"journal:{path}")
    raise UserError(f"study not found: {spec}; pass a sweep folder with study.db, sqlite:///f.db, postgresql://..., "
                    "journal:path.log, or NAME@one-of-those")


def read_studies(spec: str) -> list[AblationSource]:
    """Every study in a storage (or the one picked by `name@storage`), COMPLETE trials only."""
    import optuna
    from optuna.trial import TrialState

    match = _NAME_AT.match(spec)
    wanted, where = (match["name"], match["rest"]) if match else (None, spec)
    storage = _open_storage(where)
    if storage is None:
        return []
    names = optuna.get_all_study_names(storage)
    if wanted is not None and wanted not in names:
        raise UserError(f"no study named '{wanted}' in {redact(where)}; it holds: {', '.join(names) or 'no studies'}")
    chosen = [wanted] if wanted else names
    if not chosen:
        raise UserError(f"{redact(where)} holds no Optuna study; run `satdiffmoe sweep` first")
    sources = []
    for name in chosen:
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            message = (f"study '{name}' in {redact(where)} has no COMPLETE trials ({len(trials)} in other states); "
                       "wait for the sweep or check its failed trials")
            if len(chosen) == 1:
                raise UserError(message)
            log.warning("skipping: %s", message)
            continue
        metric_names = study.metric_names or (["objective"] if len(complete[0].values) == 1 else
                                              [f"objective_{i}" for i in range(len(complete[0].values))])
        observations = [_trial_observation(t, metric_names) for t in complete]
        sources.append(AblationSource(name, redact(where), observations))
    if not sources:
        raise UserError(f"no study in {redact(where)} has COMPLETE trials; wait for the sweep or check its failed trials")
    return sources


def read_ablation_sources(spec: str) -> list[AblationSource]:
    """An Optuna study location, or a folder of eval JSONs (each JSON = one configuration)."""
    studies = read_studies(spec)
    if studies:
        return studies
    folder = Path(spec)
    if not folder.is_dir() or not any(_is_eval_summary(_load_json(p, strict=False)) for p in folder.rglob("*.json")
                                      if "wandb" not in p.parts):
        raise UserError(f"--study {spec} is neither an Optuna study (a sweep folder with study.db, or a sqlite:///, "
                        "postgresql:// or journal: storage) nor a folder of eval JSONs; pass the sweep's folder "
                        "(runs/sweeps/<study>) or its --storage")
    evals = read_eval_summaries([spec])
    return [AblationSource(folder.name, str(folder), [observation_from_eval(e) for e in evals])]
