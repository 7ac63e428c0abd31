"""The model as retrain ships it, used by every stage: `pyfunc_model` (the pyfunc wrapper that
`mlflow models serve` runs: raw rows in, labels and probabilities out) with `instruments`
(what it records about itself inside that process), `logged_model` (logging it to MLflow and
loading a registered version back), `aliases` (the one module that moves the registry aliases
`champion`, `challenger` and `previous_champion`, and tells of each move) and
`champion_lookup` (which version is `@champion`, quickly). Imports `config`, `io` and
`data.features`, no stage room."""
