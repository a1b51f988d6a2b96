"""The sweep file: schema errors, search-space rules and objective lookup (no model needed)."""

from pathlib import Path

import pytest

from satdiffmoe.errors import UserError
from satdiffmoe.sweeps.spec import grid_size, load_sweep, read_metric, search_space, to_config_value

REPO = Path(__file__).resolve().parents[2]
PRESETS = REPO / "src" / "satdiffmoe" / "config" / "presets"  # the quickstart's sweep ships in the package


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


BASE = """
study: s
config: exp.yaml
params:
  sampler.fusion_every: {choices: [1, 5, "off"]}
  data.num_lr: {choices: [1, 4]}
sampler: {name: grid}
"""


SHIPPED = sorted([*(REPO / "sweeps").glob("*.yaml"), *(PRESETS / "sweeps").glob("*.yaml")])


def test_every_shipped_sweep_is_tested():
    assert {p.stem for p in SHIPPED} >= {"fusion_ablation", "consensus_rules", "train_lr", "quickstart_fusion",
                                         "quickstart_sampler_variants"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_sweep_files_load(path):
    spec = load_sweep(path)
    assert spec.study == path.stem


def test_fusion_ablation_grid_is_6_by_4_by_4():
    spec = load_sweep(REPO / "sweeps" / "fusion_ablation.yaml")
    space = search_space(spec)
    assert space["sampler.fusion_every"] == [1, 2, 5, 10, 25, "off"]
    assert space["sampler.nfe"] == [10, 25, 50, 100]
    assert space["data.num_lr"] == [1, 2, 4, 8]
    assert grid_size(spec) == 96


def test_unknown_sweep_key_names_the_closest_valid_one(tmp_path):
    with pytest.raises(UserError, match="unknown config key 'n_trails'.*n_trials"):
        load_sweep(write(tmp_path, BASE + "n_trails: 3\n"))


def test_param_key_must_be_an_experiment_config_key(tmp_path):
    text = BASE.replace("data.num_lr", "data.num_lrs")
    with pytest.raises(UserError, match="'data.num_lrs'.*did you mean 'data.num_lr'"):
        load_sweep(write(tmp_path, text))


def test_grid_rejects_a_continuous_range(tmp_path):
    text = BASE + "  train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}\n"
    text = text.replace("sampler: {name: grid}\n", "") + "sampler: {name: grid}\n"
    with pytest.raises(UserError, match="grid sampler cannot enumerate params.train.lr"):
        load_sweep(write(tmp_path, text))


def test_tpe_needs_n_trials(tmp_path):
    with pytest.raises(UserError, match="needs n_trials"):
        load_sweep(write(tmp_path, BASE.replace("name: grid", "name: tpe")))


def test_missing_study_name_is_reported(tmp_path):
    with pytest.raises(UserError, match="does not set study"):
        load_sweep(write(tmp_path, BASE.replace("study: s\n", "")))


def test_pruning_needs_a_single_objective(tmp_path):
    text = BASE + "objectives: [{metric: psnr}, {metric: seconds_per_image, direction: minimize}]\npruner: {name: median}\n"
    with pytest.raises(UserError, match="pruning needs a single objective"):
        load_sweep(write(tmp_path, text))


def test_threshold_pruner_needs_a_bound(tmp_path):
    with pytest.raises(UserError, match="needs pruner.lower and/or pruner.upper"):
        load_sweep(write(tmp_path, BASE + "pruner: {name: threshold}\n"))
    assert load_sweep(write(tmp_path, BASE + "pruner: {name: threshold, lower: 15.0}\n")).pruner.lower == 15.0


def test_paths_in_the_file_are_relative_to_it_and_overrides_to_cwd(tmp_path):
    spec = load_sweep(write(tmp_path, BASE))
    assert spec.config == str(tmp_path / "exp.yaml")
    spec = load_sweep(write(tmp_path, BASE), ["config=/abs/other.yaml", "n_trials=7"])
    assert spec.config == "/abs/other.yaml" and spec.n_trials == 7


def test_off_means_no_fusion():
    assert to_config_value("off") is None
    assert to_config_value(5) == 5


def test_read_metric_takes_the_mean_or_a_summary_number():
    summary = {"seconds_per_image": 0.5, "params": {"trainable": 12},
               "metrics": {"psnr": {"mean": 21.5, "std": 1.0}, "lpips": {"unavailable": "no weights"}}}
    assert read_metric(summary, "psnr") == 21.5
    assert read_metric(summary, "seconds_per_image") == 0.5
    assert read_metric(summary, "params.trainable") == 12
    with pytest.raises(UserError, match="unavailable: no weights"):
        read_metric(summary, "lpips")
    with pytest.raises(UserError, match="not in the evaluation summary"):
        read_metric(summary, "fid")
