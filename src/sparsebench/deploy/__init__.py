"""Deployment: masked network -> physically smaller network, export, inference benchmark."""

from sparsebench.deploy.compact import compact_model

__all__ = ["compact_model"]
