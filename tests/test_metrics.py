import pytest
import torch

from sparsebench.train.metrics import MetricAccumulator, confusion_matrix, metrics_from_confusion


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 2, 0, 2])
    assert confusion_matrix(labels, predictions, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_macro_metrics_against_a_known_confusion_matrix():
    # rows: true class, columns: predicted.
    confusion = torch.tensor([[5, 2, 1], [0, 3, 1], [2, 0, 6]])
    metrics = metrics_from_confusion(confusion, loss=0.75)
    precision = [5 / 7, 3 / 5, 6 / 8]
    recall = [5 / 8, 3 / 4, 6 / 8]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall, strict=True)]
    assert metrics.accuracy == pytest.approx(14 / 20)
    assert metrics.precision == pytest.approx(sum(precision) / 3)
    assert metrics.recall == pytest.approx(sum(recall) / 3)
    assert metrics.f1 == pytest.approx(sum(f1) / 3)
    assert metrics.loss == 0.75


def test_a_class_never_predicted_counts_zero_not_nan():
    confusion = torch.tensor([[4, 0], [3, 0]])
    metrics = metrics_from_confusion(confusion, loss=1.0)
    assert metrics.precision == pytest.approx((4 / 7 + 0) / 2)
    assert metrics.recall == pytest.approx((1 + 0) / 2)
    assert metrics.f1 == pytest.approx((2 * (4 / 7) / (4 / 7 + 1)) / 2)


def test_accumulator_weights_loss_by_batch_size():
    accumulator = MetricAccumulator(2, torch.device("cpu"))
    accumulator.add(torch.tensor([[2.0, 0.0]] * 3), torch.tensor([0, 0, 1]), torch.tensor(1.0))
    accumulator.add(torch.tensor([[0.0, 2.0]]), torch.tensor([1]), torch.tensor(3.0))
    result = accumulator.result()
    assert result.loss == pytest.approx((3 * 1.0 + 1 * 3.0) / 4)
    assert accumulator.confusion.tolist() == [[2, 0], [1, 1]]
    assert result.accuracy == pytest.approx(0.75)
