"""Experiment configs: composition, overrides, and one clear error per kind of mistake."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ReadonlyConfigError

from satdiffmoe.config import load_config, with_overrides
from satdiffmoe.errors import UserError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_extends_composes_and_child_wins(tmp_path):
    write(tmp_path / "base.yaml", "name: base\ntrain:\n  lr: 1.0e-3\n  max_steps: 7\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nname: child\ntrain:\n  lr: 5.0e-4\n")
    cfg = load_config(child)
    assert cfg.name == "child"
    assert cfg.train.lr == 5.0e-4
    assert cfg.train.max_steps == 7  # inherited
    assert "extends" not in OmegaConf.to_container(cfg) or cfg.extends is None


def test_multiple_bases_merge_in_order(tmp_path):
    write(tmp_path / "a.yaml", "seed: 1\ntrain:\n  lr: 0.1\n")
    write(tmp_path / "b.yaml", "seed: 2\n")
    child = write(tmp_path / "c.yaml", "extends: [a.yaml, b.yaml]\n")
    cfg = load_config(child)
    assert (cfg.seed, cfg.train.lr) == (2, 0.1)


def test_dotted_overrides_beat_files(tmp_path):
    child = write(tmp_path / "c.yaml", "train:\n  lr: 0.1\n")
    cfg = load_config(child, ["train.lr=0.01", "sampler.fusion_every=null", "eval.seeds=[1,2]"])
    assert cfg.train.lr == 0.01
    assert cfg.sampler.fusion_every is None
    assert list(cfg.eval.seeds) == [1, 2]


def test_loaded_config_is_read_only(tmp_path):
    cfg = load_config(None)
    with pytest.raises(ReadonlyConfigError):
        cfg.train.lr = 3.0


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["trian.lr=1"], "did you mean 'train'"),
        (["train.lrr=1"], "did you mean 'train.lr'"),
        (["sampler.fusion_evry=2"], "did you mean 'sampler.fusion_every'"),
        (["train.lr=abc"], "train.lr"),
        (["data.scale=3"], "does not divide data.hr_size"),
        (["sampler.nfe=0"], "sampler.nfe must be >= 1"),
        (["sampler.fusion_every=-2"], "sampler.fusion_every"),
        (["sampler.consensus=median"], "sampler.consensus"),
        (["stage=vae"], "stage 'vae'"),
        (["train.lr"], "dotted.key=value"),
    ],
)
def test_bad_overrides_give_one_clear_error(overrides, expected):
    with pytest.raises(UserError) as info:
        load_config(None, overrides)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_key_in_file_names_file_and_suggestion(tmp_path):
    bad = write(tmp_path / "bad.yaml", "sampler:\n  fusion_evry: 5\n")
    with pytest.raises(UserError, match=r"sampler.fusion_evry.*bad.yaml.*did you mean 'sampler.fusion_every'"):
        load_config(bad)


def test_missing_file_and_cycles_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "x.yaml", "extends: y.yaml\n")
    write(tmp_path / "y.yaml", "extends: x.yaml\n")
    with pytest.raises(UserError, match="cycle"):
        load_config(tmp_path / "x.yaml")


def test_with_overrides_validates_copy_and_keeps_original():
    cfg = load_config(None)
    changed = with_overrides(cfg, {"sampler.nfe": 10, "sampler.fusion_every": None})
    assert changed.sampler.nfe == 10 and changed.sampler.fusion_every is None
    assert cfg.sampler.nfe == 50
    with pytest.raises(UserError):
        with_overrides(cfg, {"sampler.nfe": 0})


def test_every_shipped_experiment_config_loads():
    root = Path(__file__).resolve().parents[2] / "experiments"
    files = sorted(p for p in root.rglob("*.yaml") if not p.name.startswith("_"))
    assert files, "no experiment configs shipped"
    for path in files:
        load_config(path)
