"""Federated sparse training: clients that cannot pool their images train one model."""

from sparsebench.federated.partition import Partition, partition_clients

__all__ = ["Partition", "partition_clients"]
