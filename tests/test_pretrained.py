"""`--init-from`: a run starts from a torchvision-format state dict (generated here:
nothing is downloaded) or another run's weights, and `pre` prunes the loaded filters."""

from __future__ import annotations

import pytest
import torch
from conftest import cli_json
from torch import nn
from typer.testing import CliRunner

from sparsebench.cli import app
from sparsebench.data.synthetic import make_synthetic
from sparsebench.errors import InputError
from sparsebench.models import build_model
from sparsebench.train import RunConfig
from sparsebench.train.build import build_run

runner = CliRunner()


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """What `torch.save(torchvision.models.resnet18(weights=...).state_dict())` writes:
    the full-width network, ImageNet stem and 1000 classes, torchvision's names."""
    torch.manual_seed(11)
    model = build_model("resnet18", num_classes=1000, image_size=224)
    for module in model.modules():  # trained-looking batch norms, not the 1/0 defaults
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.running_mean.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("weights") / "resnet18-imagenet.pth"
    torch.save(model.state_dict(), path)
    return path


def built(path, **settings) -> nn.Module:
    config = RunConfig(
        model="resnet18",
        dataset="synthetic",
        image_size=96,  # the ImageNet stem (7x7, stride 2) is used from 96 px
        init_from=str(path),
        device="cpu",
        **settings,
    )
    data = make_synthetic(seed=0, samples=(64, 16, 16)).adapted(96, settings.get("in_channels", 3))
    return build_run(config, data, torch.device("cpu")).model


def test_every_tensor_but_the_replaced_classifier_is_loaded_exactly(imagenet_file):
    source = torch.load(imagenet_file, weights_only=True)
    with pytest.warns(UserWarning, match="classifier fc replaced"):
        model = built(imagenet_file)
    state = model.state_dict()
    for name, value in source.items():
        if name.startswith("fc."):
            assert state[name].shape[0] == 4  # the data's four classes
        else:
            assert torch.equal(state[name], value), name


def test_grey_images_sum_the_first_filters_over_colour(imagenet_file):
    source = torch.load(imagenet_file, weights_only=True)
    with pytest.warns(UserWarning):
        model = built(imagenet_file, in_channels=1)
    expected = source["conv1.weight"].sum(dim=1, keepdim=True)
    assert torch.equal(model.conv1.weight, expected)


def test_pre_prunes_the_loaded_filters_by_their_l1_norm(imagenet_file):
    source = torch.load(imagenet_file, weights_only=True)
    with pytest.warns(UserWarning):
        model = built(imagenet_file, method="pre", scenario="mixed")
    for name in ("conv1", "layer1.0.conv1", "layer3.1.conv2", "layer4.0.downsample.0"):
        weight = dict(model.named_modules())[name].weight
        alive = weight.flatten(1).abs().sum(1).ne(0)
        norms = source[f"{name}.weight"].flatten(1).abs().sum(1)
        strongest = set(norms.topk(int(alive.sum())).indices.tolist())
        assert set(alive.nonzero().flatten().tolist()) == strongest, name
        assert int(alive.sum()) == weight.shape[0] // 2  # mixed: half the filters
        # the survivors are the file's filters, untouched
        assert torch.equal(weight[alive], source[f"{name}.weight"][alive])


def test_the_run_id_names_the_content_not_the_place(imagenet_file, tmp_path):
    copy = tmp_path / "elsewhere.pth"
    copy.write_bytes(imagenet_file.read_bytes())
    settings = {"model": "resnet18", "dataset": "synthetic", "method": "pre"}
    first = RunConfig(**settings, init_from=str(imagenet_file))
    moved = RunConfig(**settings, init_from=str(copy))
    assert first.run_id() == moved.run_id() != RunConfig(**settings).run_id()
    state = torch.load(copy, weights_only=True)
    state["conv1.weight"][0, 0, 0, 0] += 1.0
    torch.save(state, copy)
    changed = RunConfig(**settings, init_from=str(copy))
    assert changed.run_id() != first.run_id()
    # a file changed under a run that was set up with it is refused
    with pytest.raises(InputError, match="changed since run"):
        data = make_synthetic(seed=0, samples=(64, 16, 16))
        build_run(moved, data.adapted(96, 3), torch.device("cpu"))


def test_a_file_of_another_width_or_model_is_refused_in_one_line(imagenet_file, tmp_path):
    train = ["train", "--dataset", "synthetic", "--epochs", "1", "--db", str(tmp_path / "r.db")]
    narrow = runner.invoke(app, [*train, "--width", "0.25", "--init-from", str(imagenet_file)])
    assert narrow.exit_code == 2
    assert "weights fit this model's shapes (a torchvision file holds the full-width model" in (
        narrow.stderr
    )
    vgg = runner.invoke(app, [*train, "--model", "vgg16", "--init-from", str(imagenet_file)])
    assert vgg.exit_code == 2 and "not a state dict of this model" in vgg.stderr
    missing = runner.invoke(app, [*train, "--init-from", str(tmp_path / "none.pth")])
    assert missing.exit_code == 2 and "--init-from file does not exist" in missing.stderr


def test_a_run_starts_from_another_runs_final_weights(tmp_path):
    base = ["--model", "resnet18", "--width", "0.125", "--dataset", "synthetic"]
    first = cli_json(["train", *base, "--epochs", "1", "--lr", "0.003"], tmp_path)
    second = cli_json(
        ["train", *base, "--epochs", "1", "--seed", "4", "--init-from", f"run:{first['run_id']}"],
        tmp_path,
    )
    assert second["config"]["init_digest"].startswith("sha256:")
    finished = torch.load(tmp_path / "runs" / first["run_id"] / "checkpoint.pt", weights_only=True)
    config = RunConfig(**second["config"])
    model = build_run(config, make_synthetic(seed=4), torch.device("cpu")).model
    for name, value in finished["model"].items():
        assert torch.equal(model.state_dict()[name], value), name
