import pytest
import torch

from sparsebench.errors import InputError
from sparsebench.federated.aggregate import federated_average


def test_fedavg_weights_each_client_by_its_examples_by_hand():
    a = {"w": torch.tensor([1.0, 0.0, 4.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 0.0, 0.0]), "n": torch.tensor(5)}
    mean = federated_average([a, b], [100, 300])
    # (1*100 + 3*300) / 400 = 2.5; zeros stay zero; 4*100/400 = 1
    assert torch.equal(mean["w"], torch.tensor([2.5, 0.0, 1.0]))
    assert mean["w"].dtype == torch.float32
    assert int(mean["n"]) == 5


@pytest.mark.parametrize(
    ("states", "counts", "message"),
    [
        ([], [], "one example count per client state: 0 states"),
        ([{"w": torch.zeros(1)}], [1, 2], "1 states, 2 counts"),
        ([{"w": torch.zeros(1)}], [0], r"must have trained on examples, not \[0\]"),
    ],
)
def test_impossible_averages_are_refused(states, counts, message):
    with pytest.raises(InputError, match=message):
        federated_average(states, counts)
