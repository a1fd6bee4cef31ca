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


def test_with_different_masks_an_entry_is_averaged_over_the_clients_holding_it():
    a = {"w": torch.tensor([1.0, 2.0, 0.0, 0.0]), "b": torch.tensor([1.0])}
    b = {"w": torch.tensor([3.0, 0.0, 6.0, 0.0]), "b": torch.tensor([3.0])}
    held = [
        {"w": torch.tensor([True, True, False, False])},
        {"w": torch.tensor([True, False, True, False])},
    ]
    mean = federated_average([a, b], [100, 300], held)
    # entry 0: both hold it, (100 + 900) / 400; entry 1: only a, 2; entry 2: only b, 6;
    # entry 3: nobody, 0; "b" is held whole by both.
    assert torch.equal(mean["w"], torch.tensor([2.5, 2.0, 6.0, 0.0]))
    assert torch.equal(mean["b"], torch.tensor([2.5]))
