"""Optuna sweeps over inference knobs (fusion frequency, NFE, number of LR inputs) or training knobs.

    spec.py            the sweep file schema and loading
    storage.py         SQLite / RDB URL / journal storages with heartbeat + retry
    objective.py       one trial: params -> config -> evaluate (train first for training sweeps)
    training_trial.py  a training trial: Lightning pruning on the validation metric, then evaluation
    study.py           create/resume the study, the worker loop
    results.py         trials.csv, best.json, importance and Pareto plots
    wandb_tracking.py  one W&B run per trial + a summary run

The `satdiffmoe sweep` command: commands/sweep.py.
"""
