"""The `satdiffmoe` command line: every sub-command has --help; errors are one line, exit 2."""

import subprocess
import sys

import pytest

from satdiffmoe.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: satdiffmoe " + command in capsys.readouterr().out


def test_user_error_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "satdiffmoe.cli", "train", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: config file not found")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_debug_flag_shows_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "satdiffmoe.cli", "--debug", "train", str(tmp_path / "missing.yaml")],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
