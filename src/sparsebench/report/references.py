"""Published accuracies the study compares its BloodMNIST results with (its Table 1).

Each entry says where the number comes from and under which protocol it was measured, so
a reader can judge how comparable it is with a run here. An accuracy that could not be
transcribed is None and is shown as missing, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

MEDMNIST_V2 = (
    "Yang et al., MedMNIST v2, Scientific Data 10:41 (2023), Table 3; "
    "doi:10.1038/s41597-022-01721-8"
)
MEDMNIST_V2_PROTOCOL = (
    "official BloodMNIST split; trained from scratch 100 epochs, Adam lr 1e-3 "
    "(x0.1 at epochs 50 and 75), batch 128; model chosen on validation; mean of 3+ trials"
)
DOERRICH_2024 = (
    "Doerrich et al., Rethinking model prototyping through the MedMNIST+ dataset "
    "collection, Scientific Reports 15:7669 (2025), arXiv:2404.15786; tables (as images) in "
    "github.com/sdoerrich97/rethinking-model-prototyping-MedMNISTPlus (BENCHMARK.md)"
)
DOERRICH_2024_PROTOCOL = (
    "official MedMNIST+ split; end-to-end training from ImageNet weights at 28, 64, 128 "
    "and 224 px; mean of 3 seeds"
)


@dataclass(frozen=True)
class Reference:
    dataset: str
    model: str
    setting: str
    accuracy: float | None
    source: str
    protocol: str
    note: str = ""


REFERENCES = [
    Reference("bloodmnist", "resnet18", "28x28", 0.958, MEDMNIST_V2, MEDMNIST_V2_PROTOCOL),
    Reference("bloodmnist", "resnet18", "224x224", 0.963, MEDMNIST_V2, MEDMNIST_V2_PROTOCOL),
    Reference(
        "bloodmnist",
        "vgg16",
        "28 to 224 px",
        None,
        DOERRICH_2024,
        DOERRICH_2024_PROTOCOL,
        note="published as a table image; not transcribed here",
    ),
    Reference(
        "bloodmnist",
        "resnet18",
        "28 to 224 px",
        None,
        DOERRICH_2024,
        DOERRICH_2024_PROTOCOL,
        note="published as a table image; not transcribed here",
    ),
]
