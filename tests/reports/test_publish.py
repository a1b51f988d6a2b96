"""`make docs`: the README's quickstart section is regenerated from report files, idempotently."""

import json

import pytest

from satdiffmoe.errors import UserError
from satdiffmoe.reports.publish import BEGIN, END, FIGURES, GRID, NFE_GRIDS, TABLES, publish


def fake_quickstart(root, psnr: str):
    report = root / "report"
    report.mkdir(parents=True)
    for name in TABLES + NFE_GRIDS:
        (report / name).write_text(f"**{name}**\n\n| PSNR |\n|---:|\n| {psnr} |\n\nFiles: [md]({name})\n")
    for name in FIGURES:
        (report / name).write_bytes(b"\x89PNG fake")
    (root / GRID).parent.mkdir(parents=True)
    (root / GRID).write_bytes(b"\x89PNG grid")
    (root / "timings.json").write_text(json.dumps({"steps_s": {"train": 12.0, "NFE sweep": 60.0}, "total_s": 300.0}))
    return root


def test_publish_replaces_the_marked_section_and_nothing_else(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n<!-- QUICKSTART-RESULTS -->\n\n## After\n")
    docs = tmp_path / "docs" / "quickstart"
    publish(fake_quickstart(tmp_path / "q1", "17.5"), docs, readme)
    first = readme.read_text()
    assert first.startswith("# Title") and first.rstrip().endswith("## After")
    assert "| 17.5 |" in first and "5.0 min" in first and "Files:" not in first
    assert "is **4.0 min**" in first  # the quickstart without its ablation steps
    assert "ablation_quickstart_nfe_sampler_nfe_x_sampler_timestep_spacing_lpips.md" in first
    assert "ablation_quickstart_consensus_sampler_backprojection_x_sampler_optimize_steps_lpips.md" in first
    assert (docs / "methods.md").is_file() and (docs / "convergence_val_psnr.png").is_file()

    publish(fake_quickstart(tmp_path / "q2", "18.25"), docs, readme)
    second = readme.read_text()
    assert "| 18.25 |" in second and "| 17.5 |" not in second
    assert second.count(BEGIN) == 1 and second.count(END) == 1


def test_publish_without_a_report_is_a_user_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- QUICKSTART-RESULTS -->\n")
    with pytest.raises(UserError, match="run `satdiffmoe quickstart"):
        publish(tmp_path / "nothing", tmp_path / "docs", readme)
