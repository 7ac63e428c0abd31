"""Batch scoring: `batch_score` applies the champion on Spark to large CSV or Parquet files and
writes `<dataset>_scores` (the adapters are `io.spark` and `io.scores_table`)."""
