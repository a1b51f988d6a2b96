"""The shell blocks of the README and docs/ run as written, so a documented command cannot drift.

pytest-codeblocks reads the blocks and the marks written above them in the Markdown
(`<!--pytest.mark.skip(reason="...")-->` for a block that needs downloaded data, a GPU, a server or
the whole 15-minute quickstart). Every other `bash`/`sh` block runs, line by line, through the real
CLI (`satdiffmoe.cli.main`) in one scratch folder holding `experiments/` and `sweeps/`, in document
order (the README first, then docs/*.md, so the docs may use the README's runs) except that blocks
preparing data run first. Sizes are made tiny the way the README tells users to change anything:
options of `prepare` and `key=value` overrides appended to the command, which win over the
command's own values (16 px scenes, a few-thousand-parameter model, 2 training steps, NFE 2).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
from pytest_codeblocks import extract_from_file

from satdiffmoe.cli import main

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "BENCHMARKS.md", REPO / "bench" / "README.md"]
SHELL = ("bash", "sh")

# appended to every command of that sub-command: the documented options and overrides, at tiny sizes
TINY_PREPARE = ["--num-scenes", "40", "--hr-size", "16", "--min-lr", "8", "--shard-size", "16"]  # 8 LRs: data.num_lr=8 runs
TINY_CONFIG = [
    "data.hr_size=16", "data.batch_size=4", "data.eval_batch_size=4", "data.val_subset=4", "data.test_subset=4",
    "data.epoch_length=8", "data.shuffle_buffer=8",
    "model.vae.block_out_channels=[8,16]", "model.vae.norm_num_groups=4", "model.vae.latent_channels=4",
    "model.unet.block_out_channels=[16,32]", "model.unet.attention_levels=[false,true]",
    "model.unet.attention_head_dim=8", "model.unet.norm_num_groups=4", "model.regression.features=8",
    "model.regression.blocks=1", "diffusion.num_train_timesteps=100",
    "train.max_steps=2", "train.val_every=2", "train.log_every=1", "train.warmup_steps=0", "train.lr_schedule=constant",
    "train.ema_decay=0", "train.val_nfe=2", "train.val_lpips=false", "train.perceptual_weight=0", "train.accelerator=cpu",
    "sampler.nfe=2", "sampler.optimize_steps=1", "eval.metrics=[psnr,ssim,lr_psnr]", "eval.grid_scenes=1",
    "logging.wandb.mode=disabled", "logging.progress_bar=false",
]
TINY = {"prepare": TINY_PREPARE, "train": TINY_CONFIG, "evaluate": TINY_CONFIG}


def shell_blocks() -> list:
    blocks = []
    for path in DOCS:
        for block in extract_from_file(path):
            if block.syntax in SHELL:
                marks = [eval(mark, {"pytest": pytest}) for mark in block.marks]  # the plugin's own reading
                name = f"{path.relative_to(REPO)}:{block.lineno}"
                blocks.append(pytest.param(block.code, marks=marks, id=name))
    return sorted(blocks, key=lambda param: "satdiffmoe prepare" not in param.values[0])  # stable: data first


def commands(code: str) -> list[list[str]]:
    """A block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", code)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Where the documented commands run: a fresh folder with the repository's configs."""
    root = tmp_path_factory.mktemp("docs")
    for folder in ("experiments", "sweeps"):
        (root / folder).symlink_to(REPO / folder)
    return root


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("code", shell_blocks())
def test_documented_shell_block_runs_as_written(code, workspace, monkeypatch, one_thread, capsys):
    monkeypatch.chdir(workspace)
    for words in commands(code):
        assert words[0] == "satdiffmoe", (
            f"`{shlex.join(words)}` is not a satdiffmoe command: mark the block "
            '<!--pytest.mark.skip(reason="...")--> in the Markdown, or make it one')
        argv = words[1:] + TINY.get(words[1], [])
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 0, f"`{shlex.join(words)}` failed (exit {code}): {err[-1] if err else ''}"


def test_every_shell_block_is_found_and_runs_or_says_why_not():
    blocks = shell_blocks()
    running = [b for b in blocks if not b.marks]
    assert len(running) >= 6  # the README's data, training, evaluation, baselines and report blocks
    for block in blocks:
        for mark in block.marks:
            assert mark.name == "skip" and mark.kwargs.get("reason"), f"{block.id}: a skip mark needs a reason"


@pytest.mark.parametrize(("source", "config"), [("worldstrat", "worldstrat.yaml"), ("fmow", "fmow.yaml"),
                                                ("synthetic", "quickstart.yaml")])
def test_documented_prepare_commands_write_what_their_config_reads(source, config):
    """Every `satdiffmoe prepare <source>` the docs show (blocks, tables, config comments) writes records
    of the size and scale, into the folder, that the experiment config for that data expects."""
    from data_prep.cli import build_parser, load_source
    from satdiffmoe.config import load_config

    cfg = load_config(REPO / "experiments" / config, [])
    texts = [path.read_text() for path in DOCS] + [(REPO / "experiments" / config).read_text()]
    found = re.findall(rf"satdiffmoe prepare {source} [^`\n]*", "\n".join(texts))
    assert found, f"no documented `satdiffmoe prepare {source}` command"
    for line in found:
        words = shlex.split(line.replace("<download>", "RAW"), comments=True)
        args = build_parser(source, load_source(source)).parse_args(words[3:])  # the converter's own options
        hr_size = args.scale * args.lr_chip if source == "worldstrat" else args.hr_size
        assert (hr_size, args.scale) == (cfg.data.hr_size, cfg.data.scale), f"`{line}` vs {config}"
        if source != "synthetic" or "runs/" in args.out:  # runs/quickstart/data etc. are named as such
            assert args.out == cfg.data.root, f"`{line}` writes {args.out}; {config} reads data.root={cfg.data.root}"


def test_every_failure_table_row_names_test_files_that_exist():
    """The README's failure table: each row's last column names its tests, in tests/reliability/ unless a path says
    otherwise."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Failure behaviour"):text.index("## Tests")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| What goes wrong")]
    assert len(rows) > 20
    for row in rows:
        names = re.findall(r"`([^`]+\.py)`", row.rstrip(" |").rsplit("|", 1)[-1])
        assert names, f"no test named in the row '{row[:60]}...'"
        for name in names:
            path = REPO / name if "/" in name else REPO / "tests" / "reliability" / name
            assert path.is_file(), f"{name}, named in the row '{row[:60]}...', does not exist"
