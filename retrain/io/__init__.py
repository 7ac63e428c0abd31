"""Adapters, one module per outside system, each taking its engine or client as an argument:
the data store (`engines`, `store`, `load_data_files`, `audit`, `alias_log`, `trial_claims`,
`locks`, `scores_table`, `prediction_log`), source files (`source_files`, `bundled_iris`),
MLflow (`tracking`, and `mlflow_rest` without importing MLflow), Spark (`spark`), webhooks
(`webhooks`, `alerts`), Prometheus (`nightly_metrics`). No use case lives here; an adapter
imports `config`, `errors` and other adapters, never a stage room or `model`."""
