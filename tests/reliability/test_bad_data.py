"""Bad data never crashes or hangs a run: each bad record or shard is a counted skip with a summary,
and data that cannot work at all is one clear error naming the file.

Damage is injected into copies of real shards written by `satdiffmoe prepare`; the runs are the real
`satdiffmoe train` and `satdiffmoe evaluate` commands.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from reliability_helpers import tiny_args

from satdiffmoe.cli import main


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def bad_variants(good: dict) -> dict:
    """One damaged copy of a good raw record per kind of damage, keyed by the damage."""
    hr, lr = np.load(io.BytesIO(good["hr.npy"])), np.load(io.BytesIO(good["lr.npy"]))
    nan_hr = hr.astype(np.float32)
    nan_hr[0, 0, 0] = np.nan
    inf_lr = lr.astype(np.float32)
    inf_lr[0, 0, 0, 0] = np.inf
    meta = json.loads(good["json"])
    return {
        "missing-lr": {k: v for k, v in good.items() if k != "lr.npy"},
        "missing-json": {k: v for k, v in good.items() if k != "json"},
        "wrong-lr-shape": dict(good, **{"lr.npy": npy(lr[..., :3, :3])}),
        "nan-pixels": dict(good, **{"hr.npy": npy(nan_hr)}),
        "inf-pixels": dict(good, **{"lr.npy": npy(inf_lr)}),
        "wrong-dtype": dict(good, **{"hr.npy": npy(hr.astype(np.int64))}),
        "garbage-npy": dict(good, **{"hr.npy": b"\x93NUMPY garbage"}),
        "dt-count-mismatch": dict(good, json=json.dumps(dict(meta, lr_dt=[1.0] * (lr.shape[0] + 1))).encode()),
    }


def records(shard: Path) -> list:
    return list(wds.DataPipeline(wds.SimpleShardList([str(shard)]), wds.tarfile_to_samples()))


def write_shard(path: Path, samples: list) -> None:
    with wds.TarWriter(str(path)) as tar:
        for sample in samples:
            tar.write({k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"})


def damaged_copy(source: Path, target: Path) -> dict:
    """Copy of the shard folder with every kind of bad record in each split and one truncated train shard."""
    shutil.copytree(source, target)
    injected = {}
    for split in ("train", "val", "test"):
        shard = min(target.glob(f"{split}-*.tar"))
        good = records(shard)
        bad = [dict(sample, __key__=f"{name}-{split}") for name, sample in bad_variants(good[0]).items()]
        # bad records after the first good one: the first record is checked up front (fail fast)
        write_shard(shard, good[:1] + bad + good[1:])
        injected[split] = len(bad)
    truncated = max(target.glob("train-*.tar"))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    return injected


@pytest.fixture(scope="module")
def damaged(tiny_runs, tmp_path_factory):
    target = tmp_path_factory.mktemp("damaged") / "synth"
    return target, damaged_copy(tiny_runs["data"], target)


def test_training_on_damaged_shards_finishes_and_counts_the_skips(damaged, tiny_runs, tmp_path, caplog):
    data, injected = damaged
    caplog.set_level(logging.WARNING)
    assert main(["train", *tiny_args(tmp_path, data, "stage=autoencoder", "train.max_steps=12",
                                     "train.val_every=6", "data.val_subset=16", run_id="bad")]) == 0
    log = [json.loads(line) for line in (tmp_path / "tiny" / "bad" / "metrics.jsonl").read_text().splitlines()]
    skipped_val = [r["data/skipped_val"] for r in log if "data/skipped_val" in r]
    skipped_train = [r["data/skipped_train"] for r in log if "data/skipped_train" in r]
    assert skipped_val and skipped_val[0] == injected["val"]  # every bad val record, counted once per pass
    assert skipped_train and max(skipped_train) >= 1
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert "skipped" in reasons and "wrong-lr-shape-val" in reasons and "nan-pixels-val" in reasons


def test_evaluation_skips_bad_test_records_and_scores_the_rest(damaged, tiny_runs, tmp_path, caplog, capsys):
    data, injected = damaged
    caplog.set_level(logging.WARNING)
    capsys.readouterr()
    assert main(["evaluate", *tiny_args(tmp_path, data, f"ckpt={tiny_runs['sdm']}", "data.test_subset=-1",
                                        "eval.name=damaged")]) == 0
    written = Path(capsys.readouterr().out.strip().splitlines()[-1])  # run_root= puts it under tmp_path
    assert written.name == "damaged.json"
    summary = json.loads(written.read_text())
    good_test_scenes = json.loads((data / "manifest.json").read_text())["counts"]["test"]
    assert summary["num_scenes"] == good_test_scenes  # nothing silently dropped, nothing bad scored
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"skipped {{'record': {injected['test']}}}" in messages  # the per-pass summary


@pytest.mark.parametrize("damage", ["truncated-first-shard", "all-records-bad", "not-a-tar", "empty-file"])
def test_unusable_first_shard_is_one_error_naming_the_file(damage, tiny_runs, tmp_path, capsys):
    data = tmp_path / "synth"
    shutil.copytree(tiny_runs["data"], data)
    shard = min(data.glob("train-*.tar"))
    if damage == "truncated-first-shard":
        shard.write_bytes(shard.read_bytes()[:700])
    elif damage == "all-records-bad":
        write_shard(shard, [bad_variants(r)["wrong-dtype"] for r in records(shard)])
    elif damage == "not-a-tar":
        shard.write_bytes(b"this is not a tar file\n" * 100)
    else:
        shard.write_bytes(b"")
    code = main(["train", *tiny_args(tmp_path, data, "stage=autoencoder", "train.max_steps=2")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(shard) in err.strip().splitlines()[-1]


@pytest.mark.parametrize("shards, fragment", [
    ("{data}/train-00000{{0..5}}.tar", "train-000003.tar does not exist"),
    ("{data}/nothing-*.tar", "no train shards match"),
    ("{data}/val-*.tar", None),  # a real shard list of another split still trains: not an error
])
def test_shard_lists_with_missing_files(shards, fragment, tiny_runs, tmp_path, capsys):
    spec = shards.format(data=tiny_runs["data"])
    code = main(["train", *tiny_args(tmp_path, tiny_runs["data"], "stage=autoencoder", "train.max_steps=1",
                                     f"data.shards.train={spec}")])
    err = capsys.readouterr().err
    if fragment is None:
        assert code == 0
    else:
        assert code == 2 and fragment in err and "Traceback" not in err


def test_every_kind_of_damage_is_a_distinct_record():
    good = {"__key__": "k", "hr.npy": npy(np.zeros((3, 16, 16), np.uint8)),
            "lr.npy": npy(np.zeros((2, 3, 4, 4), np.uint8)), "json": b"{}"}
    variants = bad_variants(good)
    assert len(variants) == 8 and all(v != good for v in variants.values())


@pytest.mark.parametrize("workers", [0, 1])
def test_training_stops_with_one_error_when_only_bad_records_follow(workers, tiny_runs, tmp_path, capsys):
    """One good record up front (it passes the fail-fast check), then nothing readable: the run must
    stop after data.max_consecutive_skips skips in a row, also from inside a DataLoader worker."""
    data = tmp_path / "synth"
    shutil.copytree(tiny_runs["data"], data)
    for shard in data.glob("train-*.tar"):
        good = records(shard)
        write_shard(shard, good[:1] + [dict(bad_variants(r)["nan-pixels"], __key__=f"nan-{i}")
                                       for i, r in enumerate(good * 4)])
    code = main(["train", *tiny_args(tmp_path, data, "stage=autoencoder", "train.max_steps=50",
                                     "data.max_consecutive_skips=12", f"data.num_workers={workers}")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 12 train records/shards in a row could not be read") and "nan" in last.lower(), last
