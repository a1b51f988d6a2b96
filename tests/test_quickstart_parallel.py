"""`quickstart` runs independent commands side by side (`_cli_parallel`), and a failure names its log."""

import json

import pytest

from satdiffmoe.commands.quickstart import Quickstart
from satdiffmoe.errors import UserError


def prepare(out, scenes=4):
    return ["prepare", "synthetic", "--out", out, "--num-scenes", scenes, "--hr-size", 16, "--scale", 4,
            "--max-lr", 2, "--seed", 0]


def test_two_commands_run_in_two_processes_with_their_own_logs(tmp_path, capsys):
    quickstart = Quickstart(tmp_path / "q", [], jobs=2)
    quickstart._cli_parallel([("a", prepare(tmp_path / "a")), ("b", prepare(tmp_path / "b", 6))])
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["config"]["num_scenes"] == 4
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["config"]["num_scenes"] == 6
    out = capsys.readouterr().out
    assert "2 commands in 2 processes" in out and "a: done in" in out and "b: done in" in out
    assert (tmp_path / "q" / "logs" / "a.log").stat().st_size > 0


def test_a_failed_command_is_named_with_its_log_after_the_others_finish(tmp_path):
    quickstart = Quickstart(tmp_path / "q", [], jobs=2)
    with pytest.raises(UserError, match=r"quickstart step failed: bad \(error: .*; .*bad\.log\)"):
        quickstart._cli_parallel([("bad", prepare(tmp_path / "x", scenes=0)), ("good", prepare(tmp_path / "g"))])
    assert (tmp_path / "g" / "manifest.json").is_file()
