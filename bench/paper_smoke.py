"""`make paper-smoke`: the paper-shape configs run end to end at the real width, on CPU.

    python bench/paper_smoke.py --out runs/paper_smoke          # what `make paper-smoke` runs

1. Writes a local Stable Diffusion 2.1-base folder with random weights: diffusers'
   `UNet2DConditionModel` and `AutoencoderKL` built from the config values published with
   stabilityai/stable-diffusion-2-1-base (SD21_BASE_UNET / SD21_BASE_VAE below, f = 8, 865M + 84M
   parameters), its noise schedule, and no text encoder: the denoisers then condition on
   `model.null_tokens` learned tokens, so nothing (no tokenizer either) is downloaded.
2. Synthetic shards at 256 px HR, ×4 (the paper's WorldStrat shape: 32×32×4 latents).
3. The real commands on experiments/sd_worldstrat.yaml and experiments/baselines/controlnet_sd_worldstrat.yaml:
   `train` of the prior, SatDiffMoE (train.trainable all and lora), ControlNet and DiffusionSat for
   2 steps each at batch 1; `evaluate` of SatDiffMoE (lora) on 2 test scenes at NFE 2; `export`; and
   `DiffusionPipeline.from_pretrained` of the export in a process that never imports lightning.

Each command is a child process: its peak RSS is its own (`os.wait4`), its seconds per step come from
the run's metrics.jsonl (step 0 -> step 1, without start-up and checkpointing), and its parameter
counts from the same file. The result is `<out>/paper_smoke.json` and a Markdown table on stdout, which
BENCHMARKS.md ("Paper-shape configs on CPU") quotes with the estimate of what a GPU needs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# stabilityai/stable-diffusion-2-1-base: unet/config.json and vae/config.json (diffusers' published values)
SD21_BASE_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
    norm_num_groups=32, norm_eps=1e-5, act_fn="silu", center_input_sample=False, downsample_padding=1,
    flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1, dual_cross_attention=False,
    upcast_attention=False,
)
SD21_BASE_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
    block_out_channels=(128, 256, 512, 512), norm_num_groups=32, act_fn="silu",
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=0.18215,
)
SD21_BASE_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                           clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


def write_sd21_base(folder: Path) -> Path:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(0)
    UNet2DConditionModel(**SD21_BASE_UNET).save_pretrained(folder / "unet")
    AutoencoderKL(**SD21_BASE_VAE).save_pretrained(folder / "vae")
    DDIMScheduler(**SD21_BASE_SCHEDULER).save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
             "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": [None, None], "tokenizer": [None, None]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def run(argv: list[str], log: Path) -> dict:
    """One CLI command as a child process: its exit status, wall seconds and peak RSS."""
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-m", "satdiffmoe.cli", *map(str, argv)], stdout=out,
                                 stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    result = {"command": "satdiffmoe " + " ".join(map(str, argv)), "exit": child.returncode,
              "wall_s": round(time.perf_counter() - started, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
              "log": str(log)}
    if child.returncode:
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"paper-smoke: `{result['command']}` failed (exit {child.returncode}); "
                         f"see {log}:\n" + "\n".join(tail))
    return result


def step_figures(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    params = next(r for r in rows if "params/trainable" in r)
    times = {r["step"]: r["wall_time"] for r in rows if "train/loss" in r}
    steps = sorted(times)
    return {"trainable_params": int(params["params/trainable"]), "total_params": int(params["params/total"]),
            "seconds_per_step": round(times[steps[-1]] - times[steps[0]], 1) if len(steps) > 1 else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/paper_smoke", type=Path)
    parser.add_argument("--saved-activations", nargs="+", metavar=("CONFIG", "KEY=VALUE"),
                        help="(internal) print saved_activation_bytes of one stage and exit")
    args = parser.parse_args()
    if args.saved_activations:
        print(saved_activation_bytes(Path(args.saved_activations[0]), args.saved_activations[1:]))
        return 0
    sys.path.insert(0, str(Path(__file__).parent))  # bench/flops.py
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    sd = write_sd21_base(out / "sd21_base_random")
    data, runs = out / "data", out / "runs"
    for previous in (runs, out / "export"):  # a smoke proves a fresh run: its own scratch folders start empty
        if previous.exists():
            print(f"paper-smoke: removing the previous smoke's {previous}", flush=True)
            shutil.rmtree(previous)
    results: dict = {"sd_folder": str(sd), "stages": {}}
    if not (data / "manifest.json").is_file():
        results["prepare"] = run(["prepare", "synthetic", "--out", data, "--num-scenes", 20, "--hr-size", 256,
                                  "--scale", 4, "--max-lr", 4, "--seed", 0], logs / "prepare.log")
    common = [f"data.root={data}", f"run_root={runs}", f"model.unet.pretrained={sd}", "train.accelerator=cpu",
              "train.precision=32", "data.batch_size=1", "data.eval_batch_size=1", "data.num_workers=0",
              "train.max_steps=2", "train.log_every=1", "train.val_every=1000", "data.val_subset=1",
              "data.epoch_length=2", "data.shuffle_buffer=4", "train.warmup_steps=0"]
    sd_config, controlnet_config = ROOT / "experiments" / "sd_worldstrat.yaml", \
        ROOT / "experiments" / "baselines" / "controlnet_sd_worldstrat.yaml"
    prior = runs / "sd_worldstrat" / "prior"
    stages = [
        ("prior", sd_config, ["stage=prior", "run_id=prior", "train.trainable=all"]),
        ("satdiffmoe_all", sd_config, ["run_id=satdiffmoe_all", "train.trainable=all", f"init.prior_ckpt={prior}"]),
        ("satdiffmoe_lora", sd_config, ["run_id=satdiffmoe_lora", "train.trainable=lora", f"init.prior_ckpt={prior}"]),
        ("controlnet", controlnet_config, ["run_id=controlnet", f"init.prior_ckpt={prior}"]),
        ("diffusionsat", controlnet_config, ["stage=diffusionsat", "name=diffusionsat_sd_worldstrat",
                                             "run_id=diffusionsat", f"init.prior_ckpt={prior}",
                                             "data.train_lr_policy=all", "data.max_lr=4", "data.num_lr=4",
                                             "model.controlnet.frames=4"]),
    ]
    for name, config, extra in stages:
        result = run(["train", config, *common, *extra], logs / f"train_{name}.log")
        run_id = dict(e.split("=", 1) for e in extra)["run_id"]
        run_dir = next(runs.glob(f"*/{run_id}"))  # run_root/<config name>/<run_id>
        result.update(step_figures(run_dir), run=str(run_dir))
        results["stages"][name] = result
        print(json.dumps({name: result}), flush=True)
    moe = Path(results["stages"]["satdiffmoe_lora"]["run"])
    results["evaluate"] = run(["evaluate", sd_config, *common, f"ckpt={moe}", "data.test_subset=2", "sampler.nfe=2",
                               "data.num_lr=4", "eval.name=smoke_nfe2", "eval.references=false",
                               "eval.metrics=[psnr,ssim,lr_psnr,lpips]"], logs / "evaluate.log")
    written = Path(Path(results["evaluate"]["log"]).read_text().strip().splitlines()[-1])  # evaluate prints its JSON
    results["evaluate"]["metrics"] = json.loads(written.read_text())["metrics"]
    export = out / "export" / "satdiffmoe_lora"
    results["export"] = run(["export", moe, "--out", export], logs / "export.log")
    load = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_LIGHTNING, str(export)], capture_output=True,
                          text=True, cwd=ROOT)
    if load.returncode:
        raise SystemExit(f"paper-smoke: from_pretrained of {export} failed:\n{load.stderr[-2000:]}")
    results["from_pretrained"] = json.loads(load.stdout.strip().splitlines()[-1])
    results["gpu_estimate"] = gpu_estimate(results, [(name, config, [*common, *extra]) for name, config, extra in stages])
    (out / "paper_smoke.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(estimate_table(results["gpu_estimate"]))
    print(f"paper-smoke passed: {out / 'paper_smoke.json'}")
    return 0


# The export, loaded and run the way a diffusers user would, in a process that must not import lightning.
LOAD_WITHOUT_LIGHTNING = r"""
import json, sys, time
import torch
from diffusers import DiffusionPipeline
started = time.perf_counter()
pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
lr = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(2)]
image = pipe(lr, dt=[-10.0, 30.0], nfe=2, generator=torch.Generator().manual_seed(0)).image
assert "lightning" not in sys.modules and "pytorch_lightning" not in sys.modules, "the export imported lightning"
assert image.shape == (1, 3, 256, 256) and torch.isfinite(image).all(), tuple(image.shape)
print(json.dumps({"class": type(pipe).__name__, "image": list(image.shape), "seconds": round(time.perf_counter() - started, 1),
                  "lightning_imported": False}))
"""


def unet_flops_per_sample() -> int:
    """FLOPs of one forward + backward of the SD 2.1-base UNet on one 32×32×4 latent (bench/flops.py)."""
    import torch
    from diffusers import UNet2DConditionModel
    from flops import count_flops

    unet = UNet2DConditionModel(**SD21_BASE_UNET)
    latent, tokens = torch.randn(1, 4, 32, 32), torch.randn(1, 77, 1024)

    def step():
        unet(latent, torch.tensor([500]), encoder_hidden_states=tokens).sample.sum().backward()

    return count_flops(step)


def saved_activation_bytes(config: Path, overrides: list[str]) -> int:
    """Bytes autograd keeps for the backward pass of one batch-1 training step of this stage, in fp32:
    every tensor saved for backward, counted once per storage, parameters excluded (static memory).
    The step is the task's own `training_step` on the first batch of its own datamodule."""
    import torch

    from satdiffmoe.config import load_config
    from satdiffmoe.data.datamodule import SatDataModule
    from satdiffmoe.training.trainer import build_task

    cfg = load_config(config, overrides)
    task = build_task(cfg).train()
    datamodule = SatDataModule(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    parameters = {p.untyped_storage().data_ptr() for p in task.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        task.training_step(batch, 0)
    return sum(saved.values())


def measured_in_child(config: Path, overrides: list[str]) -> int:
    """`saved_activation_bytes` in its own process: each stage's models are freed with it, as in `run`."""
    child = subprocess.run([sys.executable, __file__, "--saved-activations", str(config), *overrides],
                           capture_output=True, text=True, cwd=ROOT)
    if child.returncode:
        raise SystemExit(f"paper-smoke: measuring the saved activations of {config} {overrides[-3:]} failed "
                         f"(exit {child.returncode}):\n{child.stderr[-2000:]}")
    return int(child.stdout.strip().splitlines()[-1])


def gpu_estimate(results: dict, stages: list) -> dict:
    """What a GPU needs at batch 8/16/32 in bf16-mixed (an ESTIMATE, not a GPU measurement).

    static: fp32 weights of every parameter, fp32 gradients, AdamW's two moments and the EMA copy of the
    trainable ones; activations: the bytes autograd saves for backward at batch 1 (measured on CPU in
    fp32, `saved_activation_bytes`), halved for bf16 autocast and multiplied by the batch. Not counted:
    the CUDA context and kernel workspaces (~1-2 GB) and the allocator's fragmentation."""
    flops = unet_flops_per_sample()
    estimate = {"unet_tflop_per_sample_fwd_bwd": round(flops / 1e12, 3), "stages": {}}
    for name, config, overrides in stages:
        row = results["stages"][name]
        static = 4 * row["total_params"] + (4 + 8 + 4) * row["trainable_params"]
        activations = measured_in_child(config, overrides)
        estimate["stages"][name] = {"static_gb": round(static / 2**30, 1),
                                    "saved_activations_fp32_batch1_gb": round(activations / 2**30, 2)}
        for b in (8, 16, 32):
            estimate["stages"][name][f"batch_{b}_gb"] = round((static + b * activations / 2) / 2**30, 1)
    return estimate


def estimate_table(estimate: dict) -> str:
    lines = ["| stage (bf16-mixed, AdamW, EMA) | static (GB) | saved activations, batch 1, fp32 (GB) | batch 8 (GB) "
             "| batch 16 (GB) | batch 32 (GB) |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in estimate["stages"].items():
        lines.append(f"| {name} | {row['static_gb']} | {row['saved_activations_fp32_batch1_gb']} | {row['batch_8_gb']} | "
                     f"{row['batch_16_gb']} | {row['batch_32_gb']} |")
    lines.append(f"\nUNet forward + backward: {estimate['unet_tflop_per_sample_fwd_bwd']} TFLOP per 256 px sample "
                 "(bench/flops.py); ESTIMATES from the CPU's saved-tensor bytes, not measurements on a GPU.")
    return "\n".join(lines)


def table(results: dict) -> str:
    lines = ["| stage | trainable params | total params | s/step (batch 1, fp32) | peak RSS (GB) | command wall (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in results["stages"].items():
        lines.append(f"| {name} | {row['trainable_params']:,} | {row['total_params']:,} | {row['seconds_per_step']} | "
                     f"{row['peak_rss_mb'] / 1024:.1f} | {row['wall_s']:.0f} |")
    for name in ("evaluate", "export"):
        row = results[name]
        lines.append(f"| {name} | | | | {row['peak_rss_mb'] / 1024:.1f} | {row['wall_s']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
