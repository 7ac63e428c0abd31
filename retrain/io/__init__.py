"""Adapters, one module per outside system, each taking its engine or client as an argument:
the data store (`engines`, `store`, `load_data_files`, `audit`, `trial_claims`, `locks`,
`scores_table`, `prediction_log`), source files (`source_files`, `bundled_iris`), MLflow
(`tracking`), Spark (`spark`), the alert webhook (`alerts`), Prometheus (`nightly_metrics`).
No use case lives here; an adapter imports `config` and `errors`, never a stage room (the
served model's wrapper is the one exception `tracking` needs to log it)."""
