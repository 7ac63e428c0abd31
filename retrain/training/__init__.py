"""The tuning stage: `families` (pure: the AUROC, model families as scikit-learn Pipelines,
fitting, the learning curve), `tuning` (the Optuna study, trial workers, the refit and its
registration), `pictures` and `notes` (what MLflow's UI shows of a tuning run)."""
