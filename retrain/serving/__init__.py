"""Serving the champion: `model_server` (the `mlflow models serve` processes and
`serving.json`), `haproxy` (the proxy in front), `deploy` (the verified swap and rollback) and
`supervisor` (keeps what `serving.json` records answering). The served model itself is
`retrain.model`."""
