"""The paper's reported numbers, kept in one place so the report can set our sweep beside them.

Test accuracy in percent (Tables 5, 6 and 7 of the paper), one value per dataset and method. The
paper reports single numbers: no seeds, spread or confidence intervals.
"""

from __future__ import annotations

METHODS: tuple[str, ...] = ("teacher", "scratch", "rkd", "ikd")

# Test accuracy (%) as printed in the paper.
PAPER_ACCURACY: dict[str, dict[str, float]] = {
    "mnist": {"teacher": 98.33, "scratch": 97.90, "rkd": 98.00, "ikd": 98.43},
    "fashion_mnist": {"teacher": 89.90, "scratch": 88.47, "rkd": 87.60, "ikd": 89.97},
    "usps": {"teacher": 90.22, "scratch": 86.07, "rkd": 88.72, "ikd": 88.72},
    "cifar10": {"teacher": 75.23, "scratch": 63.47, "rkd": 64.13, "ikd": 74.70},
    "cifar100": {"teacher": 48.70, "scratch": 34.60, "rkd": 35.03, "ikd": 49.83},
}

# The paper's ordering of dataset complexity, simplest first; rank 1 = simplest.
COMPLEXITY_ORDER: tuple[str, ...] = ("mnist", "fashion_mnist", "usps", "cifar10", "cifar100")
COMPLEXITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(COMPLEXITY_ORDER, start=1)}

DATASET_LABELS: dict[str, str] = {
    "mnist": "MNIST",
    "fashion_mnist": "FashionMNIST",
    "usps": "USPS",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}
METHOD_LABELS: dict[str, str] = {"teacher": "Teacher", "scratch": "Scratch", "rkd": "RKD", "ikd": "IKD"}

# Epochs the paper trained for (section 4.1): a run trained for fewer or more is not the paper's protocol.
PAPER_EPOCHS: dict[str, int] = {"teacher": 20, "scratch": 10, "rkd": 10, "ikd": 10}

# Name of the recipe (conf/recipe/paper.yaml) whose runs are comparable with the numbers above.
PAPER_RECIPE = "paper"


def paper_accuracy(dataset: str, method: str) -> float | None:
    """The paper's test accuracy (%) for one cell, or None where the paper has no such cell."""
    return PAPER_ACCURACY.get(dataset, {}).get(method)
