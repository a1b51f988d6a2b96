"""Two real gloo DDP ranks on CPU: every validation record exactly once, equal training epochs.

One spawn runs every case (process start-up dominates the cost); rank 0 writes what all ranks saw.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from satdiffmoe.config import load_config
from satdiffmoe.data.datamodule import SatDataModule

CASES = {
    # name: (shard folder, extra overrides)
    "even_by_shard": ("even", []),  # 2 shards, 2 ranks: whole shards per rank
    "uneven_by_shard": ("uneven", []),  # 3 shards (4+4+2 records), 2 ranks
    "fewer_shards_than_readers": ("uneven", ["data.num_workers=2"]),  # 3 shards, 2 ranks × 2 workers
    "first_k_subset": ("uneven", ["data.val_subset=5", "data.num_workers=2"]),
}


def _rank_main(rank: int, world_size: int, port: int, root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        results = {}
        for name, (folder, overrides) in CASES.items():
            cfg = load_config(
                None,
                [
                    f"data.root={root}/{folder}",
                    "data.hr_size=32",
                    "data.eval_batch_size=3",
                    "data.val_subset=-1",
                    "data.max_lr=5",
                ]
                + overrides,
            )
            keys = [key for batch in SatDataModule(cfg).val_dataloader() for key in batch["key"]]
            gathered = [None] * world_size
            dist.all_gather_object(gathered, keys)
            results[name] = gathered
        train_cfg = load_config(
            None,
            [
                f"data.root={root}/uneven",
                "data.hr_size=32",
                "data.batch_size=2",
                "data.epoch_length=6",
                "data.shuffle_buffer=4",
            ],
        )
        steps = len(list(SatDataModule(train_cfg).train_dataloader()))
        gathered = [None] * world_size
        dist.all_gather_object(gathered, steps)
        results["train_batches_per_rank"] = gathered
        if rank == 0:
            Path(out).write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_see_each_validation_record_exactly_once(tmp_path, scenes, write_split):
    write_split(tmp_path / "even", scenes[:8], "val", per_shard=4)
    write_split(tmp_path / "uneven", scenes[:10], "val", per_shard=4)
    write_split(tmp_path / "uneven", scenes[:10], "train", per_shard=4)
    out = tmp_path / "seen.json"
    # fork, like Lightning's ddp launcher leaves DataLoader workers: mp.spawn would make every worker
    # re-import torch (the splitting itself is the same either way)
    mp.start_processes(
        _rank_main, args=(2, _free_port(), str(tmp_path), str(out)), nprocs=2, join=True, start_method="fork"
    )
    seen = json.loads(out.read_text())

    keys = [s.key for s in scenes]
    expected = {
        "even_by_shard": keys[:8],
        "uneven_by_shard": keys[:10],
        "fewer_shards_than_readers": keys[:10],
        "first_k_subset": keys[:5],
    }
    for name, wanted in expected.items():
        per_rank = seen[name]
        union = per_rank[0] + per_rank[1]
        assert sorted(union) == sorted(wanted), name  # nothing lost, nothing duplicated
        assert per_rank[0] and per_rank[1], name  # both ranks did work
    assert seen["train_batches_per_rank"] == [3, 3]  # uneven shards, equal epochs: no rank waits forever
