"""Networks by name: vgg16, resnet18 and any registered by the user."""

from sparsebench.models import resnet, vgg  # noqa: F401  (registers the built-in models)
from sparsebench.models.registry import build_model, model_names, register_model

__all__ = ["build_model", "model_names", "register_model"]
