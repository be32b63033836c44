"""Pictures of a run: static PNG maps (:mod:`dinomap.viz.static`) and, in sibling modules, the
interactive map, the run report and the slides."""

from __future__ import annotations

from dinomap.viz.static import save_all_maps, save_map

__all__ = ["save_all_maps", "save_map"]

# The run report and the slide deck (dinomap.viz.report, dinomap.viz.slides).
from dinomap.viz.report import write_report
from dinomap.viz.slides import write_slides

__all__ += ["write_report", "write_slides"]
