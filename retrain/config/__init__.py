"""Configuration: the one typed settings object (`settings`) and a dataset's schema file
(`dataset_schema`: pandera rules plus retrain's roles). Imports only `retrain.errors`,
`retrain.links` and the file readers of `retrain.io.source_files`."""
