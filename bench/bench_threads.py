"""Thread policy under load: training samples/s of one quickstart stage, idle and beside a CPU burner.

    python bench/run.py threads [--quick]

Each measurement is a fresh subprocess (libgomp reads OMP_WAIT_POLICY once, when torch loads) that
runs optimizer steps of the quickstart `satdiffmoe` stage on in-memory batches (bench_training.py's),
under one thread setting:

    default   2 intra-op threads, libgomp's default wait policy (what torch does unasked)
    passive   2 threads, OMP_WAIT_POLICY=PASSIVE (waiting threads sleep instead of spinning)
    one       1 thread
    auto      the CLI's policy (satdiffmoe/threads.py): threads = the CPUs other processes leave free

each once with the machine as it is and once with `burners` busy-looping Python processes beside it.
The ratios that matter are within one run: loaded ÷ idle per setting, and each setting ÷ default.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
SETTINGS = {
    "default": {"SATDIFFMOE_THREADS": "2"},
    "passive": {"SATDIFFMOE_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "one": {"SATDIFFMOE_THREADS": "1"},
    "auto": {"SATDIFFMOE_THREADS": "auto"},
}
BURN = "while True: pass"


def worker(steps: int) -> None:
    """In the subprocess: apply the policy as the CLI does, then time `steps` training steps."""
    from satdiffmoe import threads

    chosen = threads.apply()
    import tempfile

    import torch
    from bench_training import fake_batch, time_steps

    from satdiffmoe.config import load_config
    from satdiffmoe.training import task_class
    from satdiffmoe.training.autoencoder import AutoencoderTask

    config = "experiments/quickstart.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        AutoencoderTask(load_config(config, ["stage=autoencoder"])).vae.save_pretrained(Path(tmp) / "vae")
        cfg = load_config(config, ["stage=satdiffmoe", f"model.vae.pretrained={Path(tmp) / 'vae'}"])
        task = task_class("satdiffmoe")(cfg).train()
        seconds = time_steps(task, fake_batch(cfg, torch.device("cpu")), steps, 2, torch.device("cpu"))
    print(json.dumps({"samples_per_s": steps * cfg.data.batch_size / seconds, "threads": chosen.threads}))


def measure(setting: str, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(SETTINGS[setting])
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, __file__, "--worker", str(steps)], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    steps = 5 if getattr(args, "quick", False) else 30
    burners = int(os.environ.get("BENCH_BURNERS", "1"))
    results: dict = {"steps": steps, "burners": burners, "cpus": len(os.sched_getaffinity(0)), "settings": {}}
    for setting in SETTINGS:
        results["settings"][setting] = {"idle": measure(setting, steps)}
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(burners)]
    try:
        time.sleep(2)  # let the burners reach the run queue (and the load average)
        for setting in SETTINGS:
            results["settings"][setting]["loaded"] = measure(setting, steps)
    finally:
        for proc in procs:
            proc.kill()
    base = results["settings"]["default"]["idle"]["samples_per_s"]
    for setting, row in results["settings"].items():
        row["loaded_over_idle"] = round(row["idle"]["samples_per_s"] / row["loaded"]["samples_per_s"], 2)
        row["idle_vs_default"] = round(row["idle"]["samples_per_s"] / base, 2)
        log.info("%s: %s", setting, row)
    return results


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(int(sys.argv[2]))
