"""The `retrain` console script: it sits above the flows (it starts them) and the core."""
