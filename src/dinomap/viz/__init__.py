"""Pictures of a run: static PNG maps (:mod:`dinomap.viz.static`) and, in sibling modules, the
interactive map, the run report and the slides."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time each name loads on use
    from dinomap.viz.report import write_report
    from dinomap.viz.slides import write_slides
    from dinomap.viz.static import save_all_maps, save_map

__all__ = [
    "save_all_maps",
    "save_map",
    "write_report",
    "write_slides",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "save_all_maps": "static",
        "save_map": "static",
        "write_report": "report",
        "write_slides": "slides",
    },
)
