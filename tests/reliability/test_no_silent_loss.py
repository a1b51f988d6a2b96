"""No silent data loss: outputs never replace inputs or each other, a full disk is one line and keeps
the previous file, runs and data folders are never mixed, a changed sweep is not taken for the old one.

The single-line refusals are rows of the bad-input table (test_bad_input.py); here are the cases that
need a sequence of real commands. A full disk is a real write failure: the child process runs under
RLIMIT_FSIZE, so any write past the limit fails with EFBIG, as writes on a full disk fail with ENOSPC.
"""

from __future__ import annotations

import glob
import hashlib
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from reliability_helpers import HANG_GUARD_S, REPO, TINY_EXPERIMENT, cli_env, tiny_args

from satdiffmoe.cli import main
from satdiffmoe.config import load_config
from satdiffmoe.runs import RunDir


def run_on_a_full_disk(args: list[str], max_file_bytes: int) -> subprocess.CompletedProcess:
    """`satdiffmoe ARGS` in a child that cannot write any file beyond `max_file_bytes`."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run([sys.executable, "-m", "satdiffmoe.cli", *map(str, args)], capture_output=True, text=True,
                          env=cli_env(), cwd=REPO, timeout=HANG_GUARD_S, check=False, preexec_fn=limit)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_lr_pngs(folder, count: int = 2) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"lr{i}.png"
        Image.fromarray(np.full((4, 4, 3), 100 + 20 * i, np.uint8)).save(path)
        paths.append(str(path))
    return paths


# ------------------------------------------------------------------------------------ full disk
def test_sample_on_a_full_disk_keeps_the_previous_output_and_leaves_no_partial_file(tiny_runs, tmp_path):
    lrs = write_lr_pngs(tmp_path)
    out = tmp_path / "sr.png"
    out.write_bytes(b"the previous result")
    result = run_on_a_full_disk(["sample", "--ckpt", tiny_runs["sdm"], "--lr", *lrs, "--dt", "-10", "5",
                                 "--out", out], max_file_bytes=40)
    assert f"cannot write {out}" in one_error_line(result)
    assert out.read_bytes() == b"the previous result"  # not a 0-byte sr.png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr0.png", "lr1.png", "sr.png"]


def test_sample_writes_its_outputs_as_a_set_when_the_uncertainty_map_fails(tiny_runs, tmp_path):
    """A 64×64 RGB PNG (at most ~12.5 kB) fits under the limit, its 64×64 float32 map (over 16 kB) does not."""
    rng = np.random.default_rng(0)
    lrs = []
    for i in range(2):
        lrs.append(tmp_path / f"lr{i}.png")
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(lrs[-1])
    out, uncertainty = tmp_path / "sr.png", tmp_path / "u.tif"
    out.write_bytes(b"the previous result")
    result = run_on_a_full_disk(["sample", "--ckpt", tiny_runs["sdm"], "--lr", *lrs, "--dt", "-10", "5", "--out", out,
                                 "--uncertainty", uncertainty, "sampler.nfe=1"], max_file_bytes=14_500)
    assert f"cannot write {uncertainty}" in one_error_line(result)
    assert out.read_bytes() == b"the previous result"  # not the new image without its map
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr0.png", "lr1.png", "sr.png"]


def test_sample_refuses_an_output_it_cannot_create_before_loading_the_model(tmp_path, capsys):
    """/proc passes os.access for root but takes no new file; the --ckpt is not even read."""
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "lr.png")
    code = main(["sample", "--ckpt", str(tmp_path / "no-such-model"), "--lr", str(tmp_path / "lr.png"), "--dt", "1",
                 "--out", "/proc/sr.png"])
    err = capsys.readouterr().err
    assert code == 2 and "/proc/sr.png" in err and "no-such-model" not in err, err


def test_train_on_a_full_disk_stops_with_one_line_and_keeps_last_ckpt(tiny_runs, tmp_path):
    args = tiny_args(tmp_path, tiny_runs["data"], "stage=autoencoder", run_id="full")
    assert main(["train", *args]) == 0
    last = tmp_path / "tiny" / "full" / "checkpoints" / "last.ckpt"
    before = digest(last)
    result = run_on_a_full_disk(["train", *args, "resume=true", "train.max_steps=4"],
                                max_file_bytes=last.stat().st_size // 2)
    line = one_error_line(result)
    assert "cannot write checkpoint" in line and "resume=true" in line
    assert digest(last) == before  # the previous last.ckpt, whole
    assert not list(last.parent.glob("*.partial"))


def test_evaluate_on_a_full_disk_is_one_line(tiny_runs, tmp_path):
    ckpt = tmp_path / "model.ckpt"  # outside a run folder: evaluate makes one, starting with config.yaml
    shutil.copy(tiny_runs["sdm"] / "checkpoints" / "last.ckpt", ckpt)
    result = run_on_a_full_disk(["evaluate", *tiny_args(tmp_path / "runs", tiny_runs["data"], f"ckpt={ckpt}")],
                                max_file_bytes=100)
    assert "config.yaml" in one_error_line(result)


def test_prepare_on_a_full_disk_is_one_line_and_leaves_no_partial_shard(tmp_path):
    out = tmp_path / "data"
    args = ["prepare", "synthetic", "--out", out, "--num-scenes", "8", "--hr-size", "16", "--scale", "4",
            "--max-lr", "2"]
    assert "cannot write the shards" in one_error_line(run_on_a_full_disk(args, max_file_bytes=3000))
    assert list(out.iterdir()) == []  # no hidden .partial shard, so a re-run does not find --out "not empty"
    assert main(list(map(str, args))) == 0


def test_export_on_a_full_disk_is_one_line_and_keeps_the_earlier_export(tiny_runs, tmp_path):
    out = tmp_path / "exported"
    assert main(["export", str(tiny_runs["sdm"]), "--out", str(out)]) == 0
    before = {p.name: digest(p) for p in out.rglob("*") if p.is_file()}
    for target, extra in ((tmp_path / "new", []), (out, ["--overwrite"])):
        line = one_error_line(run_on_a_full_disk(["export", tiny_runs["sdm"], "--out", target, *extra], 3000))
        assert f"cannot write {target}" in line and "File too large" in line
    assert {p.name: digest(p) for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no .exported.partial-* folder


def test_report_on_a_full_disk_is_one_line_and_leaves_no_half_report(tiny_runs, tmp_path):
    out = tmp_path / "report"
    line = one_error_line(run_on_a_full_disk(["report", "--runs", tiny_runs["sdm"], "--out", out], 2000))
    assert f"cannot write the report into {out}" in line
    assert list(tmp_path.iterdir()) == []


def test_score_on_a_full_disk_is_one_line_and_keeps_the_previous_json(tmp_path):
    for name, value in (("pred.png", 100), ("ref.png", 110)):
        Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(tmp_path / name)
    out = tmp_path / "scores.json"
    out.write_text("{}")
    line = one_error_line(run_on_a_full_disk(["score", "--pred", tmp_path / "pred.png", "--ref", tmp_path / "ref.png",
                                              "--metrics", "psnr", "ssim", "--out", out], 20))
    assert f"cannot write {out}" in line
    assert out.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["pred.png", "ref.png",
                                                                                     "scores.json"]


# ------------------------------------------------------------------------------ inputs and runs
def _geotiff(path, pixels, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=pixels.shape[2], height=pixels.shape[1], count=3,
                       dtype="uint8", crs="EPSG:32633", transform=rasterio.Affine(10, 0, 500000, 0, -10, 4000000),
                       nodata=nodata) as image:
        image.write(pixels)
    return str(path)


def test_geotiff_nodata_is_masked_like_a_cloud_and_an_all_nodata_lr_is_dropped(tiny_runs, tmp_path, caplog):
    rng = np.random.default_rng(1)
    clear = rng.integers(20, 240, (3, 8, 8), dtype=np.uint8)
    half = rng.integers(20, 240, (3, 8, 8), dtype=np.uint8)
    half[:, :, :4] = 0
    a = _geotiff(tmp_path / "a.tif", clear)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.where(np.arange(8)[None, :] < 4, 0, 255).repeat(8, 0).astype(np.uint8)).save(mask)
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "clear_mask.png")
    def sample(lrs, dts, out, *extra):
        return main(["sample", "--ckpt", str(tiny_runs["sdm"]), "--lr", *lrs, "--dt", *dts, *extra, "--out", str(out),
                     "sampler.nfe=1"])

    tagged, untagged = tmp_path / "tagged.tif", tmp_path / "untagged.tif"
    assert sample([a, _geotiff(tmp_path / "half.tif", half, nodata=0)], ["-10", "5"], tagged) == 0
    assert sample([a, _geotiff(tmp_path / "plain.tif", half)], ["-10", "5"], untagged,
                  "--mask", str(tmp_path / "clear_mask.png"), str(mask)) == 0
    with rasterio.open(tagged) as x, rasterio.open(untagged) as y:  # nodata = the same pixels given as a mask
        np.testing.assert_array_equal(x.read(), y.read())

    caplog.clear()
    empty = _geotiff(tmp_path / "empty.tif", np.zeros((3, 8, 8), np.uint8), nodata=0)
    alone = tmp_path / "alone.tif"
    assert sample([a, empty], ["-10", "5"], tmp_path / "o.tif") == 0
    assert sample([a], ["-10"], alone) == 0
    assert any("dropped 1 of 2 LR images" in r.getMessage() and "empty.tif" in r.getMessage() for r in caplog.records)
    with rasterio.open(tmp_path / "o.tif") as x, rasterio.open(alone) as y:  # as if it had not been given
        np.testing.assert_array_equal(x.read(), y.read())


def test_a_palette_png_is_read_as_the_colours_it_shows(tmp_path):
    from satdiffmoe.sampling.image_io import read_raster

    indices = np.arange(64, dtype=np.uint8).reshape(8, 8) % 4
    image = Image.fromarray(indices, mode="P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 200, 100, 50])
    image.save(tmp_path / "palette.png")
    expected = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    raster = read_raster(tmp_path / "palette.png")
    assert raster.pixels.shape == (3, 8, 8)  # not "1 × 8×8" of palette indices
    np.testing.assert_array_equal(np.round((raster.pixels + 1) / 2 * 255), expected)


def test_16_bit_rgb_png_is_read_at_its_real_depth(tmp_path):
    from data_prep.raster_io import read_raster as read_for_prepare
    from satdiffmoe.sampling.image_io import read_raster as read_for_sample

    path = tmp_path / "rgb16.png"
    pixels = np.stack([np.full((4, 4), v, np.uint16) for v in (40000, 1000, 65535)])
    with rasterio.open(path, "w", driver="PNG", width=4, height=4, count=3, dtype="uint16") as image:
        image.write(pixels)
    assert read_for_prepare(path).array.dtype == np.uint16
    assert read_for_prepare(path).array[:, 0, 0].tolist() == [40000, 1000, 65535]  # PIL gave 156, 3, 255
    raster = read_for_sample(path)
    assert raster.value_max == 65535
    assert np.allclose(raster.pixels[:, 0, 0], np.array([40000, 1000, 65535]) / 65535 * 2 - 1)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    cfg = load_config(TINY_EXPERIMENT, [f"run_root={tmp_path}"])
    runs = [RunDir.create(cfg) for _ in range(3)]
    assert len({run.path for run in runs}) == 3
    assert all((run.path / "config.yaml").is_file() for run in runs)


def test_a_rerun_without_checkpoints_moves_the_old_metric_log_aside(tiny_runs, tmp_path):
    run = tmp_path / "tiny" / "again"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1, "wall_time": 0, "train/loss": 9}\n')
    assert main(["train", *tiny_args(tmp_path, tiny_runs["data"], "stage=autoencoder", run_id="again")]) == 0
    assert all(json.loads(line)["train/loss"] != 9 for line in (run / "metrics.jsonl").read_text().splitlines()
               if "train/loss" in line)
    assert [p.read_text() for p in run.glob("metrics.*-*.jsonl")] == ['{"step": 1, "wall_time": 0, "train/loss": 9}\n']


def test_prepare_overwrite_leaves_exactly_the_shards_its_manifest_lists(tmp_path):
    out = tmp_path / "data"
    common = ["prepare", "synthetic", "--out", str(out), "--hr-size", "16", "--scale", "4", "--max-lr", "2"]
    assert main([*common, "--num-scenes", "24", "--shard-size", "2"]) == 0
    assert len(list(out.glob("train-*.tar"))) > 2
    assert main([*common, "--num-scenes", "8", "--shard-size", "8", "--overwrite"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    listed = sorted(name for names in manifest["shards"].values() for name in names)
    assert sorted(p.name for p in out.glob("*.tar")) == listed
    assert sum(manifest["counts"].values()) == 8


# -------------------------------------------------------------------------------- run folders
def empty_folders(root):
    """Empty folders under root, outside W&B's own wandb/ (which W&B lays out itself)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_dir() and not any(p.iterdir()) and "wandb" not in p.relative_to(root).parts)


def test_no_run_keeps_an_empty_folder_and_the_readme_glob_reports_the_evaluated_runs(tiny_runs, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_runs["root"], runs)
    assert empty_folders(runs) == []  # trained runs: no eval/ (nor images/) before anything is written there
    assert main(["evaluate", str(TINY_EXPERIMENT), f"data.root={tiny_runs['data']}", f"ckpt={runs / 'tiny' / 'sdm'}",
                 "eval.name=globbed"]) == 0
    readme = (REPO / "README.md").read_text()
    assert "--evals runs/*/*/eval" in readme and "--evals runs/*/eval " not in readme
    evals = sorted(glob.glob(f"{runs}/*/*/eval"))  # what the shell makes of the README's runs/*/*/eval
    assert evals == [str(runs / "tiny" / "sdm" / "eval")]
    assert main(["report", "--evals", *evals, "--out", str(tmp_path / "report")]) == 0
    assert "globbed" in (tmp_path / "report" / "report.md").read_text()


def test_a_failed_evaluate_leaves_no_run_folder(tiny_runs, tmp_path, capsys):
    code = main(["evaluate", str(TINY_EXPERIMENT), f"data.root={tiny_runs['data']}", f"ckpt={tiny_runs['sdm']}",
                 f"run_root={tmp_path / 'runs'}", "data.num_lr=9", "data.max_lr=9"])
    assert code == 2 and "data.num_lr" in capsys.readouterr().err
    assert list((tmp_path / "runs" / "tiny").iterdir()) == []  # the timestamped run folder it made is gone


# ---------------------------------------------------------------------------- sweeps, evaluations
def test_a_grid_edited_on_an_existing_study_is_refused_and_sweep_yaml_kept(tiny_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    head = (f"study: edited\nconfig: {TINY_EXPERIMENT}\nckpt: {tiny_runs['sdm']}\n"
            f"base_overrides: ['data.root={tiny_runs['data']}']\nobjectives: [{{metric: psnr, direction: maximize}}]\n"
            "sampler: {name: grid}\n")
    sweep, out = tmp_path / "sweep.yaml", tmp_path / "sw"
    sweep.write_text(head + "params: {sampler.nfe: {choices: [1, 2]}}\n")
    assert main(["sweep", str(sweep), "--out", str(out), "--n-trials", "1"]) == 0
    ran = (out / "sweep.yaml").read_text()
    sweep.write_text(head + "params: {sampler.nfe: {choices: [1, 2, 3]}}\n")
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: study 'edited'")
    assert "another search space" in err and "study=<new name>" in err
    assert (out / "sweep.yaml").read_text() == ran


@pytest.fixture(scope="module")
def finished_study(tiny_runs, tmp_path_factory):
    """A finished one-point PSNR study: (its sweep fields, sweep folder)."""
    folder = tmp_path_factory.mktemp("finished_study")
    fields = {"study": "fixed", "config": str(TINY_EXPERIMENT), "ckpt": str(tiny_runs["sdm"]),
              "base_overrides": [f"data.root={tiny_runs['data']}"], "params": {"sampler.nfe": {"choices": [1]}},
              "objectives": [{"metric": "psnr", "direction": "maximize"}], "sampler": {"name": "grid"},
              "wandb": {"mode": "disabled"}}
    (folder / "sweep.yaml").write_text(json.dumps(fields))
    assert main(["sweep", str(folder / "sweep.yaml"), "--out", str(folder / "sw")]) == 0
    return fields, folder / "sw"


def _changed_config(tmp_path, fields):
    shutil.copy(TINY_EXPERIMENT, tmp_path / "copy.yaml")
    return {"config": str(tmp_path / "copy.yaml")}


# key -> the resumed sweep's changed fields (what each trial measured would no longer be what it says)
CHANGED = {
    "objectives": lambda tmp, f: {"objectives": [{"metric": "ssim", "direction": "maximize"}]},
    "base_overrides": lambda tmp, f: {"base_overrides": [*f["base_overrides"], "data.num_lr=1"]},
    "seeds": lambda tmp, f: {"seeds": 2},
    "ckpt": lambda tmp, f: {"ckpt": str(Path(f["ckpt"]).with_name("ae"))},
    "config": _changed_config,
}


@pytest.mark.parametrize("key", sorted(CHANGED))
def test_a_resume_that_changes_what_the_trials_measured_is_refused(key, finished_study, tmp_path, capsys):
    fields, ran = finished_study
    out = tmp_path / "sw"
    shutil.copytree(ran, out)
    before = (out / "sweep.yaml").read_text(), digest(out / "study.db")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({**fields, **CHANGED[key](tmp_path, fields)}))
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(out)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: study 'fixed'") and "study=<new name>" in line, line
    assert (f"{key}=" in line) if key != "objectives" else ("measured psnr, not ssim" in line), line
    assert ((out / "sweep.yaml").read_text(), digest(out / "study.db")) == before


def test_a_resume_changing_only_how_trials_run_is_accepted(finished_study, tmp_path):
    fields, ran = finished_study
    out = tmp_path / "sw"
    shutil.copytree(ran, out)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(json.dumps({**fields, "heartbeat": {"interval": 5, "grace": 10}}))
    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    assert "interval: 5" in (out / "sweep.yaml").read_text()


def test_evaluate_stamps_the_model_and_its_references_and_report_flags_a_mixed_set(tiny_runs, tmp_path, caplog):
    run = tmp_path / "sdm"
    shutil.copytree(tiny_runs["sdm"], run)
    # no run_root=: the results go into the checkpoint's own run folder
    assert main(["evaluate", str(TINY_EXPERIMENT), f"data.root={tiny_runs['data']}", f"ckpt={run}",
                 "eval.name=stamped", "eval.references=true"]) == 0
    eval_dir = run / "eval"
    files = json.loads((eval_dir / "stamped.json").read_text())["evaluation"]["files"]
    assert files[0] == "stamped" and {"bicubic_nearest_n2", "mean_bicubic_n2"} <= set(files)
    parts = {name: json.loads((eval_dir / f"{name}.json").read_text()) for name in files}
    assert len({part["evaluation"]["id"] for part in parts.values()}) == 1

    stale = dict(parts["mean_bicubic_n2"], evaluation={"id": "an-older-evaluation", "files": ["mean_bicubic_n2"]})
    (eval_dir / "mean_bicubic_n2.json").write_text(json.dumps(stale))
    caplog.clear()
    assert main(["report", "--evals", str(eval_dir), "--out", str(tmp_path / "report")]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("mean_bicubic_n2.json is not from the same evaluation" in w for w in warnings), warnings


@pytest.mark.parametrize("flag", ["--out", "--uncertainty"])
def test_sample_leaves_its_input_untouched_when_an_output_names_it(tiny_runs, tmp_path, flag, capsys):
    lrs = write_lr_pngs(tmp_path)
    before = digest(tmp_path / "lr0.png")
    argv = ["sample", "--ckpt", str(tiny_runs["sdm"]), "--lr", *lrs, "--dt", "-10", "5", "--out"]
    argv += [lrs[0]] if flag == "--out" else [str(tmp_path / "sr.png"), "--uncertainty", lrs[0]]
    assert main(argv) == 2
    assert "is also an input" in capsys.readouterr().err
    assert digest(tmp_path / "lr0.png") == before
