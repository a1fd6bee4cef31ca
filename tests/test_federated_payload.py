import numpy as np
import pytest
import torch

from sparsebench.federated.payload import (
    ENCODINGS,
    content_bytes,
    decode,
    encode,
    message_content,
)


def masked_state():
    """A conv weight with half its filters pruned and a linear weight with 80% of its
    entries pruned, a bias and batch-norm statistics without masks."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.randn(8, 4, 3, 3, generator=generator)
    filters = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0], dtype=torch.bool).view(8, 1, 1, 1)
    linear = torch.randn(10, 50, generator=generator)
    entries = torch.rand(10, 50, generator=generator) < 0.2
    state = {
        "conv.weight": conv * filters,
        "fc.weight": linear * entries,
        "fc.bias": torch.randn(10, generator=generator),
        "bn.num_batches_tracked": torch.tensor(7),
    }
    return state, {"conv.weight": filters, "fc.weight": entries}


@pytest.mark.parametrize("encoding", ["dense", "kept", "bitmask"])
def test_lossless_encodings_give_back_the_state_exactly(encoding):
    state, gates = masked_state()
    back = decode(encode(state, gates, encoding), state, gates, encoding)
    for name, tensor in state.items():
        assert torch.equal(back[name], tensor) and back[name].dtype == tensor.dtype


def test_int8_is_within_half_a_step_of_each_kept_weight_and_exact_elsewhere():
    state, gates = masked_state()
    arrays = encode(state, gates, "int8")
    back = decode(arrays, state, gates, "int8")
    for name in gates:
        step = float(arrays[f"{name}:scale"][0])
        assert step == pytest.approx(float(state[name].abs().max()) / 127)
        assert float((back[name] - state[name]).abs().max()) <= step / 2 + 1e-7
        pruned = ~gates[name].expand_as(state[name])
        assert bool((back[name][pruned] == 0).all())
    assert torch.equal(back["fc.bias"], state["fc.bias"])


def test_each_encoding_sends_what_it_says_by_hand():
    state, gates = masked_state()
    conv_kept = 4 * 4 * 3 * 3  # four filters of 36 weights
    fc_kept = int(gates["fc.weight"].sum())
    unmasked = 10 * 4 + 4  # the bias and the counter, as float32
    sizes = {e: values_bytes(encode(state, gates, e)) for e in ENCODINGS}
    assert sizes["dense"] == (288 + 500) * 4 + unmasked
    assert sizes["kept"] == (conv_kept + fc_kept) * 4 + unmasked
    bits = int(np.ceil(288 / 8)) + int(np.ceil(500 / 8))
    assert sizes["bitmask"] == sizes["kept"] + bits
    assert sizes["int8"] == conv_kept + fc_kept + 2 * 4 + bits + unmasked


def test_a_message_counts_its_values_and_little_else():
    state, gates = masked_state()
    for encoding in ENCODINGS:
        arrays = encode(state, gates, encoding)
        values, sent = values_bytes(arrays), content_bytes(message_content(arrays, {"round": 3}))
        # each array travels in numpy's format: a header of about 130 bytes
        assert values < sent < values + 200 * len(arrays) + 100
    big = {"w": np.zeros((100, 100), dtype=np.float32)}
    assert 40_000 < content_bytes(message_content(big, {})) < 40_300


def values_bytes(arrays) -> int:
    """Bytes of the arrays' values alone, without any framing."""
    return sum(array.nbytes for array in arrays.values())
