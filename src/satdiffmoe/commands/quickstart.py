"""`satdiffmoe quickstart`: the embedded default, end to end, on a 2-core CPU with no network.

synthetic shards -> autoencoder -> prior -> SatDiffMoE, ControlNet, DiffusionSat -> evaluation of
every method and the non-generative references -> a small fusion sweep -> report.

`--ablations` (what `make docs` runs) adds the README's ablations on the same checkpoints: the NFE ×
timestep-spacing sweep, the data-consistency cost sweep (optimize_steps × backprojection), and SatDiffMoE fine-tuned with `train.trainable` lora and new_only (same
steps, same prior) evaluated beside the full fine-tune.

`--jobs K` runs independent commands (the evaluations, the ablation runs) side by side in K child
processes (`_cli_parallel`), and the sweeps with K workers.

Every stage goes through the same public CLI a user would type, with fixed run ids under `--out`, so
re-running the command resumes: finished training runs are detected from their `last.ckpt` and
skipped, the sweep resumes its Optuna study, and finished evaluations are not repeated.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from ..errors import UserError
from . import add_command

log = logging.getLogger(__name__)
HELP = "synthetic data -> all stages -> sweep -> report, on CPU in minutes"

# Its configs are package data (config/presets/, listed in pyproject.toml), not files of a source
# checkout, so an installed wheel runs it too; experiments/quickstart.yaml etc. extend these files.
# (resolved from the top package: importing satdiffmoe.config here would load omegaconf for --help)
PRESETS = Path(str(resources.files("satdiffmoe") / "config" / "presets"))
EXPERIMENTS = PRESETS / "experiments"
SWEEPS = PRESETS / "sweeps"
RUN_ID = "quickstart"
# (stage name, config file, which earlier stages it starts from)
TRAINING = [
    ("autoencoder", EXPERIMENTS / "quickstart.yaml", []),
    ("prior", EXPERIMENTS / "quickstart.yaml", ["vae"]),
    ("satdiffmoe", EXPERIMENTS / "quickstart.yaml", ["vae", "prior"]),
    ("controlnet", EXPERIMENTS / "baselines" / "controlnet_quickstart.yaml", ["vae", "prior"]),
    ("diffusionsat", EXPERIMENTS / "baselines" / "diffusionsat_quickstart.yaml", ["vae", "prior"]),
]
# --ablations: the paper's "fewer trainable parameters" claim; run name -> train.trainable (models/trainable.py)
TRAINABLE = {"satdiffmoe_lora": "lora", "satdiffmoe_new_only": "new_only"}
SCENES = 640
# Optimizer steps per stage: the three conditional methods get the same budget so their convergence
# curves compare step for step; sized so the whole quickstart fits 15 minutes on 2 CPU cores.
STEPS = {"autoencoder": 400, "prior": 400, "satdiffmoe": 400, "controlnet": 400, "diffusionsat": 400}
STEPS.update({name: STEPS["satdiffmoe"] for name in TRAINABLE})
SWEEP_SCENES = 16  # test scenes per sweep trial: six trials with the data-consistency sampler must fit the budget
SET_METRICS_NOT_IN_SWEEPS = ("fid", "kid")
ABLATION_STUDIES = ("sweep_nfe", "sweep_consensus")


class Quickstart:
    def __init__(self, out: Path, overrides: list[str], ablations: bool = False, jobs: int | None = None):
        self.out, self.overrides, self.ablations, self.jobs = out, list(overrides), ablations, jobs
        self.data, self.runs, self.report = out / "data", out / "runs", out / "report"
        self.timings: dict = {}
        self.started = time.time()

    def run_dir(self, stage: str) -> Path:
        return self.runs / stage / RUN_ID

    def _cli(self, argv: list[str]) -> None:
        from ..cli import main

        code = main([str(a) for a in argv])
        if code:
            raise UserError(f"quickstart step failed: satdiffmoe {' '.join(map(str, argv))} (exit {code})")

    def _cli_parallel(self, commands: list[tuple[str, list]]) -> None:
        """Independent commands in `--jobs` child processes at once (default 1: one after another in this
        process, as `_cli`), each with its share of the free CPUs' threads. Each child writes its output
        to logs/<label>.log and one line here when it ends; a failure names its log. Ctrl-C stops every
        child (they keep what their own interruption keeps) and the quickstart resumes from there.
        Not the default: on 2 cores a 1-thread evaluation runs 1.7× slower than a 2-thread one, so two
        side by side gained nothing (BENCHMARKS.md, "Quickstart, end to end")."""
        from .. import threads

        processes = min(self.jobs or 1, len(commands))
        if processes <= 1:
            for _, argv in commands:
                self._cli(argv)
            return
        env = {**os.environ, threads.ENV: str(threads.per_worker(processes))}
        logs = self.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        print(f"{len(commands)} commands in {processes} processes of {env.get(threads.ENV, 'auto')} thread(s); "
              f"their output: {logs}/", flush=True)
        pending, running, failed = list(commands), {}, []
        try:
            while pending or running:
                while pending and len(running) < processes:
                    label, argv = pending.pop(0)
                    log = logs / f"{label}.log"
                    with log.open("w") as out:
                        child = subprocess.Popen([sys.executable, "-m", "satdiffmoe.cli", *map(str, argv)],
                                                 stdout=out, stderr=subprocess.STDOUT, env=env)
                    running[child.pid] = (child, label, log, time.time())
                # polled, not os.wait(): that would also reap children that are not ours (W&B's service)
                finished = [pid for pid, (child, *_) in running.items() if child.poll() is not None]
                if not finished:
                    time.sleep(0.2)
                    continue
                child, label, log, started = running.pop(finished[0])
                lines = log.read_text(errors="replace").strip().splitlines() or [""]
                print(f"  {label}: {'done' if child.returncode == 0 else f'exit {child.returncode}'} in "
                      f"{time.time() - started:.0f} s ({log})", flush=True)
                if child.returncode:
                    failed.append(f"{label} ({lines[-1]}; {log})")
        except KeyboardInterrupt:
            for child, *_ in running.values():
                child.send_signal(signal.SIGTERM)
            for child, *_ in running.values():
                child.wait()
            raise
        if failed:
            raise UserError(f"quickstart step failed: {'; '.join(failed)}")

    def _step(self, index: int, total: int, title: str, func) -> None:
        start = time.time()
        print(f"\n=== [{index}/{total}] {title}  (elapsed {start - self.started:.0f} s) ===", flush=True)
        try:
            func()
        except KeyboardInterrupt:  # also an inner command's own Interrupted: here, running quickstart again is the fix
            from ..interrupts import Interrupted

            done = {1: "nothing is finished yet", 2: "step 1 is kept"}.get(index, f"steps 1-{index - 1} are kept")
            raise Interrupted(f"interrupted in step {index}/{total} ({title}); {done} in {self.out}; run the "
                              "same `satdiffmoe quickstart` again to continue from there") from None
        self.timings[title] = round(time.time() - start, 1)
        print(f"=== done in {self.timings[title]:.0f} s ===", flush=True)

    def prepare(self) -> None:
        if (self.data / "manifest.json").is_file():
            print(f"shards already in {self.data}; reusing them")
            return
        self._cli(["prepare", "synthetic", "--out", self.data, "--num-scenes", SCENES, "--hr-size", 64,
                   "--scale", 4, "--max-lr", 8, "--seed", 0])

    def train(self, stage: str, config: Path, needs: list[str], name: str | None = None,
              extra: tuple[str, ...] = ()) -> None:
        self._cli(self._training(stage, config, needs, name, extra)[1])

    def _training(self, stage: str, config: Path, needs: list[str], name: str | None = None,
                  extra: tuple[str, ...] = ()) -> tuple[str, list]:
        name = name or stage
        argv = ["train", config, f"stage={stage}", f"name={name}", f"run_id={RUN_ID}",
                f"run_root={self.runs}", f"data.root={self.data}", f"train.max_steps={STEPS[name]}", *extra]
        if (self.run_dir(name) / "checkpoints" / "last.ckpt").is_file():
            argv.append("resume=true")  # an interrupted (or finished) quickstart picks up where it was
        if "vae" in needs:
            argv.append(f"init.vae_ckpt={self.run_dir('autoencoder')}")
        if "prior" in needs:
            argv.append(f"init.prior_ckpt={self.run_dir('prior')}")
        return f"train_{name}", argv + self.overrides

    def evaluate(self) -> None:
        # (run, eval name, overrides, also evaluate the non-generative references on the same scenes)
        jobs = [  # the longest first: they run side by side when the CPUs allow (_cli_parallel)
            ("satdiffmoe", "satdiffmoe_n8", ["data.num_lr=8"], True),
            ("satdiffmoe", "satdiffmoe_n1", ["data.num_lr=1"], False),
            ("controlnet", "controlnet_nearest", ["data.num_lr=8"], False),
            ("diffusionsat", "diffusionsat_t8", ["data.num_lr=8"], False),
        ]
        self._cli_parallel([self._evaluation(run, run, name, extra, references)
                            for run, name, extra, references in jobs if self._to_evaluate(run, name)])

    def _to_evaluate(self, run: str, name: str) -> bool:
        target = self.run_dir(run) / "eval" / f"{name}.json"
        if target.is_file():
            print(f"{target} exists; skipping")
        return not target.is_file()

    def _evaluation(self, run: str, stage: str, name: str, extra: list[str], references: bool) -> tuple[str, list]:
        configs = {stage: config for stage, config, _ in TRAINING}
        return f"evaluate_{name}", [
            "evaluate", configs[stage], f"stage={stage}", f"name={run}", f"run_id={RUN_ID}",
            f"run_root={self.runs}", f"data.root={self.data}", f"ckpt={self.run_dir(run)}",
            f"eval.name={name}", f"eval.references={str(references).lower()}", *extra, *self.overrides]

    def train_trainable(self) -> None:
        """SatDiffMoE with fewer trainable parameters, from the same prior for the same steps."""
        self._cli_parallel([self._training("satdiffmoe", EXPERIMENTS / "quickstart.yaml", ["vae", "prior"], name=name,
                                           extra=(f"train.trainable={mode}",)) for name, mode in TRAINABLE.items()])

    def evaluate_trainable(self) -> None:
        # the same 64 scenes and noise as satdiffmoe_n8: the methods table pairs them
        self._cli_parallel([self._evaluation(name, "satdiffmoe", f"{name}_n8", ["data.num_lr=8"], False)
                            for name in TRAINABLE if self._to_evaluate(name, f"{name}_n8")])

    def _sweep(self, spec: str, out: str) -> None:
        from ..evaluation.catalog import DEFAULT_METRICS

        # FID and KID over 16 scenes say nothing (2048-d features): the sweeps score the per-image metrics
        metrics = ",".join(m for m in DEFAULT_METRICS if m not in SET_METRICS_NOT_IN_SWEEPS)
        # key=value overrides go before --out: argparse does not take positionals after options
        self._cli(["sweep", SWEEPS / spec, f"ckpt={self.run_dir('satdiffmoe')}", "--workers", self.jobs or 1,
                   f'base_overrides=[data.root={self.data},data.test_subset={SWEEP_SCENES},"eval.metrics=[{metrics}]"]',
                   "--out", self.out / out])

    def sweep(self) -> None:
        self._sweep("quickstart_fusion.yaml", "sweep")

    def nfe_sweep(self) -> None:
        self._sweep("quickstart_nfe.yaml", "sweep_nfe")

    def consensus_sweep(self) -> None:
        self._sweep("quickstart_consensus.yaml", "sweep_consensus")

    def make_report(self) -> None:
        from ..config import load_config

        own = load_config(EXPERIMENTS / "quickstart.yaml", ["stage=satdiffmoe", *self.overrides]).sampler
        studies = [self.out / "sweep"] + ([self.out / s for s in ABLATION_STUDIES] if self.ablations else [])
        evals = [self.run_dir(s) / "eval" for s, _, _ in TRAINING[2:]]
        evals += [self.run_dir(name) / "eval" for name in TRAINABLE] if self.ablations else []
        # convergence runs: the three methods only (a LoRA run would join SatDiffMoE's median)
        self._cli(["report", "--runs", *[self.run_dir(s) for s, _, _ in TRAINING[2:]],
                   "--study", *studies, "--evals", *evals, "--methods-reference", "satdiffmoe_n8",
                   # the consensus study's Δ against the quickstart's own setting (its other factors have
                   # the paper's: fusion every 5, N = 8)
                   "--ablation-reference", f"sampler.optimize_steps={own.optimize_steps}",
                   f"sampler.backprojection={own.backprojection}",
                   "--out", self.report])

    def __call__(self) -> Path:
        steps = [("synthetic data", self.prepare)]
        steps += [(f"train {stage}", lambda s=stage, c=config, n=needs: self.train(s, c, n))
                  for stage, config, needs in TRAINING]
        steps += [("evaluate methods", self.evaluate), ("fusion sweep", self.sweep)]
        if self.ablations:
            steps += [("train satdiffmoe lora / new_only", self.train_trainable),
                      ("evaluate lora / new_only", self.evaluate_trainable), ("NFE sweep", self.nfe_sweep),
                      ("consensus sweep", self.consensus_sweep)]
        steps += [("report", self.make_report)]
        for index, (title, func) in enumerate(steps, 1):
            self._step(index, len(steps), title, func)
        total = round(time.time() - self.started, 1)
        (self.out / "timings.json").write_text(json.dumps({"steps_s": self.timings, "total_s": total}, indent=2))
        print(f"\nquickstart finished in {total / 60:.1f} min. Report: {self.report / 'report.md'}")
        return self.report / "report.md"


def register(subparsers) -> None:
    p = add_command(subparsers, "quickstart", HELP)
    p.add_argument("--out", default="runs/quickstart", help="where everything goes")
    p.add_argument("--ablations", action="store_true",
                   help="also the README's ablations: NFE x timestep spacing, trainable = lora / new_only (make docs)")
    p.add_argument("--jobs", type=int, default=None, metavar="K",
                   help="independent evaluations, sweep trials and ablation runs side by side in K processes "
                        "(default 1: one after another in this process, the faster on 2 cores)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied to every stage's config")


def run(args) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    Quickstart(Path(args.out), args.overrides, args.ablations, args.jobs)()
    return 0
