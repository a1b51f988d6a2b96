"""Loading never runs code from a file: checkpoints and weights go through `torch.load(weights_only=True)`
(or safetensors), configs are parsed by OmegaConf and never `eval`ed.

The malicious file is a real pickle whose `__reduce__` writes a marker file when unpickled; every
entry point that takes a checkpoint must refuse it with one line and leave no marker behind.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch
from reliability_helpers import REPO, TINY_EXPERIMENT

from satdiffmoe.cli import main
from satdiffmoe.config import load_config
from satdiffmoe.errors import UserError
from satdiffmoe.training.checkpoints import load_task

SOURCE_FOLDERS = ("src", "data_prep", "bench")


class Payload:
    """Unpickling this calls `Path.write_text(marker, "pwned")`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "pwned")


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": {"stage": "satdiffmoe", "config": {}}, "x": Payload(marker)},
               path)
    return path


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "marker"
    return malicious_checkpoint(tmp_path / "evil.ckpt", marker), marker


def test_the_payload_really_runs_code_when_loaded_unsafely(evil):
    """Guards the other tests: the file is dangerous, so refusing it means something."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


def test_load_task_rejects_a_pickled_payload_without_running_it(evil):
    path, marker = evil
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_task(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["evaluate", "sample", "train-init", "train-resume"])
def test_every_command_taking_a_checkpoint_refuses_the_payload(command, evil, tmp_path, tiny_runs, capsys):
    path, marker = evil
    common = [str(TINY_EXPERIMENT), f"run_root={tmp_path / 'runs'}", f"data.root={tiny_runs['data']}"]
    if command == "train-resume":
        shutil.copytree(tiny_runs["ae"], tmp_path / "runs" / "tiny" / "ae")
        shutil.copy(path, tmp_path / "runs" / "tiny" / "ae" / "checkpoints" / "last.ckpt")
    argv = {
        "evaluate": ["evaluate", *common, f"ckpt={path}"],
        "sample": ["sample", "--ckpt", str(path), "--lr", str(path), "--dt", "1", "--out", str(tmp_path / "o.tif")],
        "train-init": ["train", *common, "stage=prior", f"init.vae_ckpt={path}"],
        "train-resume": ["train", *common, "stage=autoencoder", "run_id=ae", "resume=true"],
    }[command]
    if command == "sample":  # a valid LR image, so the checkpoint is what gets refused
        from PIL import Image

        Image.new("RGB", (4, 4)).save(tmp_path / "lr.png")
        argv[4] = str(tmp_path / "lr.png")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and "Traceback" not in err
    assert not marker.exists()


def test_a_pretrained_folder_with_a_pickled_payload_is_refused(tmp_path, tiny_runs, capsys):
    """diffusers reads .bin weights with weights_only=True; the refusal must still be one line."""
    marker = tmp_path / "marker"
    folder = tmp_path / "vae"
    load_task(tiny_runs["ae"]).vae.save_pretrained(folder, safe_serialization=False)
    torch.save({"x": Payload(marker)}, folder / "diffusion_pytorch_model.bin")
    code = main(["train", str(TINY_EXPERIMENT), f"run_root={tmp_path / 'runs'}", f"data.root={tiny_runs['data']}",
                 "stage=prior", f"model.vae.pretrained={folder}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and str(folder) in err
    assert not marker.exists()


def test_config_values_that_look_like_code_stay_strings(tmp_path):
    marker = tmp_path / "marker"
    code = f"__import__('pathlib').Path('{marker}').write_text('pwned')"
    plain = "__import__('os').getcwd()"  # eval.name must be a plain file name (no '/'), so no path in it
    cfg = load_config(TINY_EXPERIMENT, [f"name={code}", f"eval.name={plain}"])
    assert cfg.name == code and cfg.eval.name == plain
    with pytest.raises(UserError, match="train.lr"):
        load_config(TINY_EXPERIMENT, [f"train.lr={code}"])
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _python_files():
    for folder in SOURCE_FOLDERS:
        yield from sorted((REPO / folder).rglob("*.py"))


UNSAFE_CALLS = {"eval", "exec", "builtins.eval", "builtins.exec", "pickle.load", "pickle.loads", "dill.load",
                "yaml.load", "yaml.unsafe_load", "torch.jit.load"}


# Reviewed call sites of an otherwise unsafe loader, each with the check that makes it safe.
REVIEWED = {("src/satdiffmoe/evaluation/inception.py", "torch.jit.load"):
            "loads only the file whose SHA-256 is inception.SHA256 (tests/evaluation/test_inception.py)"}


def test_no_module_loads_pickles_unsafely_or_evaluates_strings():
    offences = []
    files = list(_python_files())
    for path in files:
        for call, name in _calls(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(REPO)}:{call.lineno} {name}"
            keywords = {k.arg: k.value for k in call.keywords}
            flag = keywords.get("weights_only" if name == "torch.load" else "allow_pickle")
            if name == "torch.load" and not (isinstance(flag, ast.Constant) and flag.value is True):
                offences.append(f"{where} without weights_only=True")
            elif name in ("np.load", "numpy.load") and isinstance(flag, ast.Constant) and flag.value is True:
                offences.append(f"{where} with allow_pickle=True")
            elif name in UNSAFE_CALLS and (str(path.relative_to(REPO)), name) not in REVIEWED:
                offences.append(where)
    assert len(files) > 30  # the walk really saw the package
    assert offences == []


def test_lightning_resume_path_is_checked_before_lightning_reads_it():
    """Trainer.fit(ckpt_path) defers to torch's default; `train` reads the file with weights_only=True first."""
    source = (REPO / "src/satdiffmoe/commands/train.py").read_text()
    assert "check_fits(ckpt_path, task)" in source
    assert source.index("check_fits(ckpt_path, task)") < source.index("trainer.fit(")
