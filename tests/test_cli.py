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


def test_overrides_may_follow_the_options():
    from satdiffmoe.cli import build_parser, parse_args

    parser = build_parser()
    args = parse_args(parser, ["sweep", "s.yaml", "a=1", "--out", "d", "b.c=2", "--workers", "2", "d=[x,y]"])
    assert args.overrides == ["a=1", "b.c=2", "d=[x,y]"] and args.out == "d" and args.workers == 2
    args = parse_args(parser, ["sample", "--ckpt", "c", "--lr", "a.png", "--dt", "1", "--seed", "3", "sampler.nfe=2",
                               "--out", "o.png"])
    assert args.overrides == ["sampler.nfe=2"] and args.seed == 3


@pytest.mark.parametrize("argv", [["sweep", "s.yaml", "--out", "d", "--nope"], ["sweep", "s.yaml", "--out", "d", "x"],
                                  ["prepare", "synthetic", "--out", "d", "a=1"]])
def test_stray_arguments_are_still_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
