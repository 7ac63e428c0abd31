"""Watching the champion after it is served: `drift` (pure: a batch against the training rows,
feature by feature), `check_drift` (the use case on stored batches), `usage` (pure: what the
served model answered, per day), `inference_runs` (`retrain predict` and the daily inference
runs in MLflow)."""
