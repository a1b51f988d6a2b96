"""Bad input everywhere a user types: one readable `error:` line, exit code 2, no traceback.

Every case goes through the real CLI entry point (`satdiffmoe.cli.main`, in process) against real
shards and real checkpoints. `{data}`, `{ae}`, `{sdm}`, `{tmp}`, `{file}` and `{tiny}` in a case are
replaced by the tiny shard folder, the autoencoder and SatDiffMoE run folders, a fresh folder, a
plain text file and the tiny experiment file; `{root}` is the run root holding `ae` and `sdm`.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from reliability_helpers import TINY_EXPERIMENT, run_cli

from satdiffmoe.cli import main
from satdiffmoe.errors import UserError

TRAIN = ["train", "{tiny}", "run_root={tmp}/runs", "data.root={data}"]
EVAL = ["evaluate", "{tiny}", "run_root={tmp}/runs", "data.root={data}"]
SAMPLE = ["sample", "--ckpt", "{sdm}", "--lr", "{tmp}/a.png", "{tmp}/b.png", "--dt", "-10", "5", "--out", "{tmp}/sr.png"]

# (case id, argv, a fragment the one-line message must contain)
CASES = [
    # configs: keys and types
    ("unknown-top-level-key", TRAIN + ["stag=prior"], "unknown config key 'stag'"),
    ("unknown-nested-key", TRAIN + ["sampler.nfee=5"], "did you mean 'sampler.nfe'"),
    ("wrong-type-float", TRAIN + ["train.lr=fast"], "train.lr"),
    ("wrong-type-int", TRAIN + ["data.hr_size=big"], "data.hr_size"),
    ("wrong-type-bool", TRAIN + ["resume=maybe"], "resume"),
    ("override-without-equals", TRAIN + ["train.lr"], "dotted.key=value"),
    ("unknown-key-in-file", ["train", "{tmp}/typo.yaml"], "did you mean 'train.max_steps'"),
    ("config-file-missing", ["train", "{tmp}/nope.yaml"], "config file not found"),
    ("config-not-a-mapping", ["train", "{tmp}/list.yaml"], "YAML mapping"),
    ("config-yaml-syntax", ["train", "{tmp}/broken.yaml"], "cannot parse config"),
    ("config-extends-cycle", ["train", "{tmp}/cycle.yaml"], "extends itself"),
    # configs: impossible values
    ("scale-not-dividing-hr", TRAIN + ["data.scale=3"], "does not divide data.hr_size"),
    ("nfe-zero", EVAL + ["ckpt={sdm}", "sampler.nfe=0"], "sampler.nfe must be >= 1"),
    ("nfe-above-train-steps", EVAL + ["ckpt={sdm}", "sampler.nfe=500"], "exceeds diffusion.num_train_timesteps"),
    ("negative-fusion-every", EVAL + ["ckpt={sdm}", "sampler.fusion_every=-1"], "sampler.fusion_every"),
    ("unknown-stage", TRAIN + ["stage=gan"], "stage 'gan'"),
    ("unknown-consensus", EVAL + ["ckpt={sdm}", "sampler.consensus=median"], "sampler.consensus"),
    ("pull-outside-0-1", EVAL + ["ckpt={sdm}", "sampler.pull=2"], "sampler.pull"),
    ("ema-decay-one", TRAIN + ["train.ema_decay=1.0"], "train.ema_decay"),
    ("num-lr-zero", EVAL + ["ckpt={sdm}", "data.num_lr=0"], "data.num_lr"),
    ("num-lr-above-available", EVAL + ["ckpt={sdm}", "data.num_lr=9", "data.max_lr=9"], "data.num_lr"),
    ("channels-not-in-shards", TRAIN + ["stage=autoencoder", "data.channels=4"], "does not fit the config"),
    # runs, data and checkpoints
    ("resume-without-run-id", TRAIN + ["resume=true"], "needs the run_id"),
    ("resume-unknown-run", TRAIN + ["resume=true", "run_id=never"], "does not exist"),
    ("train-ckpt-missing", TRAIN + ["ckpt={tmp}/none.ckpt"], "not a checkpoint file"),
    ("data-root-missing", TRAIN + ["stage=autoencoder", "data.root={tmp}/no_data"], "{tmp}/no_data"),
    ("run-root-not-writable", TRAIN + ["run_root={file}/runs"], "cannot create run folder"),
    ("init-vae-not-a-checkpoint", TRAIN + ["stage=prior", "init.vae_ckpt={file}"], "cannot read checkpoint"),
    ("init-prior-of-another-stage", TRAIN + ["stage=satdiffmoe", "init.prior_ckpt={ae}"], "'autoencoder' checkpoint"),
    ("evaluate-without-ckpt", EVAL, "evaluate needs a model"),
    ("evaluate-ckpt-of-another-stage", EVAL + ["ckpt={ae}"], "autoencoder"),
    ("train-ckpt-of-another-stage", TRAIN + ["stage=satdiffmoe", "init.vae_ckpt={ae}", "ckpt={ae}"],
     "'autoencoder' checkpoint"),
    ("train-ckpt-of-another-size", TRAIN + ["stage=autoencoder", "ckpt={ae}", "model.vae.block_out_channels=[16,32]"],
     "does not fit this model"),
    ("train-ckpt-garbage", TRAIN + ["stage=autoencoder", "ckpt={file}"], "cannot read checkpoint"),
    # sample
    ("sample-dt-count-mismatch", SAMPLE[:8] + ["--out", "{tmp}/sr.png"], "2 --lr images but 1 --dt"),
    ("sample-override-swallowed-by-dt", SAMPLE[:9] + ["sampler.nfe=2"] + SAMPLE[9:], "put key=value overrides before --lr/--dt"),
    ("sample-value-max-not-positive", SAMPLE + ["--value-max", "0"], "--value-max must be positive"),
    ("sample-dt-not-a-number", SAMPLE[:7] + ["soon", "5", "--out", "{tmp}/sr.png"], "--dt value 'soon'"),
    ("sample-lr-missing", ["sample", "--ckpt", "{sdm}", "--lr", "{tmp}/gone.png", "--dt", "1", "--out", "{tmp}/sr.png"],
     "gone.png"),
    ("sample-out-not-writable", SAMPLE[:10] + ["{file}/sr.png"], "not writable"),
    ("sample-out-bad-suffix", SAMPLE[:10] + ["{tmp}/sr.jpg"], ".tif"),
    ("sample-ckpt-of-another-stage", ["sample", "--ckpt", "{ae}"] + SAMPLE[3:], "'autoencoder' checkpoint"),
    ("sample-ckpt-garbage", ["sample", "--ckpt", "{file}"] + SAMPLE[3:], "cannot read checkpoint"),
    ("sample-lr-sizes-differ", SAMPLE[:4] + ["{tmp}/a.png", "{tmp}/big.png"] + SAMPLE[6:], "must share size"),
    ("sample-nfe-zero", SAMPLE + ["sampler.nfe=0"], "sampler.nfe must be >= 1"),
    # sweep, report, prepare
    ("sweep-file-missing", ["sweep", "{tmp}/nosweep.yaml"], "nosweep.yaml"),
    ("sweep-workers-zero", ["sweep", "{tmp}/sweep.yaml", "--workers", "0", "--out", "{tmp}/sw"], "--workers"),
    ("sweep-param-not-a-config-key", ["sweep", "{tmp}/badparam.yaml", "--out", "{tmp}/sw"], "sampler.nfee"),
    ("sweep-storage-unknown-scheme", ["sweep", "{tmp}/sweep.yaml", "--storage", "mongo://x", "--out", "{tmp}/sw"],
     "mongo://x"),
    ("sweep-ddp-with-workers", ["sweep", "{tmp}/ddp.yaml", "--workers", "2", "--out", "{tmp}/sw"],
     "--workers 2 with train.devices > 1"),
    ("sweep-ddp-journal-storage", ["sweep", "{tmp}/ddp.yaml", "--storage", "journal:{tmp}/j.log", "--out", "{tmp}/sw"],
     "needs an RDB storage"),
    ("sweep-ddp-spawn-strategy", ["sweep", "{tmp}/ddp_spawn.yaml", "--out", "{tmp}/sw"], "under torchrun"),
    ("sweep-ddp-several-nodes-without-torchrun", ["sweep", "{tmp}/ddp.yaml", "--out", "{tmp}/sw",
                                                  "base_overrides=[train.devices=2,train.num_nodes=2]"],
     "start this command under torchrun on every node"),
    ("report-run-folder-missing", ["report", "--runs", "{tmp}/norun", "--out", "{tmp}/rep"], "norun"),
    ("prepare-unknown-source", ["prepare", "landsat9", "--out", "{tmp}/d"], "known sources"),
    ("prepare-shard-size-zero", ["prepare", "synthetic", "--out", "{tmp}/d", "--shard-size", "0"], "--shard-size"),
    # round two (issue 15): values that used to give wrong results silently, before any compute
    ("sample-value-max-inf", SAMPLE + ["--value-max", "inf"], "--value-max must be positive and finite"),
    ("sample-guidance-scale-nan", SAMPLE + ["sampler.guidance_scale=nan"], "sampler.guidance_scale=nan is not a finite"),
    ("train-lr-inf", TRAIN + ["train.lr=inf"], "train.lr=inf is not a finite number"),
    ("log-every-zero", TRAIN + ["train.log_every=0"], "train.log_every must be >= 1"),
    ("val-nfe-above-train-steps", TRAIN + ["train.val_nfe=5000"], "train.val_nfe=5000 must be between 1 and"),
    ("num-workers-absurd", TRAIN + ["data.num_workers=1000"], "data.num_workers=1000 is more than 4x"),
    ("beta-schedule-unknown", TRAIN + ["diffusion.beta_schedule=bogus"], "diffusion.beta_schedule 'bogus'"),
    ("lr-scenes-of-one-pixel", TRAIN + ["data.hr_size=4"], "gives 1 px LR images"),
    ("eval-name-of-a-reference", EVAL + ["ckpt={sdm}", "eval.name=mean_bicubic_n2", "eval.references=true"],
     "is the name of the mean_bicubic reference's result"),
    ("eval-name-of-the-autoencoder-reference", EVAL + ["ckpt={sdm}", "eval.name=autoencoder_reconstruction_n2"],
     "is the name of the autoencoder_reconstruction reference's result"),
    ("eval-name-with-a-slash", EVAL + ["ckpt={sdm}", "eval.name=a/b"], "must be a plain file name"),
    ("evaluate-model-override-ignored", EVAL + ["ckpt={sdm}", "model.unet.dropout=0.5"],
     "override model.unet.dropout cannot apply"),
    ("evaluate-hr-size-of-another-model", EVAL + ["ckpt={sdm}", "data.hr_size=32"],
     "was trained with data.hr_size=16 but this evaluation has data.hr_size=32"),
    ("sample-out-is-an-input", SAMPLE[:10] + ["{tmp}/b.png"], "is also an input (--lr {tmp}/b.png)"),
    ("sample-uncertainty-is-out", SAMPLE + ["--uncertainty", "{tmp}/sr.png"], "are the same file"),
    ("sample-out-is-a-folder", SAMPLE[:10] + ["{tmp}"], "is a folder"),
    ("sample-lr-crs-differ", SAMPLE[:4] + ["{tmp}/utm.tif", "{tmp}/wgs84.tif"] + SAMPLE[6:], "in CRS EPSG:4326"),
    ("sample-lr-400-km-apart", SAMPLE[:4] + ["{tmp}/utm.tif", "{tmp}/far.tif"] + SAMPLE[6:],
     "origins 4e+04 px apart"),
    ("sample-lr-10-and-20-m-pixels", SAMPLE[:4] + ["{tmp}/utm.tif", "{tmp}/coarse.tif"] + SAMPLE[6:],
     "pixels of 20×20 vs 10×10"),
    ("sample-png-with-a-geotiff", SAMPLE[:4] + ["{tmp}/a.png", "{tmp}/utm.tif"] + SAMPLE[6:],
     "a.png has no georeference but"),
    ("sample-uint16-lr-for-an-8-bit-model", SAMPLE[:4] + ["{tmp}/u16.tif", "{tmp}/u16b.tif"] + SAMPLE[6:],
     "100 % of its values lie outside the training LR interval"),
    ("sample-float-lr-beyond-value-max", SAMPLE[:4] + ["{tmp}/reflectance.tif", "{tmp}/utm.tif"] + SAMPLE[6:]
     + ["--value-max", "1"], "Pass --value-max 1e+06"),
    ("sample-float-lr-to-a-png", SAMPLE[:4] + ["{tmp}/reflectance.tif", "{tmp}/reflectance2.tif"] + SAMPLE[6:]
     + ["--value-max", "1e6"], "the LR images hold float values, and the output is written as float32"),
    ("sample-lr-given-twice", SAMPLE[:4] + ["{tmp}/a.png", "{tmp}/a.png"] + SAMPLE[6:], "is the same file as"),
    ("train-run-id-reused-without-resume", TRAIN + ["run_root={root}", "run_id=sdm"], "already holds a run"),
    ("prepare-into-non-empty-folder", ["prepare", "synthetic", "--out", "{tmp}/full"], "is not empty"),
    ("prepare-out-is-a-file", ["prepare", "synthetic", "--out", "{file}"], "is a file, not a folder"),
    ("prepare-scale-leaves-one-pixel", ["prepare", "synthetic", "--out", "{tmp}/d", "--hr-size", "8", "--scale", "8"],
     "leave LR images of at least 2 px"),
    ("prepare-hr-size-below-8", ["prepare", "synthetic", "--out", "{tmp}/d", "--hr-size", "4", "--scale", "4"],
     "--hr-size 4 is too small"),
    # round two: library errors that used to surface as tracebacks
    ("config-extends-not-a-file-name", ["train", "{tmp}/extends5.yaml"], "extends: in"),
    ("config-interpolation-to-missing-key", TRAIN + ["train.lr=${{nonexistent.key}}"], "does not resolve"),
    ("config-empty", ["train", "{tmp}/empty.yaml"], "is empty"),
    ("train-devices-zero", TRAIN + ["stage=autoencoder", "train.devices=0"], "invalid train.accelerator/devices/precision"),
    ("train-precision-unknown", TRAIN + ["stage=autoencoder", "train.precision=17"], "invalid train.accelerator/devices/precision"),
    ("data-root-is-a-file", TRAIN + ["stage=autoencoder", "data.root={tmp}/a.png"], "is a file, not a folder of shards"),
    ("sweep-objective-not-computed", ["sweep", "{tmp}/badobjective.yaml", "--out", "{tmp}/sw"],
     "objective metric 'sharpness'"),
    ("sweep-out-is-a-file", ["sweep", "{tmp}/sweep.yaml", "--out", "{file}"], "cannot create sweep folder"),
    ("report-out-is-a-file", ["report", "--evals", "{tmp}", "--out", "{file}"], "is a file"),
    # round three: paths
    ("run-id-leaves-run-root", TRAIN + ["run_id=../../escaped"], "run_id='../../escaped' must be a plain file name"),
    ("run-id-nests-a-folder", EVAL + ["ckpt={sdm}", "run_id=a/b"], "run_id='a/b' must be a plain file name"),
    ("report-study-is-not-a-study", ["report", "--study", "{tmp}/full", "--out", "{tmp}/r"],
     "is neither an Optuna study"),
    ("sweep-choice-of-the-wrong-type", ["sweep", "{tmp}/badchoice.yaml", "--out", "{tmp}/sw"],
     "has the choice 'ten', which sampler.nfe cannot hold"),
    ("score-without-ref-or-lr", ["score", "--pred", "{tmp}/a.png", "--metrics", "psnr"], "nothing to score --pred"),
    # round three: every value checked where it enters (CLI numbers, list-valued keys, sweep fields, storage URLs)
    ("sample-seed-negative", SAMPLE + ["--seed", "-1"], "--seed=-1 is not a seed; give an integer from 0 to"),
    ("sample-seed-beyond-torch", SAMPLE + ["--seed", str(2 ** 64)], f"--seed={2 ** 64} is not a seed"),
    ("sample-dt-garbage", SAMPLE[:7] + ["1e", "5", "--out", "{tmp}/sr.png"], "--dt value '1e' is not a number"),
    ("train-seed-negative", TRAIN + ["seed=-1"], "seed=-1 is not a seed"),
    ("eval-seeds-empty", EVAL + ["ckpt={sdm}", "eval.seeds=[]"], "eval.seeds is empty"),
    ("batch-size-beyond-memory", TRAIN + ["data.batch_size=100000000"],
     "data.batch_size=100000000 needs about"),
    ("eval-batch-size-beyond-memory", EVAL + ["ckpt={sdm}", "data.eval_batch_size=100000000"],
     "more than this machine's"),
    ("batch-size-zero", TRAIN + ["data.batch_size=0"], "data.batch_size and data.eval_batch_size must be >= 1"),
    ("unet-levels-empty", TRAIN + ["model.unet.block_out_channels=[]"], "model.unet.block_out_channels is empty"),
    ("vae-level-of-zero-channels", TRAIN + ["model.vae.block_out_channels=[0,32]"],
     "model.vae.block_out_channels=[0, 32] must be positive multiples of model.vae.norm_num_groups=4"),
    ("unet-levels-without-attention-levels", TRAIN + ["model.unet.attention_levels=[]"],
     "model.unet.attention_levels has 0 entries"),
    ("vae-latent-channels-zero", TRAIN + ["model.vae.latent_channels=0"], "model.vae.latent_channels must be >= 1"),
    ("sweep-params-a-list", ["sweep", "{tmp}/paramlist.yaml", "--out", "{tmp}/sw"], "must map config keys to search"),
    ("sweep-param-a-bare-value", ["sweep", "{tmp}/parambare.yaml", "--out", "{tmp}/sw"],
     "params.sampler.nfe in {tmp}/parambare.yaml must be a mapping"),
    ("sweep-choices-not-a-list", ["sweep", "{tmp}/sweep.yaml", "--out", "{tmp}/sw", "params={{sampler.nfe: {{choices: 5}}}}"],
     "params.sampler.nfe.choices in command-line overrides must be a list of values"),
    ("sweep-param-without-choices", ["sweep", "{tmp}/nochoices.yaml", "--out", "{tmp}/sw"], "has no choices"),
    ("sweep-param-empty-choices", ["sweep", "{tmp}/emptychoices.yaml", "--out", "{tmp}/sw"], "has no choices"),
    ("sweep-n-trials-zero", ["sweep", "{tmp}/sweep.yaml", "--out", "{tmp}/sw", "n_trials=0"], "n_trials must be >= 1"),
    ("sweep-n-trials-not-an-int", ["sweep", "{tmp}/sweep.yaml", "--out", "{tmp}/sw", "n_trials=many"],
     "bad value for config key 'n_trials'"),
    ("sweep-sampler-seed-negative", ["sweep", "{tmp}/sweep.yaml", "--out", "{tmp}/sw", "sampler.seed=-1"],
     "sampler.seed=-1 is not a seed"),
    ("sweep-storage-in-memory", ["sweep", "{tmp}/sweep.yaml", "--storage", "sqlite://", "--out", "{tmp}/sw"],
     "a sweep needs a file or server storage"),
    ("sweep-journal-folder-cannot-exist", ["sweep", "{tmp}/sweep.yaml", "--storage", "journal:{file}/j.log",
                                           "--out", "{tmp}/sw"], "its folder cannot be created"),
]
if not torch.cuda.is_available():  # Lightning's MisconfigurationException on a CPU machine
    CASES.append(("train-accelerator-gpu-without-one", TRAIN + ["stage=autoencoder", "train.accelerator=gpu"],
                  "invalid train.accelerator/devices/precision"))


def _write_inputs(tmp, tiny_runs):
    (tmp / "plain.txt").write_text("not a checkpoint\n")
    (tmp / "typo.yaml").write_text(f"extends: {TINY_EXPERIMENT}\ntrain: {{max_step: 3}}\n")
    (tmp / "list.yaml").write_text("- a\n- b\n")
    (tmp / "broken.yaml").write_text("train: {max_steps: 3\n")
    (tmp / "cycle.yaml").write_text("extends: cycle.yaml\n")
    for name, size in (("a.png", 4), ("b.png", 4), ("big.png", 8)):
        Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(tmp / name)
    for name, crs, transform in (("utm.tif", "EPSG:32633", (10, 0, 500000, 0, -10, 4000000)),
                                 ("wgs84.tif", "EPSG:4326", (10, 0, 500000, 0, -10, 4000000)),
                                 ("far.tif", "EPSG:32633", (10, 0, 900000, 0, -10, 4000000)),  # 400 km east
                                 ("coarse.tif", "EPSG:32633", (20, 0, 500000, 0, -20, 4000000))):  # 20 m pixels
        with rasterio.open(tmp / name, "w", driver="GTiff", width=4, height=4, count=3, dtype="uint8", crs=crs,
                           transform=rasterio.Affine(*transform)) as image:
            image.write(np.full((3, 4, 4), 120, np.uint8))
    for name, values in (("u16.tif", np.full((3, 4, 4), 40000, np.uint16)),  # a 0..255 model: 100 % clipped
                         ("u16b.tif", np.full((3, 4, 4), 30000, np.uint16)),
                         ("reflectance.tif", np.full((3, 4, 4), 1e6, np.float64)),
                         ("reflectance2.tif", np.full((3, 4, 4), 5e5, np.float64))):
        with rasterio.open(tmp / name, "w", driver="GTiff", width=4, height=4, count=3, dtype=values.dtype.name,
                           crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500000, 0, -10, 4000000)) as image:
            image.write(values)
    (tmp / "extends5.yaml").write_text("extends: 5\n")
    (tmp / "empty.yaml").write_text("# nothing but a comment\n")
    (tmp / "full").mkdir()
    (tmp / "full" / "train-000000.tar").write_bytes(b"old shard")
    sweep = (f"study: bad\nconfig: {TINY_EXPERIMENT}\nckpt: {tiny_runs['sdm']}\n"
             f"base_overrides: ['data.root={tiny_runs['data']}']\nobjectives: [{{metric: psnr, direction: maximize}}]\n"
             "sampler: {name: grid}\n")
    (tmp / "sweep.yaml").write_text(sweep + "params: {sampler.nfe: {choices: [1, 2]}}\n")
    (tmp / "badchoice.yaml").write_text(sweep + "params: {sampler.nfe: {choices: [1, ten]}}\n")
    (tmp / "paramlist.yaml").write_text(sweep + "params: [sampler.nfe, 1, 2]\n")
    (tmp / "parambare.yaml").write_text(sweep + "params: {sampler.nfe: 3}\n")
    (tmp / "nochoices.yaml").write_text(sweep + "params: {sampler.nfe: {type: categorical}}\n")
    (tmp / "emptychoices.yaml").write_text(sweep + "params: {sampler.nfe: {choices: []}}\n")
    (tmp / "badparam.yaml").write_text(sweep + "params: {sampler.nfee: {choices: [1, 2]}}\n")
    (tmp / "badobjective.yaml").write_text(sweep.replace("metric: psnr", "metric: sharpness")
                                           + "params: {sampler.nfe: {choices: [1, 2]}}\n")
    ddp = (f"study: ddp\nkind: train\nconfig: {TINY_EXPERIMENT}\nparams: {{train.lr: {{choices: [0.001]}}}}\n"
           "objectives: [{metric: psnr, direction: maximize}]\nsampler: {name: grid}\n")
    (tmp / "ddp.yaml").write_text(ddp + "base_overrides: [train.devices=2, train.strategy=ddp]\n")
    (tmp / "ddp_spawn.yaml").write_text(ddp + "base_overrides: [train.devices=2, train.strategy=ddp_spawn]\n")


def _fill(arg: str, tmp, tiny_runs) -> str:
    return arg.format(tiny=TINY_EXPERIMENT, tmp=tmp, data=tiny_runs["data"], ae=tiny_runs["ae"],
                      sdm=tiny_runs["sdm"], file=tmp / "plain.txt", root=tiny_runs["root"])


def test_the_table_has_at_least_30_distinct_cases():
    assert len({case for case, _, _ in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_no_traceback(case, argv, fragment, tmp_path, tiny_runs, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    _write_inputs(tmp_path, tiny_runs)
    capsys.readouterr()
    code = main([_fill(a, tmp_path, tiny_runs) for a in argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    assert _fill(fragment, tmp_path, tiny_runs) in errors[0]


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_an_invalid_wandb_mode_in_the_environment_is_one_line_before_anything_is_made(command, tmp_path, tiny_runs,
                                                                                      capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "sometimes")  # wandb.init would fail with a pydantic traceback
    _write_inputs(tmp_path, tiny_runs)
    argv = {"train": [*TRAIN, "stage=autoencoder"], "sweep": ["sweep", "{tmp}/sweep.yaml", "--out", "{tmp}/sw"]}
    capsys.readouterr()
    assert main([_fill(a, tmp_path, tiny_runs) for a in argv[command]]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "WANDB_MODE='sometimes'" in errors[0], errors
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sw").exists()


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    plain = run_cli(["train", str(tmp_path / "missing.yaml")])
    assert plain.returncode == 2
    expected = (f"error: config file not found: {tmp_path / 'missing.yaml'} "
                "(configs live in experiments/, e.g. experiments/quickstart.yaml)")
    assert plain.stderr.strip().splitlines() == [expected]


def test_debug_raises_the_error_with_its_traceback(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        main(["--debug", "train", str(tmp_path / "missing.yaml")])
