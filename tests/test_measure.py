import torch
from torch import nn

from sparsebench.measure.counting import count_model
from sparsebench.measure.energy import EnergyMeter
from sparsebench.measure.memory import PeakMemory


def test_macs_and_parameters_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))
    with torch.no_grad():
        model[0].weight[:2] = 0  # two of four filters pruned
        model[0].bias[:2] = 0
        model[2].weight[:, :100] = 0  # 200 of 512 linear weights pruned
    counts = count_model(model, (3, 8, 8))
    assert counts.params_dense == 108 + 4 + 512 + 2
    assert counts.params_effective == 54 + 2 + 312 + int(torch.count_nonzero(model[2].bias))
    assert counts.macs_dense == 108 * 64 + 512
    assert counts.macs_effective == 54 * 64 + 312


def test_cpu_peak_memory_is_reset_between_windows():
    memory = PeakMemory(torch.device("cpu"))
    memory.reset()
    big = torch.ones(64 * 2**20)  # 256 MiB
    big.add_(1)
    high = memory.peak_bytes()
    del big
    memory.reset()
    low = memory.peak_bytes()
    assert high - low > 200 * 2**20


def test_energy_is_a_measurement_or_missing_with_a_reason():
    meter = EnergyMeter(torch.device("cpu"))
    meter.begin()
    torch.ones(1000).sum()
    reading = meter.end()
    if meter.available:
        assert reading.joules is not None and reading.joules >= 0
        assert reading.source == "cpu-rapl"
    else:
        assert reading.joules is None and reading.source is None
        assert "RAPL" in reading.missing_reason or "sensor" in reading.missing_reason


def test_csr_storage_counts_only_stored_weights_and_shrinks_the_file():
    from sparsebench.deploy.linear_storage import CSRLinear
    from sparsebench.measure.counting import model_file_bytes

    linear = nn.Linear(200, 100)
    with torch.no_grad():
        linear.weight[:, :150] = 0  # 25% of the weights are left
    sparse = nn.Sequential(CSRLinear(linear.weight, linear.bias))
    dense = nn.Sequential(linear)
    dense_counts, sparse_counts = count_model(dense, (200,)), count_model(sparse, (200,))
    assert dense_counts.macs_dense == 20_000 and dense_counts.macs_effective == 5_000
    assert sparse_counts.macs_dense == sparse_counts.macs_effective == 5_000
    assert sparse_counts.params_dense == 5_000 + 100
    # 4-byte values and 4-byte column indices for a quarter of the weights: about half.
    assert model_file_bytes(sparse) < 0.6 * model_file_bytes(dense)
    x = torch.randn(3, 200)
    assert torch.allclose(sparse(x), dense(x), atol=1e-6)
