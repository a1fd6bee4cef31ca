"""Channels-last training: the same computation in another layout, never through the
oneDNN case that corrupts memory (a thin, strided 1x1 convolution's weight gradient)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sparsebench as sb
from sparsebench.train.memory_format import (
    reduced_to_unit_stride_unsafely,
    to_channels_last,
    wants_channels_last,
)

pytestmark = pytest.mark.kernels


@pytest.mark.parametrize(
    ("conv", "unsafe"),
    [
        (nn.Conv2d(8, 16, 1, stride=2), True),  # a thinned ResNet shortcut
        (nn.Conv2d(15, 16, 1, stride=2), True),
        (nn.Conv2d(4, 16, 1, padding=1), True),  # padded: also reduced to unit stride
        (nn.Conv2d(16, 16, 1, stride=2), False),  # a whole AVX-512 block of inputs
        (nn.Conv2d(4, 16, 1), False),  # unit stride already
        (nn.Conv2d(4, 16, 3, stride=2, padding=1), False),  # not a 1x1
        (nn.Conv2d(64, 64, 1, stride=2, groups=8), True),  # 8 inputs per group
    ],
)
def test_thin_strided_pointwise_convolutions_are_the_unsafe_ones(conv, unsafe):
    assert reduced_to_unit_stride_unsafely(conv) is unsafe


def test_auto_is_channels_last_for_float32_on_the_cpu_with_no_layer_needing_nchw():
    def resnet(width: float) -> nn.Module:
        return sb.build_model("resnet18", num_classes=4, image_size=28, width=width)

    vgg = sb.build_model("vgg16", num_classes=4, image_size=28, width=0.125)
    assert wants_channels_last("auto", vgg)
    assert not wants_channels_last("auto", vgg.double())
    assert wants_channels_last("auto", resnet(0.25))  # shortcuts of 16 to 64 inputs
    thin = resnet(0.125)  # a shortcut of 8 inputs: NCHW throughout
    assert not wants_channels_last("auto", thin)
    assert wants_channels_last("channels_last", thin)  # asked for: all but that layer
    assert not wants_channels_last("contiguous", vgg)
    with pytest.raises(ValueError, match="nhwc"):
        wants_channels_last("nhwc", vgg)


def test_the_layout_changes_and_is_given_back_exactly():
    network = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 1, stride=2),  # unsafe: stays NCHW, its input made contiguous
        nn.Conv2d(8, 4, 3),
    )
    network[2].weight.data = network[2].weight.data.contiguous(memory_format=torch.channels_last)
    weights = [conv.weight for conv in network]
    strides = [weight.stride() for weight in weights]
    values = [weight.detach().clone() for weight in weights]

    layout = to_channels_last(network)
    assert network[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert network[1].weight.is_contiguous()
    assert len(layout.hooks) == 1
    seen = {}
    network[1].register_forward_pre_hook(lambda module, args: seen.update(x=args[0]))
    network(torch.randn(2, 3, 8, 8))
    assert seen["x"].is_contiguous()  # though the layer before it wrote channels-last

    layout.restore()
    assert [conv.weight for conv in network] == weights  # the same parameters
    assert [weight.stride() for weight in weights] == strides
    for weight, value in zip(weights, values, strict=True):
        assert torch.equal(weight, value)
    assert len(network[1]._forward_pre_hooks) == 1  # the test's own, not ours


def test_masks_still_zero_pruned_weights_after_the_layout_changed():
    network = sb.build_model("vgg16", num_classes=4, image_size=28, width=0.125)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    method = sb.make_method("pre", sb.SCENARIOS["uniform"])
    method.on_train_begin(network, optimizer, 1, 1, None, (3, 28, 28))
    to_channels_last(network)
    mask = next(mask for mask in method.masks if isinstance(mask.layer.module, nn.Conv2d))
    weight = mask.layer.module.weight
    pruned = ~mask.keep.bool().view(-1)
    with torch.no_grad():
        weight.fill_(1.0)
    method.masks.apply()
    assert bool(weight[pruned].eq(0).all()) and bool(weight[~pruned].eq(1).all())


def _trainer(memory_format: str, training: bool) -> sb.SparseTrainer:
    torch.manual_seed(0)
    # Width 0.125: the shortcuts of a pruned ResNet18 have 1 to 8 input channels, the
    # case that aborts the process if it reaches oneDNN in channels-last.
    network = sb.build_model("resnet18", num_classes=4, image_size=28, width=0.125)
    network.train(training)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    return sb.SparseTrainer(
        network,
        optimizer,
        sb.make_method("pre", sb.SCENARIOS["uniform"]),
        epochs=1,
        steps_per_epoch=4,
        input_shape=(3, 28, 28),
        memory_format=memory_format,
    )


def _batches(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [  # odd batches, as the last of an epoch often is
        (torch.randn(61, 3, 28, 28, generator=generator), torch.randint(0, 4, (61,)))
        for _ in range(count)
    ]


def test_channels_last_gradients_are_the_nchw_gradients():
    """One step of the compact network. In evaluation mode (batch norm on its running
    statistics) a float32 gradient agrees with float64's to about 1e-5 of its largest
    entry in either layout; in training mode one ReLU that flips near zero moves every
    gradient through the batch statistics, in either layout alike."""
    (images, labels) = _batches(1)[0]
    gradients = {}
    for memory_format in ("channels_last", "contiguous"):
        trainer = _trainer(memory_format, training=False)
        step = trainer.step(images, labels)
        gradients[memory_format] = [p.grad.clone() for p in step.network.parameters()]
    for cl, nchw in zip(gradients["channels_last"], gradients["contiguous"], strict=True):
        assert float((cl - nchw).abs().max()) <= 1e-4 * float(nchw.abs().max())


def test_channels_last_training_runs_through_and_gives_the_model_back():
    losses = {}
    for memory_format in ("channels_last", "contiguous"):
        trainer = _trainer(memory_format, training=True)
        trainer.train()
        losses[memory_format] = [
            float(trainer.step(images, labels).loss.detach()) for images, labels in _batches(4)
        ]
        trainer.finish()
        for module in trainer.model.modules():  # as it came: NCHW, no hook of ours
            if isinstance(module, nn.Conv2d):
                assert module.weight.is_contiguous() and not module._forward_pre_hooks
    assert losses["channels_last"] == pytest.approx(losses["contiguous"], rel=1e-3)
