"""The data stage: `ingest` (source files into `<dataset>_raw`), `cleaning_rules` (pure: a
pandera schema splits raw rows into cleaned and rejected) and `clean` (the use case),
`features` (pure: rows as the Pipelines take them), `split` (pure: the train/holdout split).
The pure modules import no adapter."""
