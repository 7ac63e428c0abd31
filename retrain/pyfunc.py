"""Forwarding module, kept for good: models registered by retrain 0.1.0 (the flat layout) name
`retrain.pyfunc.ClassifierModel` in their `python_model.pkl`, and must keep loading and serving.
New code imports `retrain.model.pyfunc_model`."""

from retrain.model.pyfunc_model import ClassifierModel

__all__ = ["ClassifierModel"]
