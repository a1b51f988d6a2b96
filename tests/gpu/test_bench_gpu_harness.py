"""`bench/run.py gpu --device cpu --quick` runs end to end and reports every number (CPU, not gpu-marked):
the harness a GPU session runs with one command cannot rot between GPU sessions."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("satdiffmoe", "controlnet", "diffusionsat")
RUN_FIELDS = ("batch_size", "seconds_per_step", "samples_per_s", "peak_memory_mb", "compile_s", "flops_per_step",
              "tflops", "mfu")
TARGETS = ("train_speedup", "tuned_mfu", "loader_headroom", "fusion_overhead_n4",
           "trainable_params_vs_fewest_baseline")


def numbers(tree):
    """Every int/float leaf of a JSON tree (booleans are flags, not measurements)."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from numbers(value)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def test_cpu_quick_run_reports_every_field_with_finite_numbers(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    subprocess.run([sys.executable, "bench/run.py", "gpu", "--device", "cpu", "--quick", "--out", str(tmp_path)],
                   cwd=ROOT, env=env, check=True, timeout=20 * 60, capture_output=True)  # a hang guard only
    result = json.loads((tmp_path / "gpu.json").read_text())["result"]

    for stage in STAGES:
        row = result["training"][stage]
        assert row["trainable_params"] == result["params"][stage] > 0
        assert row["flops_per_sample"] > 0
        assert row["attention"] == ["AttnProcessor2_0"]  # diffusers' SDPA processor everywhere
        for variant in ("baseline", "tuned"):
            assert set(RUN_FIELDS) <= set(row[variant]), (stage, variant)
            assert row[variant]["samples_per_s"] > 0
        assert row["baseline"]["precision"] == row["tuned"]["precision"] == "bf16-mixed"
        assert row["tuned"]["channels_last"] and row["tuned"]["fused_adamw"]
        assert row["tuned"]["batch_size"] == 2 * row["baseline"]["batch_size"]
    sampling = result["sampling"]
    assert sampling["nfe"] == 10  # --quick; a GPU run samples 50 steps
    assert {(r["precision"], r["branches"]) for r in sampling["rows"]} == {
        (p, n) for p in ("32", "bf16") for n in (1, 4, 8)}
    assert set(sampling["fusion_overhead"]) == {"32", "bf16"}
    loader = result["dataloader"]
    assert loader["workers"] >= 1 and loader["persistent_workers"]
    assert loader["ratio"] == loader["samples_per_s"] / loader["consumption_samples_per_s"]
    assert set(result["targets"]) == set(TARGETS)
    assert all(isinstance(goal["met"], bool) for goal in result["targets"].values())
    assert all(math.isfinite(value) for value in numbers(result))
