"""Run folders: `runs/<experiment>/<run-id>/` holding the resolved config and everything a run writes.

    run = RunDir.create(cfg)         # makes the folder, writes config.yaml, seeds everything
    run.path / "checkpoints"         # Lightning checkpoints (last.ckpt + top-k)
    run.path / "metrics.jsonl"       # local metric log read by `satdiffmoe report` (no W&B needed)
    run.path / "images"              # PNG grids
    run.path / "eval"                # eval/<name>.json + .jsonl
    run.path / "wandb"               # the W&B offline run

Each subfolder is made by what writes into it, so none is ever left empty (`report --evals
runs/*/*/eval` matches only runs that were evaluated).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import UserError


@dataclass
class RunDir:
    path: Path

    @classmethod
    def create(cls, cfg: DictConfig, run_id: str | None = None) -> RunDir:
        """The run folder of `run_id` (or `cfg.run_id`), made if missing; without either, a new
        timestamped folder that no other process has (see `new_run_id`)."""
        base = Path(cfg.run_root) / cfg.name
        run_id = run_id or cfg.run_id or os.environ.get(RUN_ID_ENV)
        try:  # only the run folder: checkpoints/, images/ and eval/ appear when something is written there
            path = base / str(run_id) if run_id else new_run_folder(base)
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run folder {base}/...: {exc.strerror}; "
                            "set run_root=... to a writable folder") from None
        run = cls(path)
        run.write_config(cfg)
        return run

    def holds_a_run(self) -> bool:
        """Whether an earlier training left a checkpoint here (not just a config or a few log lines)."""
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.ckpt"))

    def write_config(self, cfg: DictConfig, name: str = "config.yaml") -> Path:
        target = self.path / name
        # one temp name per process: DDP ranks write the same config at the same time
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp")
        try:
            tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            os.replace(tmp, target)  # atomic: a crash never leaves a half-written config
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UserError(f"cannot write {target}: {exc.strerror}; free some space or set run_root=... "
                            "to another folder") from None
        return target

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def metrics_log(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def images(self) -> Path:
        return self.path / "images"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"


# Lightning's DDP launcher re-runs the command in each child process; the parent exports the run id
# it chose here so that the children find its folder instead of making their own.
RUN_ID_ENV = "SATDIFFMOE_RUN_ID"


def new_run_folder(base: Path) -> Path:
    """A fresh `<base>/<YYYYmmdd-HHMMSS>[-k]`, created exclusively: two runs started in the same second
    (or on a shared filesystem) never share a folder, config or metric log."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        path = base / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError(f"cannot find a free run folder name under {base} for {stamp}; set run_id=...")


def is_launched_rank() -> bool:
    """A process started for DDP rank > 0 (by torchrun or Lightning's launcher), which joins rank 0's run."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) > 0


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (and worker seeding) through Lightning."""
    import lightning

    lightning.seed_everything(int(seed), workers=True, verbose=False)
