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
