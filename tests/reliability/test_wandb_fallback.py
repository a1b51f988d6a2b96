"""`WANDB_MODE=online` without a reachable, logged-in W&B: one warning line, offline run, exit 0.

Before, an unreachable server blocked `wandb.init` for 90 s and then raised CommError from inside
fit; no API key raised UsageError. Both were tracebacks.
"""

from __future__ import annotations

from pathlib import Path

from reliability_helpers import run_cli, tiny_args

FAKE_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 hex chars: wandb accepts its form
CLOSED_PORT = "http://127.0.0.1:9"  # discard port: nothing listens, the connection is refused


def _train_online(tmp_path: Path, tiny_data: Path, **env: str):
    home = tmp_path / "home"  # no ~/.netrc, no wandb settings of the machine's user
    home.mkdir()
    result = run_cli(["train", *tiny_args(tmp_path / "runs", tiny_data, "stage=autoencoder", run_id="r")],
                     WANDB_MODE="online", HOME=str(home), WANDB_CONFIG_DIR=str(home / ".config" / "wandb"), **env)
    return result, tmp_path / "runs" / "tiny" / "r"


def _fallback_warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if "W&B online failed" in line]


def test_unreachable_wandb_server_falls_back_to_offline_with_one_warning(tmp_path, tiny_data):
    result, run = _train_online(tmp_path, tiny_data, WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=CLOSED_PORT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert len(_fallback_warnings(output)) == 1, output[-3000:]
    assert "offline" in _fallback_warnings(output)[0]
    assert "Traceback" not in output
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_wandb_online_without_login_falls_back_to_offline_with_one_warning(tmp_path, tiny_data):
    result, run = _train_online(tmp_path, tiny_data, WANDB_API_KEY="")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    warnings = _fallback_warnings(output)
    assert len(warnings) == 1 and "API key" in warnings[0], output[-3000:]
    assert "Traceback" not in output and "UsageError" not in output
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
