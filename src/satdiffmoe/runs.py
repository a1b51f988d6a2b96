"""Run folders: `runs/<experiment>/<run-id>/` holding the resolved config and everything a run writes.

    run = RunDir.create(cfg)         # makes the folder, writes config.yaml, seeds everything
    run.path / "checkpoints"         # Lightning checkpoints (last.ckpt + top-k)
    run.path / "metrics.jsonl"       # local metric log read by `satdiffmoe report` (no W&B needed)
    run.path / "images"              # PNG grids
    run.path / "eval"                # eval/<name>.json + .jsonl
    run.path / "wandb"               # the W&B offline run
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
        run_id = run_id or cfg.run_id or time.strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.run_root) / cfg.name / str(run_id)
        try:
            for sub in ("checkpoints", "images", "eval"):
                (path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create run folder {path}: {exc.strerror}; set run_root=... to a writable folder") from None
        run = cls(path)
        run.write_config(cfg)
        return run

    def write_config(self, cfg: DictConfig, name: str = "config.yaml") -> Path:
        target = self.path / name
        tmp = target.with_suffix(".tmp")
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written config
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


def seed_everything(seed: int) -> None:
    """Seeds python, numpy and torch (and worker seeding) through Lightning."""
    import lightning

    lightning.seed_everything(int(seed), workers=True, verbose=False)
