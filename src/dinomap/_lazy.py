"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists its public names and the submodule each lives in; a name's submodule is imported
on first access. ``import dinomap.reduce`` (or ``dinomap``, or the CLI's parser) then costs no
torch, scikit-learn, OpenCV or FAISS import until something is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` (whose ``__all__`` lists the names).

    ``exports`` maps each public name to the module that defines it, relative to ``package``
    (``"pca"``) or absolute (``"dinomap.embed.extract"``); ``"module:attr"`` re-exports an
    attribute under another name.

    Examples
    --------
    >>> getattr_, dir_ = lazy_exports("dinomap", {"NotFittedError": "exceptions"})
    >>> getattr_("NotFittedError").__name__
    'NotFittedError'
    """
    pkg = import_module(package)
    namespace = vars(pkg)

    def __getattr__(name: str) -> Any:
        try:
            target = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module, _, attr = target.partition(":")
        full = module if module.startswith("dinomap") else f"{package}.{module}"
        value = getattr(import_module(full), attr or name)
        namespace[name] = value  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    # A name that is also a submodule's name (``downstream.contact_sheet`` the function, in
    # ``downstream/contact_sheet.py``) would be replaced by the module object the first time the
    # submodule is imported: such names are bound now, once.
    for name, target in exports.items():
        module = target.partition(":")[0]
        full = module if module.startswith("dinomap") else f"{package}.{module}"
        if full == f"{package}.{name}":
            __getattr__(name)

    return __getattr__, __dir__
