"""A model samples with its own sampler settings unless a caller names a key: the Python API and
`satdiffmoe sample` both. The tiny checkpoint was trained with sampler.nfe=3, fusion_every=1
(library defaults: 50 and 5), so a default that leaks through is visible."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from satdiffmoe.cli import main
from satdiffmoe.training.checkpoints import load_task


def test_an_empty_dict_keeps_every_setting_of_the_model(tiny_ckpt):
    pipe = load_task(tiny_ckpt[0]).pipeline
    assert (pipe.config.sampler["nfe"], pipe.config.sampler["fusion_every"]) == (3, 1)
    settings = pipe.sampler_config({})
    assert (settings.nfe, settings.fusion_every) == (3, 1)
    assert settings == pipe.sampler_config()


def test_a_named_key_overrides_only_itself(tiny_ckpt):
    pipe = load_task(tiny_ckpt[0]).pipeline
    settings = pipe.sampler_config({"nfe": 2})
    assert (settings.nfe, settings.fusion_every) == (2, 1)
    assert pipe.sampler_config({"nfe": 2}, guidance_scale=2.0).guidance_scale == 2.0


def test_sampling_with_an_empty_dict_is_sampling_with_the_model_settings(tiny_ckpt):
    pipe = load_task(tiny_ckpt[0]).pipeline
    lr = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    own = pipe(lr, [1.0, -3.0], generator=torch.Generator().manual_seed(1))
    empty = pipe(lr, [1.0, -3.0], sampler={}, generator=torch.Generator().manual_seed(1))
    assert torch.equal(own.image, empty.image) and own.nfe == 3 and len(own.timesteps) == 3


def test_the_sample_command_runs_the_model_settings_and_says_so(tmp_path, tiny_ckpt, capsys):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"lr{i}.png"))
        Image.fromarray(np.full((4, 4, 3), 60 + 40 * i, dtype=np.uint8)).save(paths[-1])
    common = ["sample", "--ckpt", str(tiny_ckpt[0]), "--lr", *paths, "--dt", "3", "5"]
    assert main([*common, "--out", str(tmp_path / "own.png")]) == 0
    own = capsys.readouterr().err
    assert "sampler: nfe=3 " in own and "fusion_every=1 " in own and "overridden here: none" in own
    assert main([*common, "--out", str(tmp_path / "two.png"), "sampler.nfe=2"]) == 0
    two = capsys.readouterr().err
    assert "sampler: nfe=2 " in two and "fusion_every=1 " in two and "overridden here: nfe" in two
