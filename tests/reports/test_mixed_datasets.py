"""`report` puts only results of one dataset into a table; mixing two is refused with one line."""

import json

import pytest

from satdiffmoe.errors import UserError
from satdiffmoe.reports.sources import read_eval_summaries

SYNTH = {"root": "/data/synthsat", "split": "test", "num_scenes": 64, "manifest_id": "aaaaaaaaaaaa", "source": "synthetic"}
WORLDSTRAT = {"root": "/data/worldstrat", "split": "test", "num_scenes": 9, "manifest_id": "bbbbbbbbbbbb",
              "source": "worldstrat"}


def _write(folder, name, dataset):
    folder.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "method": "satdiffmoe", "metrics": {"psnr": {"mean": 20.0, "n": 1}}, "dataset": dataset}
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_two_datasets_are_refused_naming_both(tmp_path):
    _write(tmp_path / "a" / "eval", "nfe20_fuse5_mean_n3", SYNTH)
    _write(tmp_path / "b" / "eval", "nfe20_fuse5_mean_n3", WORLDSTRAT)
    with pytest.raises(UserError, match="2 different datasets") as caught:
        read_eval_summaries([str(tmp_path)])
    message = str(caught.value)
    assert "synthetic (manifest aaaaaaaaaaaa" in message and "worldstrat (manifest bbbbbbbbbbbb" in message
    assert "\n" not in message


def test_one_dataset_under_two_roots_is_one_dataset(tmp_path):
    _write(tmp_path / "a" / "eval", "one", SYNTH)
    _write(tmp_path / "b" / "eval", "two", dict(SYNTH, root="/mnt/copy/synthsat"))  # same manifest, copied
    assert len(read_eval_summaries([str(tmp_path)])) == 2


def test_report_warns_when_several_runs_evaluations_share_a_name(tmp_path, caplog):
    from satdiffmoe.cli import main

    for run in ("run1", "run2"):
        _write(tmp_path / "runs" / "tiny" / run / "eval", "satdiffmoe_n8", SYNTH)
    assert main(["report", "--evals", str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("2 evaluations are named 'satdiffmoe_n8'" in w and "run1" in w and "run2" in w for w in warnings), warnings
