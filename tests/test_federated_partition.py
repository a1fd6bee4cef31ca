import math

import pytest
import torch

from sparsebench.errors import InputError
from sparsebench.federated import partition_clients

# 6 classes of unequal size: 600 images.
LABELS = torch.cat([torch.full((n,), c) for c, n in enumerate([200, 150, 100, 80, 50, 20])])


def assert_disjoint_cover(partition, total):
    everything = torch.cat(partition.indices)
    assert len(everything) == total and len(torch.unique(everything)) == total


def test_iid_deals_near_equal_disjoint_parts_the_same_way_for_the_same_seed():
    partition = partition_clients(LABELS, 7, "iid", seed=3)
    assert_disjoint_cover(partition, 600)
    assert max(partition.sizes()) - min(partition.sizes()) <= 1
    again = partition_clients(LABELS, 7, "iid", seed=3)
    other = partition_clients(LABELS, 7, "iid", seed=4)
    assert all(torch.equal(a, b) for a, b in zip(partition.indices, again.indices, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(partition.indices, other.indices, strict=True))
    for index, counts in zip(partition.indices, partition.class_counts, strict=True):
        assert counts == torch.bincount(LABELS[index], minlength=6).tolist()


def class_shares(partition):
    counts = torch.tensor(partition.class_counts, dtype=torch.float64)
    return counts / counts.sum(dim=1, keepdim=True)


def test_a_large_alpha_is_close_to_iid_and_a_small_one_skews_each_client_to_few_classes():
    overall = torch.bincount(LABELS).double() / len(LABELS)
    near_iid = partition_clients(LABELS, 5, "dirichlet", alpha=1000.0, seed=0)
    assert_disjoint_cover(near_iid, 600)
    assert float((class_shares(near_iid) - overall).abs().max()) < 0.05
    skewed = partition_clients(LABELS, 5, "dirichlet", alpha=0.05, seed=0)
    assert_disjoint_cover(skewed, 600)
    # each client's largest class: most of its images
    assert float(class_shares(skewed).max(dim=1).values.mean()) > 0.7


def test_classes_per_client_gives_each_client_exactly_that_many_classes():
    partition = partition_clients(LABELS, 6, "classes", classes_per_client=2, seed=1)
    assert_disjoint_cover(partition, 600)  # 6 clients x 2 slots hold each class twice
    for counts in partition.class_counts:
        assert sum(1 for n in counts if n) == 2
    one = partition_clients(LABELS, 3, "classes", classes_per_client=1, seed=1)
    assert len(one.warnings) == 4  # three single-class clients, three classes held by none
    assert one.warnings[0].startswith("client 0 holds one class (")
    assert "no client holds class(es)" in one.warnings[-1]
    assert sum(one.sizes()) < 600


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clients": 0}, "clients must be at least 1, not 0"),
        ({"clients": 601}, "601 clients but 600 training images"),
        ({"clients": 4, "scheme": "dirichlet", "alpha": 0.0}, "alpha must be a positive"),
        ({"clients": 4, "scheme": "dirichlet", "alpha": -1.0}, "not -1.0"),
        ({"clients": 4, "scheme": "dirichlet", "alpha": math.nan}, "not nan"),
        ({"clients": 4, "scheme": "dirichlet"}, "not None"),
        ({"clients": 4, "scheme": "classes", "classes_per_client": 7}, "between 1 and the"),
        ({"clients": 4, "scheme": "shards"}, "partition 'shards' is not one of"),
    ],
)
def test_bad_partitions_are_refused_in_one_line(kwargs, message):
    clients = kwargs.pop("clients")
    with pytest.raises(InputError, match=message):
        partition_clients(LABELS, clients, **kwargs)


def test_a_dirichlet_draw_that_always_leaves_a_client_empty_names_it():
    few = torch.tensor([0, 0, 1, 1, 2])
    with pytest.raises(InputError, match=r"client \d+ gets no image in any of 10 Dirichlet"):
        partition_clients(few, 5, "dirichlet", alpha=0.001, seed=0)
