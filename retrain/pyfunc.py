"""Forwarding module, kept for good: models registered by retrain 0.1.0 (the flat layout) name
`retrain.pyfunc.ClassifierModel` in their `python_model.pkl`, and must keep loading and serving.
New code imports `retrain.serving.pyfunc_model`."""

from retrain.serving.pyfunc_model import ClassifierModel

__all__ = ["ClassifierModel"]
