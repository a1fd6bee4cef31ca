"""The learning rate at each step, and the trainer that follows it across a resume."""

from __future__ import annotations

import math

import pytest
import torch

from sparsebench.data.synthetic import make_synthetic
from sparsebench.train import RunConfig
from sparsebench.train.build import build_run
from sparsebench.train.schedule import LearningRate


def test_cosine_with_warm_up_by_hand():
    rate = LearningRate(1.0, "cosine", total_steps=110, warmup_steps=10)
    assert [rate(step) for step in range(3)] == [0.1, 0.2, 0.3]
    assert rate(9) == 1.0  # the warm-up ends at the base rate
    assert rate(10) == 1.0
    assert rate(60) == pytest.approx(0.5)  # half-way through the cosine
    assert rate(35) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert rate(110) == pytest.approx(0.0, abs=1e-12)
    assert rate(500) == pytest.approx(0.0, abs=1e-12)  # past the end it stays at zero


def test_step_and_constant_schedules_by_hand():
    step = LearningRate(0.1, "step", total_steps=100)
    assert [step(s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    constant = LearningRate(1e-4, "constant", total_steps=100, warmup_steps=4)
    assert [constant(s) for s in (0, 3, 4, 99)] == pytest.approx([2.5e-5, 1e-4, 1e-4, 1e-4])


def test_the_trainer_steps_at_the_schedules_rate_and_keeps_its_clock():
    """Each step's rate is the schedule's at the trainer's step count, in the optimiser
    that takes the step; the count travels in the trainer's state, so a resumed run
    continues on the curve."""
    data = make_synthetic(num_classes=2, samples=(64, 16, 16))
    config = RunConfig(
        dataset="synthetic",
        model="resnet18",
        width=0.125,
        method="set",
        epochs=2,
        batch_size=16,
        warmup=0.25,
    )
    trainer = build_run(config, data, torch.device("cpu"))
    schedule = LearningRate(config.lr, "cosine", total_steps=8, warmup_steps=2)
    assert [trainer.learning_rate(step) for step in range(8)] == [schedule(s) for s in range(8)]
    train = data.splits["train"]
    seen = []
    for start in range(0, 48, 16):
        images = train.images[start : start + 16].float() / 255
        taken = trainer.step(images, train.labels[start : start + 16])
        optimizer = trainer.execution.network_for_step()[1]
        seen.append(optimizer.param_groups[0]["lr"])
        assert taken.loss.isfinite()
    assert seen == pytest.approx([schedule(0), schedule(1), schedule(2)])
    state = trainer.state_dict()
    assert state["steps"] == 3
    again = build_run(config, data, torch.device("cpu"))
    again.load_state_dict(state)
    assert again.steps == 3


def test_post_training_retrains_at_a_hundredth_or_on_the_rewound_schedule():
    """Three dense epochs of 10 steps on a cosine schedule over them; then two epochs of
    fine-tuning at a hundredth of the base rate, or the schedule's last two epochs again
    (learning-rate rewinding)."""

    def rates(retrain: str) -> list[float]:
        config = RunConfig(
            dataset="synthetic",
            model="resnet18",
            width=0.0625,
            method="post",
            epochs=3,
            batch_size=16,
            lr=1.0,
            warmup=0.0,
            method_options={"retrain": retrain, "fine_tune_epochs": 2},
        )
        data = make_synthetic(num_classes=2, samples=(160, 16, 16))
        trainer = build_run(config, data, torch.device("cpu"))
        return [trainer.learning_rate(step) for step in range(50)]

    dense = LearningRate(1.0, "cosine", total_steps=30)
    finetune, rewind = rates("finetune"), rates("lr-rewind")
    assert finetune[:30] == rewind[:30] == [dense(step) for step in range(30)]
    assert finetune[30:] == [0.01] * 20
    assert rewind[30:] == [dense(step) for step in range(10, 30)]


def test_retraining_needs_epochs_to_retrain():
    with pytest.raises(ValueError, match="retrain=lr-rewind needs fine_tune_epochs of 1"):
        RunConfig(dataset="synthetic", method="post", method_options={"retrain": "lr-rewind"})
