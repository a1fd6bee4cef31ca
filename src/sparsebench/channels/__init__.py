"""The channel graph of a network: which channels are coupled (`tracer`, `groups`), how a
network is sliced to the channels kept (`slicing`), and how sums over removed channels
are narrowed (`narrowing`). Compact training, compaction, the sparsity layers and
federated training all sit on it; it knows networks only, no run or method."""

from sparsebench.channels.groups import ChannelGroup, ChannelTrace, UngroupableNetwork, Use
from sparsebench.channels.tracer import trace_channels, trace_network

__all__ = [
    "ChannelGroup",
    "ChannelTrace",
    "UngroupableNetwork",
    "Use",
    "trace_channels",
    "trace_network",
]
