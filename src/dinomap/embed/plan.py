"""Which images a run still has to embed: the resume plan, matched on path + content hash.

A rerun embeds only the items whose ``(path, sha256)`` the run does not store yet. Only items
whose path is stored need hashing (a new path is embedded anyway); they are hashed here, in a
few threads, or by ``hasher`` when one is given: the Ray engine hashes them in tasks on the
cluster (:func:`dinomap.embed.ray_engine.ray_hasher`), so a rerun over ten million stored
images does not read every one of them on the driver.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dinomap.data.sources import ImageSource, Item
from dinomap.store import stored_keys

__all__ = ["Hasher", "ResumePlan", "hash_here", "resume_plan"]

#: ``hasher(src, items, candidates)`` -> the sha256 of each candidate item, in order, and where
#: they were hashed (``"here"``, ``"ray"``).
Hasher = Callable[[ImageSource, list[Item], Sequence[int]], tuple[list[str], str]]


@dataclass
class ResumePlan:
    """What this run embeds: ``indices`` of ``items`` not yet stored (path + content hash);
    ``hashed``: how many stored paths were hashed to check their content, and ``where``."""

    items: list[Item]
    indices: list[int]
    seconds: float
    hashed: int = 0
    where: str = "here"

    @property
    def n_already(self) -> int:
        return len(self.items) - len(self.indices)


def hash_here(
    src: ImageSource, items: list[Item], candidates: Sequence[int]
) -> tuple[list[str], str]:
    """The candidates' hashes, read in a few threads of this process."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(src.sha256, candidates)), "here"


def resume_plan(
    src: ImageSource,
    run_dir: str | os.PathLike[str],
    limit: int | None,
    hasher: Hasher | None = None,
) -> ResumePlan:
    """The plan of a run of ``src`` (its first ``limit`` items) into ``run_dir``."""
    items: list[Item] = src.items[:limit] if limit else src.items
    indices = list(range(len(items)))
    t0 = time.perf_counter()
    done = stored_keys(run_dir)
    if not done:
        return ResumePlan(items, indices, time.perf_counter() - t0)
    stored_paths = {p for p, _ in done}
    candidates = [i for i in indices if items[i].path in stored_paths]
    hashes, where = (hasher or hash_here)(src, items, candidates) if candidates else ([], "here")
    by_index = dict(zip(candidates, hashes, strict=True))
    indices = [i for i in indices if (items[i].path, by_index.get(i, "")) not in done]
    return ResumePlan(items, indices, time.perf_counter() - t0, len(candidates), where)
