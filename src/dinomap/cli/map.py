"""``dinomap map``: embeddings -> 2-D maps, metrics, plots and saved mappers.

Either a run directory (``dinomap map runs/fm --methods tsne,umap --seed 7``) or a features
file of your own (``dinomap map features.npy --labels labels.npy --out runs/f``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dinomap.cli._commands import command_help
from dinomap.cli._common import QUALITIES, QUALITY_HELP
from dinomap.exceptions import DinomapError, InvalidParameterError, SourceNotFoundError

if TYPE_CHECKING:  # numpy loads inside the functions that read files: `map --help` stays light
    import numpy as np

__all__ = ["load_features", "load_labels", "parse_params", "register"]

FEATURE_SUFFIXES = (".npy", ".npz", ".csv", ".txt", ".tsv")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add the ``map`` sub-command."""
    from dinomap.reduce.registry import list_reducers

    p = sub.add_parser(
        "map",
        help=command_help("map"),
        description="Make 2-D maps of a run's embeddings (or of a features file), score them "
        "(trustworthiness, kNN preservation, kNN label accuracy) and write maps.parquet, "
        "metrics.json, plots/ and mappers/.",
    )
    p.add_argument(
        "source",
        help="run directory, or a features file (.npy, .npz, .csv/.txt: one row per point)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated methods among {','.join(list_reducers())} (default: all available)",
    )
    p.add_argument("--seed", type=int, default=0, help="random_state of every map (default: 0)")
    p.add_argument("--labels", help="labels file for a features file (.npy or one label per line)")
    p.add_argument("--paths", help="file with one identifier per line for a features file")
    p.add_argument("--out", help="output directory (default: the run directory)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="a method parameter, repeatable (e.g. tsne.perplexity=50, umap.n_neighbors=30); "
        "METHOD.backend picks the implementation: tsne.backend=opentsne|cuml, "
        "umap.backend=umap-learn|torchdr|cuml",
    )
    p.add_argument(
        "--large-data", default="auto", metavar="auto|on|off|N",
        help="fit t-SNE, UMAP and the neural mappers on a random sample and place the other "
        "points with their transform: auto (above 200,000 points; default), on, off, or the "
        "sample size N",
    )  # fmt: skip
    p.add_argument("--quality", choices=QUALITIES, default="fast", help=QUALITY_HELP)
    p.add_argument("--n-jobs", type=int, default=None, help="threads for t-SNE and UMAP")
    p.add_argument(
        "--device", default=None,
        help="device of the neural mappers: auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps",
    )  # fmt: skip
    p.add_argument("--no-plots", action="store_true", help="skip plots/")
    p.add_argument("--no-mappers", action="store_true", help="do not save fitted mappers")
    p.add_argument("--json", action="store_true", help="print metrics.json instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_run)


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """Parse ``METHOD.KEY=VALUE`` items; values are JSON when they parse, strings otherwise.

    Examples
    --------
    >>> parse_params(["tsne.perplexity=50", "umap.metric=cosine"])
    {'tsne': {'perplexity': 50}, 'umap': {'metric': 'cosine'}}
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise InvalidParameterError(
                f"--param must look like METHOD.KEY=VALUE (e.g. tsne.perplexity=50); got {item!r}."
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, list):
            value = tuple(value)
        out.setdefault(method.strip(), {})[name.strip()] = value
    return out


def load_features(path: str | Path) -> np.ndarray:
    """Read a 2-D features array from ``.npy``, ``.npz`` (first array) or text (``.csv``...)."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise SourceNotFoundError(f"{p} does not exist.")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(p, allow_pickle=False) as data:
            if not data.files:
                raise DinomapError(f"{p} holds no array.")
            key = next((k for k in ("X", "features", "embeddings") if k in data.files), None)
            arr = data[key or data.files[0]]
    elif suffix in (".csv", ".txt", ".tsv"):
        delimiter = "\t" if suffix == ".tsv" else ("," if suffix == ".csv" else None)
        arr = np.loadtxt(p, delimiter=delimiter, dtype=np.float32, ndmin=2)
    else:
        raise InvalidParameterError(
            f"features file must end in one of {', '.join(FEATURE_SUFFIXES)}; got {p.name!r}."
        )
    if arr.ndim != 2:
        raise InvalidParameterError(
            f"{p} must hold a 2-D array (n_points, n_features); got shape {arr.shape}."
        )
    return np.asarray(arr)


def load_labels(path: str | Path) -> list[str | None]:
    """Read labels from ``.npy`` (any 1-D array) or a text file with one label per line."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise SourceNotFoundError(f"{p} does not exist.")
    if p.suffix.lower() == ".npy":
        arr = np.load(p, allow_pickle=False)
        if arr.ndim != 1:
            raise InvalidParameterError(f"{p} must hold a 1-D array; got shape {arr.shape}.")
        return [str(v) for v in arr.tolist()]
    lines = p.read_text(encoding="utf-8").splitlines()
    return [line.strip() or None for line in lines]


def _large_data(value: str) -> bool | str | int:
    """``--large-data`` as make_maps' ``large_data``."""
    low = value.strip().lower()
    choices: dict[str, bool | str] = {"auto": "auto", "on": True, "true": True, "off": False,
                                      "false": False}  # fmt: skip
    if low in choices:
        return choices[low]
    if low.isdigit():
        return int(low)
    raise InvalidParameterError(
        f"--large-data must be auto, on, off or a sample size; got {value!r}."
    )


def _run(args: argparse.Namespace) -> int:
    from dinomap.maps import make_maps

    src = Path(args.source)
    params = parse_params(args.param)
    common: dict[str, Any] = {
        "methods": args.methods,
        "random_state": args.seed,
        "params": params,
        "n_jobs": args.n_jobs,
        "device": args.device,
        "plots": not args.no_plots,
        "save_mappers": not args.no_mappers,
        "verbose": not args.quiet and not args.json,
        "progress": False if args.quiet else None,  # None: bars when stderr is a terminal
        "large_data": _large_data(args.large_data),
        "quality": args.quality,
    }
    if src.is_dir():
        if args.labels or args.paths:
            raise InvalidParameterError(
                "--labels and --paths apply to a features file; a run directory has its own."
            )
        result = make_maps(src, out_dir=args.out, **common)
    elif src.is_file():
        if not args.out:
            raise InvalidParameterError(
                f"--out DIR is required for a features file ({src.name}): where to write the maps."
            )
        X = load_features(src)
        labels = load_labels(args.labels) if args.labels else None
        paths = None
        if args.paths:
            paths = [line.strip() for line in Path(args.paths).read_text("utf-8").splitlines()]
        result = make_maps((X, labels), paths=paths, out_dir=args.out, **common)
    else:
        raise SourceNotFoundError(
            f"{src} does not exist; give a run directory or a features file "
            f"({', '.join(FEATURE_SUFFIXES)})."
        )
    if args.json and not args.quiet:
        print(json.dumps(result.metrics, indent=2, default=str))
    return 0
