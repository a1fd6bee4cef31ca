"""Networks by name: the study's vgg16 and resnet18, the edge networks (ResNet-34 and -50,
MobileNetV2 and V3, EfficientNet-B0), and any registered by the user."""

from sparsebench.models import mobile, resnet, vgg  # noqa: F401  (registers the built-in models)
from sparsebench.models.registry import build_model, model_names, register_model

__all__ = ["build_model", "model_names", "register_model"]
