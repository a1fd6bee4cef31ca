"""The sparse trainer is the one object a training loop talks to: a loop of one's own,
driving it through its public surface, computes what `sparsebench train` computes."""

from __future__ import annotations

import pytest
import torch

import sparsebench as sb
from sparsebench.data.dataset import BatchLoader
from sparsebench.data.synthetic import make_synthetic
from sparsebench.train.loop import RunDiverged, train_run
from sparsebench.train.trainer import NonFiniteLoss

CPU = torch.device("cpu")


# A few steps an epoch: small enough to train twice in a test, too few for the methods'
# and batch norm's liking, which is not what this test is about.
@pytest.mark.filterwarnings("ignore::sparsebench.sparsity.methods.SparsityWarning")
@pytest.mark.filterwarnings("ignore::sparsebench.train.build.TrainingWarning")
@pytest.mark.parametrize(
    ("model", "method", "options"),
    [
        # RigL changes its masks mid-epoch, from steps on the full-size network between
        # steps on the compact one; SET after each epoch.
        ("resnet18", "rigl", {"update_every": 3}),
        ("vgg16", "set", {}),
    ],
)
def test_a_loop_of_ones_own_computes_what_train_does(tmp_path, model, method, options):
    config = sb.RunConfig(
        model=model,
        width=0.125,
        dataset="synthetic",
        method=method,
        scenario="mixed",
        method_options=options,
        epochs=2,
        batch_size=32,
        lr=3e-3,
        seed=3,
        device="cpu",
    )
    data = make_synthetic(seed=1, samples=(256, 32, 32))
    checkpoint = tmp_path / "checkpoint.pt"
    train_run(config, data, checkpoint)
    trained = torch.load(checkpoint, weights_only=True)

    torch.manual_seed(3)
    network = sb.build_model(model, num_classes=4, image_size=28, width=0.125)
    # train's recommended recipe: AdamW (Adam with decoupled decay), a cosine schedule
    # with 5% of the steps warming up, flips and shifts
    optimizer = torch.optim.Adam(
        network.parameters(), lr=3e-3, weight_decay=0.05, decoupled_weight_decay=True, fused=True
    )
    pruning = sb.make_method(method, sb.SCENARIOS["mixed"], seed=3, options=options)
    loader = BatchLoader(
        data.splits["train"], data.mean, data.std, 32, CPU, shuffle=True, seed=3, augment="standard"
    )
    steps = 2 * len(loader)
    trainer = sb.SparseTrainer(
        network,
        optimizer,
        pruning,
        epochs=2,
        steps_per_epoch=len(loader),
        input_shape=(3, 28, 28),
        learning_rate=sb.LearningRate(3e-3, "cosine", steps, round(0.05 * steps)),
    )
    assert trainer.execution_name == "compact"
    for epoch in range(2):
        trainer.train()
        for images, labels in loader:
            trainer.step(images, labels)
        trainer.end_epoch(epoch)
    trainer.finish()

    ours = trainer.state_dict()
    theirs = trained["method"]["masks"]
    assert ours["method"]["masks"].keys() == theirs.keys()
    for name, keep in theirs.items():
        assert torch.equal(ours["method"]["masks"][name], keep), name
    for name, value in trained["model"].items():
        assert torch.equal(ours["model"][name], value), name


def test_a_non_finite_loss_stops_the_step_before_the_optimiser_takes_it():
    network = sb.build_model("vgg16", num_classes=4, image_size=28, width=0.125)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    pruning = sb.make_method("pre", sb.SCENARIOS["mixed"])
    trainer = sb.SparseTrainer(network, optimizer, pruning, epochs=1, steps_per_epoch=1)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    images = torch.full((2, 3, 28, 28), float("nan"))
    with pytest.raises(NonFiniteLoss, match="nan"):
        trainer.step(images, torch.tensor([0, 1]))
    after = trainer.full_model().state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items())
    assert pruning.step == 0


def test_a_run_whose_loss_diverges_names_the_epoch_the_step_and_the_learning_rate(tmp_path):
    config = sb.RunConfig(
        model="vgg16", width=0.125, dataset="synthetic", epochs=1, lr=1e30, device="cpu"
    )
    with pytest.raises(
        RunDiverged, match=r"epoch 1, step \d+; try a lower --lr \(this run: 1e\+30\)"
    ):
        train_run(config, make_synthetic(seed=0, samples=(256, 32, 32)), tmp_path / "c.pt")
