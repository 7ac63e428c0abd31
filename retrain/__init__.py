"""The core of retrain, Prefect-free: nothing here imports `prefect`, `flows`, `tasks` or `cli`.

Rooms (each sub-package's docstring says what it holds and what it may import):

    config/      the settings object and the dataset schema file
    io/          one adapter per outside system, each taking its engine or client
    data/        ingest, schema inference, the cleaning rules and clean, features, the split
    model/       the served pyfunc model, logging and loading it, the registry aliases
    training/    model families, the Optuna search, the refit, its pictures and notes
    promotion/   the comparison rules and the promote use case
    serving/     model-server processes, HAProxy, deploy, supervisor
    monitoring/  drift of new batches, what the served model answered, inference runs
    scoring/     batch scoring on Spark

`errors` (expected failures with an exit status) and `links` (MLflow UI addresses) are used by
every room. `pyfunc` only forwards to `model.pyfunc_model`: models registered by retrain
0.1.0 name `retrain.pyfunc.ClassifierModel` in their pickles.
"""
