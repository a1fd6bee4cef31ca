"""Published accuracies the study compares its BloodMNIST results with (its Table 1).

Each entry says where the number comes from and under which protocol it was measured, so
a reader can judge how comparable it is with a run here. The values are those of
`shared/reference/literature_bloodmnist.md`: none was measured here, and their protocols
differ from the study's (from scratch at 28x28, Adam 1e-4, 50 epochs).
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
    "collection (arXiv:2404.15786, 2024); values read from the figure "
    "assets/benchmark_results_bloodmnist.png of "
    "github.com/sdoerrich97/rethinking-model-prototyping-MedMNISTPlus (published as an "
    "image only)"
)
DOERRICH_2024_PROTOCOL = (
    "official split; ImageNet-pretrained (timm), trained end to end, AdamW lr 1e-4, batch "
    "64, up to 100 epochs with a cosine schedule and early stopping (patience 5); mean +- "
    "sd of 3 seeds"
)


@dataclass(frozen=True)
class Reference:
    dataset: str
    model: str
    setting: str
    accuracy: float
    source: str
    protocol: str
    label: str  # the protocol in a few words, shown beside the value in Table 1
    spread: float | None = None  # standard deviation over the source's seeds


REFERENCES = [
    Reference(
        "bloodmnist",
        "resnet18",
        "28x28",
        0.958,
        MEDMNIST_V2,
        MEDMNIST_V2_PROTOCOL,
        "MedMNIST v2: from scratch, 28x28, Adam 1e-3, 100 epochs",
    ),
    Reference(
        "bloodmnist",
        "resnet18",
        "28x28 upscaled to 224 (nearest)",
        0.963,
        MEDMNIST_V2,
        MEDMNIST_V2_PROTOCOL,
        "MedMNIST v2: from scratch, 28 upscaled to 224",
    ),
    Reference(
        "bloodmnist",
        "vgg16",
        "28x28 zero-padded onto 224x224",
        0.9485,
        DOERRICH_2024,
        DOERRICH_2024_PROTOCOL,
        "Doerrich et al.: ImageNet-pretrained, 28 padded to 224",
        0.0047,
    ),
    Reference(
        "bloodmnist",
        "resnet18",
        "28x28 zero-padded onto 224x224",
        0.9193,
        DOERRICH_2024,
        DOERRICH_2024_PROTOCOL,
        "Doerrich et al.: ImageNet-pretrained, 28 padded to 224",
        0.0037,
    ),
    Reference(
        "bloodmnist",
        "vgg16",
        "224x224 (MedMNIST+)",
        0.9877,
        DOERRICH_2024,
        DOERRICH_2024_PROTOCOL,
        "Doerrich et al.: ImageNet-pretrained, 224x224",
        0.0031,
    ),
    Reference(
        "bloodmnist",
        "resnet18",
        "224x224 (MedMNIST+)",
        0.9894,
        DOERRICH_2024,
        DOERRICH_2024_PROTOCOL,
        "Doerrich et al.: ImageNet-pretrained, 224x224",
        0.0008,
    ),
]


def literature_for(dataset: str, model: str) -> str:
    """Table 1's literature cell: each value with its spread and protocol label."""
    cells = [
        f"{ref.accuracy:.4g}" + (f" ± {ref.spread:.4f}" if ref.spread else "") + f" ({ref.label})"
        for ref in REFERENCES
        if ref.dataset == dataset and ref.model == model
    ]
    return "; ".join(cells) if cells else "none published here"
