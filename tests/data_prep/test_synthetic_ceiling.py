"""The SynthSat ceiling (clean full-resolution renders on the LR days against the HR)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from data_prep.synthetic import SynthSatParams, plan_scene
from data_prep.synthetic_ceiling import ceilings, main
from satdiffmoe.evaluation.metrics import load_lpips, lpips_unavailable


def with_days(plan, days):
    return dataclasses.replace(plan, days=np.array(days))


def test_an_lr_on_the_hr_day_is_the_hr_itself():
    plan = with_days(plan_scene(SynthSatParams(), 3), [0])
    scores = ceilings([plan])
    assert all(row["psnr"] == pytest.approx(100.0) for row in scores.values())  # exact match, clamped


def test_change_over_time_costs_fidelity_and_the_nearest_day_is_not_the_farthest():
    plans = [with_days(plan_scene(SynthSatParams(), i), [-700, -30, 700]) for i in range(8)]
    nearest = ceilings(plans)["nearest"]["psnr"]
    farthest = ceilings([with_days(p, [700]) for p in plans])["nearest"]["psnr"]
    assert 15 < farthest < nearest < 100


@pytest.mark.skipif(lpips_unavailable(None, 3) is not None, reason="no LPIPS weights")
def test_lpips_rows_are_zero_for_the_hr_day():
    plan = with_days(plan_scene(SynthSatParams(), 1), [0, 365])
    scores = ceilings([plan], load_lpips(None))
    assert scores["nearest"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert scores["random"]["lpips"] > 0  # the day-365 render differs


def test_the_command_prints_one_row_per_ceiling(capsys):
    assert main(["--num-scenes", "20", "--no-lpips"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 test scenes (--num-scenes 20 --seed 0)"
    assert [line.split(" | ")[0] for line in lines[3:]] == ["| nearest", "| random", "| mean"]
