"""Optuna sweeps over inference knobs (fusion frequency, NFE, number of LR inputs) or training knobs.

    spec.py            the sweep file schema and loading
    storage.py         SQLite / RDB URL / journal storages with heartbeat + retry
    trial_config.py    the base config and one trial's config (params -> dotted overrides)
    training_trial.py  train one trial's config with Lightning pruning on the validation metric
    distributed.py     DDP training sweeps: torchrun launch and checks, the ranks' control channel
    ddp_trials.py      DDP training sweeps: rank 0 leads each trial, the other ranks follow
    objective.py       one trial: params -> config -> evaluate (train first for training sweeps)
    study.py           create/resume the study, the worker loop
    results.py         trials.csv, best.json, importance and Pareto plots
    wandb_tracking.py  one W&B run per trial + a summary run

The `satdiffmoe sweep` command: commands/sweep.py.
"""
