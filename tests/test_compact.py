import pytest
import torch

from sparsebench.channels.narrowing import zero_maps_to_zero, zero_rows
from sparsebench.deploy.compact import compact_model
from sparsebench.deploy.linear_storage import CSRLinear
from sparsebench.measure.counting import count_model
from sparsebench.models import build_model
from sparsebench.sparsity import SCENARIOS, make_method

pytestmark = pytest.mark.kernels  # compact against masked: other channel counts, other sums

SIZES = {"resnet18": [28, 96], "vgg16": [28, 64]}


def masked(name, size, width, scenario, method="pre", seed=0):
    torch.manual_seed(seed)
    model = build_model(name, num_classes=5, image_size=size, width=width)
    shape = (3, size, size)
    make_method(method, SCENARIOS[scenario], seed=seed).on_train_begin(model, input_shape=shape)
    model.train()
    with torch.no_grad():  # non-trivial batch-norm running statistics
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return model.eval()


def relative_error(a, b):
    return float((a - b).abs().max() / a.abs().max())


@pytest.mark.parametrize("name", ["resnet18", "vgg16"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("width", [0.25, 0.23])  # 0.23 gives odd channel counts (15, 29, ...)
@pytest.mark.parametrize("method", ["pre", "set"])
def test_compact_model_equals_masked_model(name, scenario, width, method):
    for size in SIZES[name]:
        model = masked(name, size, width, scenario, method)
        compact = compact_model(model, (3, size, size))
        x = torch.randn(7, 3, size, size)
        with torch.no_grad():
            assert relative_error(model(x), compact(x)) < 1e-5
        if scenario != "linear-only":
            assert count_model(compact, (3, size, size)).macs_dense < (
                count_model(model, (3, size, size)).macs_dense
            )


def test_pruned_filters_are_physically_removed():
    model = masked("vgg16", 32, 0.25, "mixed")
    compact = compact_model(model, (3, 32, 32))
    convs = [m for m in compact.modules() if isinstance(m, torch.nn.Conv2d)]
    original = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    for small, big in zip(convs, original, strict=True):
        assert small.out_channels == big.out_channels - round(0.5 * big.out_channels) or (
            small.out_channels == (big.out_channels + 1) // 2
        )
    assert convs[1].in_channels == convs[0].out_channels


def test_a_channel_is_zero_only_where_weights_bias_and_batch_norm_say_so():
    conv = torch.nn.Conv2d(2, 4, 1, bias=True)
    bn = torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[1] = 1.0
        conv.bias.zero_()
        conv.bias[2] = 0.5  # dead weights, but a constant non-zero output: must stay
        bn.bias.zero_()
        bn.bias[3] = 0.1  # the batch norm shifts a dead filter: must stay
    zero = zero_rows(conv)
    assert (~zero).nonzero().flatten().tolist() == [1, 2]
    assert (~(zero & zero_maps_to_zero(bn))).nonzero().flatten().tolist() == [1, 2, 3]


def test_dead_linear_neurons_are_dropped_and_their_bias_folded():
    model = masked("vgg16", 28, 0.25, "uniform")
    with torch.no_grad():
        model.classifier[0].weight[:10] = 0  # ten neurons that only output relu(bias)
        model.classifier[0].bias[:10] = torch.linspace(-1, 1, 10)
    compact = compact_model(model, (3, 28, 28))
    linears = [m for m in compact.modules() if isinstance(m, torch.nn.Linear)]
    # The first linear reads the last conv's live channels (1x1 pooled at 28x28); a
    # neuron is dead when its weights on those inputs are all zero: our ten, plus any
    # that pruning left with no weight on a live channel.
    last_conv = [m for m in model.features if isinstance(m, torch.nn.Conv2d)][-1]
    live = last_conv.weight.flatten(1).ne(0).any(dim=1)
    dead = model.classifier[0].weight[:, live].eq(0).all(dim=1)
    assert dead[:10].all()
    assert linears[0].out_features == model.classifier[0].out_features - int(dead.sum())
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        assert relative_error(model(x), compact(x)) < 1e-5


def test_csr_linear_storage_gives_the_same_outputs():
    model = masked("vgg16", 28, 0.25, "mixed")
    dense = compact_model(model, (3, 28, 28), linear="dense")
    sparse = compact_model(model, (3, 28, 28), linear="csr")
    assert any(isinstance(m, CSRLinear) for m in sparse.modules())
    x = torch.randn(6, 3, 28, 28)
    with torch.no_grad():
        assert relative_error(dense(x), sparse(x)) < 1e-5


def test_a_network_that_cannot_be_grouped_is_refused_in_one_line():
    from test_channels import DataDependent

    from sparsebench.errors import InputError

    with pytest.raises(InputError, match="DataDependent cannot be traced by torch.fx"):
        compact_model(DataDependent(), (3, 8, 8))


def test_a_model_trained_by_sparsebench_train_compacts_exactly(tmp_path):
    from test_train import small_config

    from sparsebench.data import BatchLoader
    from sparsebench.data.synthetic import make_synthetic
    from sparsebench.deploy.load import load_run
    from sparsebench.store import ResultsStore
    from sparsebench.train import RunConfig
    from sparsebench.train.run import run_and_record

    config = small_config(width=0.23, method="set", epochs=2)
    data = make_synthetic()
    with ResultsStore(tmp_path / "r.db") as store:
        run_and_record(config, data, store, tmp_path / "runs")
    run = load_run(config.run_id(), tmp_path / "r.db", tmp_path / "runs")
    model = run.model
    assert RunConfig(**run.config) == config and run.data["classes"] == data.class_names
    compact = compact_model(model, (3, 28, 28))
    test = data.splits["test"]
    x, _ = next(iter(BatchLoader(test, data.mean, data.std, 128, torch.device("cpu"))))
    with torch.no_grad():
        assert relative_error(model(x), compact(x)) < 1e-5
    assert (
        count_model(compact, (3, 28, 28)).macs_dense
        < 0.5 * count_model(model, (3, 28, 28)).macs_dense
    )


EDGE = [
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
]


@pytest.mark.parametrize("name", EDGE)
@pytest.mark.parametrize("size", [28, 64])
def test_edge_networks_compact_by_their_channel_groups_to_the_masked_outputs(name, size):
    model = masked(name, size, 0.25, "uniform")
    compact = compact_model(model, (3, size, size))
    x = torch.randn(5, 3, size, size)
    with torch.no_grad():
        assert relative_error(model(x), compact(x)) < 1e-5
    shape = (3, size, size)
    assert count_model(compact, shape).macs_dense < count_model(model, shape).macs_dense
    if name != "resnet50":  # the expanded channels of inverted residuals go too
        assert depthwise_channels(compact) < 0.5 * depthwise_channels(model)


def depthwise_channels(model: torch.nn.Module) -> int:
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    return sum(conv.out_channels for conv in convs)


@pytest.mark.parametrize("name", EDGE)
def test_edge_networks_export_compact_to_onnx_float_and_int8(tmp_path, name):
    """The compact network in ONNX Runtime computes what PyTorch does (float), and it
    quantises to int8 (static, per channel) through its gates and depthwise convs."""
    from sparsebench.deploy.export import (
        export_onnx,
        max_difference,
        onnx_logits,
        onnx_session,
        quantize_int8,
    )

    compact = compact_model(masked(name, 32, 0.25, "mixed"), (3, 32, 32))
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    float_path = export_onnx(compact, x[:1], tmp_path / "float.onnx")
    assert max_difference(onnx_session(float_path), compact, x)[1] < 1e-4
    int8_path = quantize_int8(float_path, tmp_path / "int8.onnx", [x[:8], x[8:]])
    logits = onnx_logits(onnx_session(int8_path), x)
    assert logits.shape == (16, 5)


def test_a_network_of_ones_own_compacts_through_a_concatenation_and_a_gate():
    """Channels removed together where branches are concatenated and gated: the second
    branch's first two filters and the gate's matching rows, read at their offset."""
    from test_channels import Branches

    torch.manual_seed(0)
    model = Branches().eval()
    with torch.no_grad():
        for layer, rows in ((model.right, [0, 1]), (model.excite, [4, 5])):
            layer.weight[rows] = 0
            layer.bias[rows] = 0
        model.bn.weight[[4, 5]] = 0  # the batch norm over the concatenation, zeroed
        model.bn.bias[[4, 5]] = 0  # as pruning zeroes a filter's
        model.depthwise.bias[[4, 5]] = 0
    compact = compact_model(model, (3, 16, 16))
    assert (compact.right.out_channels, compact.excite.out_channels) == (4, 8)
    assert (compact.depthwise.out_channels, compact.fc.in_features) == (8, 8)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert relative_error(model(x), compact(x)) < 1e-5


class TwoContributors(torch.nn.Module):
    """A residual sum of two conv + batch-norm branches."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6)
        self.b, self.bn_b = torch.nn.Conv2d(3, 6, 1), torch.nn.BatchNorm2d(6)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.bn_a(self.a(x)) + self.bn_b(self.b(x))
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.relu(total), 1)
        return self.head(torch.flatten(pooled, 1))


def test_each_contributor_to_a_residual_sum_computes_only_its_own_channels():
    """Channel 1 is pruned in both branches: the sum loses it. Channels 0 and 2 are
    pruned in branch b only: the sum keeps them (branch a computes them), branch b does
    not compute them and adds its three channels into their places."""
    torch.manual_seed(0)
    model = TwoContributors()
    model.train()
    with torch.no_grad():
        for conv, norm, rows in ((model.a, model.bn_a, [1]), (model.b, model.bn_b, [0, 1, 2])):
            conv.weight[rows] = 0
            conv.bias[rows] = 0
            norm.weight[rows] = 0
            norm.bias[rows] = 0
        for _ in range(3):
            model(torch.randn(8, 3, 8, 8))
    model.eval()
    compact = compact_model(model, (3, 8, 8))
    assert compact.get_submodule("a").out_channels == 5
    assert compact.get_submodule("b").out_channels == 3
    assert compact.get_submodule("head").in_features == 5
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert relative_error(model(x), compact(x)) < 1e-5
