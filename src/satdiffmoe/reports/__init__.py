"""Reports: the tables and figures people publish, rebuilt from files on disk.

    sources.py      read training logs (metrics.jsonl + config.yaml), eval JSONs and Optuna studies
    convergence.py  steps/time to reach thresholds, SatDiffMoE's speed-up over the baselines
    ablation.py     metrics vs each swept key (one-factor tables, two-factor grids, Pareto fronts)
    methods.py      all methods side by side on one test set
    tables.py       one table model rendered as Markdown, LaTeX (booktabs) and CSV
    figures.py      matplotlib PNGs (Agg, bundled fonts)

The `satdiffmoe report` command and its report.md index: commands/report.py.
"""
