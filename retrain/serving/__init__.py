"""Serving the champion: `pyfunc_model` (the served wrapper), `instruments` (what it records
about itself inside `mlflow models serve`), `model_server` (those processes and
`serving.json`), `haproxy` (the proxy in front), `deploy` (the verified swap and rollback) and
`supervisor` (keeps what `serving.json` records answering)."""
