"""The table of sub-commands: name -> (module of ``dinomap.cli`` that registers it, one-line help).

``dinomap --help`` is built from this table alone; a command's module (and whatever library code
its options need) is imported only when that command is run or asked for its own ``--help``.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "command_help"]

#: In help order. A module may register several commands (``run`` registers ``run`` and ``demo``).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "embed + maps + export + report in one command"),
    "demo": ("run", "the whole pipeline on the built-in demo data (2,000 Fashion-MNIST images)"),
    "embed": ("embed", "embed an image collection into a run directory"),
    "map": ("map", "make 2-D maps (PCA, t-SNE, UMAP, parametric UMAP, t-SNE NN) with metrics"),
    "search": ("search", "find the images of a run most similar to a query image"),
    "cluster": ("cluster", "cluster the images of a run (HDBSCAN or k-means)"),
    "outliers": ("outliers", "score how unusual each image of a run is"),
    "label-issues": (
        "label_issues",
        "find images whose neighbours disagree with their label (suggests a label)",
    ),
    "duplicates": ("duplicates", "find exact copies and near-duplicate images in a run"),
    "project": ("project", "place new images on the existing maps of a run"),
    "report": ("report", "write RUN/report.html (interactive offline maps) and RUN/slides.md"),
    "export": ("export", "export a verified Triton model repository (TorchScript, ONNX)"),
    "check": ("check", "check a run's files against each other; --repair mends them"),
}


def command_help(name: str) -> str:
    """The one-line help of command ``name``."""
    return COMMANDS[name][1]
