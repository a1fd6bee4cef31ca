import pytest
import torch
from torch import nn

from sparsebench.errors import InputError
from sparsebench.models import build_model, model_names, register_model
from sparsebench.sparsity import discover_layers


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# torchvision's `num_params` of each model's IMAGENET1K_V1 weights (1000 classes).
PUBLISHED_PARAMETERS = {
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
    "efficientnet_b0": 5_288_548,
}
EDGE_MODELS = [name for name in PUBLISHED_PARAMETERS if name not in ("vgg16", "resnet18")]


@pytest.mark.parametrize(("name", "params"), PUBLISHED_PARAMETERS.items())
def test_full_models_have_torchvision_parameter_counts(name, params):
    assert count(build_model(name, num_classes=1000, image_size=224)) == params


@pytest.mark.parametrize("name", [n for n in EDGE_MODELS if not n.startswith("resnet")])
def test_the_mobile_networks_small_image_stem_changes_strides_not_weights(name):
    assert count(build_model(name, num_classes=1000, image_size=28)) == (PUBLISHED_PARAMETERS[name])


# Parameters of torchvision's state dicts, with their shapes: `--init-from` loads them.
TORCHVISION_PARAMETERS = {
    "resnet50": {"layer1.0.conv3.weight": (256, 64, 1, 1), "layer4.2.bn3.bias": (2048,)},
    "mobilenet_v2": {
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    },
    "mobilenet_v3_small": {
        "features.1.block.1.fc1.weight": (8, 16, 1, 1),
        "features.12.0.weight": (576, 96, 1, 1),
        "classifier.0.weight": (1024, 576),
        "classifier.3.weight": (1000, 1024),
    },
    "mobilenet_v3_large": {
        "features.4.block.2.fc2.weight": (72, 24, 1, 1),
        "features.16.0.weight": (960, 160, 1, 1),
        "classifier.0.weight": (1280, 960),
    },
    "efficientnet_b0": {
        "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.2.0.block.2.fc1.weight": (4, 96, 1, 1),
        "features.8.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    },
}


@pytest.mark.parametrize("name", TORCHVISION_PARAMETERS)
def test_edge_models_use_torchvision_parameter_names(name):
    shapes = {
        key: tuple(value.shape)
        for key, value in build_model(name, num_classes=1000).state_dict().items()
    }
    for key, shape in TORCHVISION_PARAMETERS[name].items():
        assert shapes.get(key) == shape, key


@pytest.mark.parametrize("name", EDGE_MODELS)
@pytest.mark.parametrize(("size", "width"), [(28, 0.25), (64, 0.5), (224, 0.25)])
def test_edge_models_give_logits_at_the_studys_sizes_and_widths(name, size, width):
    model = build_model(name, num_classes=7, in_channels=1, image_size=size, width=width).eval()
    assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_layer_names_match_torchvision():
    vgg = dict(build_model("vgg16", num_classes=10).named_modules())
    for name in ("features.0", "features.28", "classifier.0", "classifier.3", "classifier.6"):
        assert name in vgg
    assert isinstance(vgg["features.28"], nn.Conv2d) and isinstance(vgg["classifier.6"], nn.Linear)
    resnet = dict(build_model("resnet18", num_classes=10).named_modules())
    for name in ("conv1", "bn1", "layer1.0.conv1", "layer2.0.downsample.0", "layer4.1.bn2", "fc"):
        assert name in resnet


@pytest.mark.parametrize("name", ["vgg16", "resnet18"])
@pytest.mark.parametrize("size", [28, 32, 64, 97, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_small_and_large_inputs_give_logits(name, size, channels):
    model = build_model(name, num_classes=5, in_channels=channels, image_size=size, width=0.125)
    model.eval()
    assert model(torch.randn(2, channels, size, size)).shape == (2, 5)


def test_vgg_never_pools_below_one_pixel_and_keeps_feature_numbering():
    model = build_model("vgg16", num_classes=8, image_size=28, width=0.25)
    # 28 -> 14 -> 7 -> 3 -> 1: the fifth pool would reach 0x0 and is an Identity.
    assert isinstance(model.features[30], nn.Identity)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    assert model.classifier[0].in_features == 128  # 512 * 0.25 channels x 1 x 1


def test_resnet_uses_small_stem_for_small_inputs():
    small = build_model("resnet18", num_classes=8, image_size=28)
    large = build_model("resnet18", num_classes=8, image_size=224)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    assert large.conv1.kernel_size == (7, 7) and isinstance(large.maxpool, nn.MaxPool2d)


def test_width_scales_every_layer():
    model = build_model("resnet18", num_classes=8, image_size=28, width=0.25)
    assert model.conv1.out_channels == 16
    assert model.layer4[1].conv2.out_channels == 128
    vgg = build_model("vgg16", num_classes=8, image_size=28, width=0.5)
    assert vgg.features[0].out_channels == 32 and vgg.classifier[3].out_features == 2048


def test_bad_model_arguments_are_refused():
    with pytest.raises(InputError, match="unknown model"):
        build_model("alexnet", num_classes=2)
    with pytest.raises(InputError, match="in_channels"):
        build_model("vgg16", num_classes=2, in_channels=2)
    with pytest.raises(InputError, match="image_size"):
        build_model("vgg16", num_classes=2, image_size=16)


def test_a_user_model_registers_and_its_layers_are_prunable():
    @register_model("tiny-test-net")
    def tiny(num_classes, in_channels, image_size, width):
        return nn.Sequential(
            nn.Conv2d(in_channels, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, num_classes),
        )

    assert "tiny-test-net" in model_names()
    model = build_model("tiny-test-net", num_classes=3, image_size=28)
    layers = discover_layers(model)
    assert [(layer.name, layer.kind) for layer in layers] == [("0", "conv"), ("5", "linear")]
    assert layers[0].bn is model[1]
