"""The run store: the run directory, the only place (with the CLI) that touches the disk.

- :mod:`~dinomap.store.layout` names every path of a run (:class:`RunLayout`);
- :mod:`~dinomap.store.info` reads ``run.json`` and updates its sections atomically;
- :mod:`~dinomap.store.embeddings` writes and reads the Parquet shards and ``errors.csv``;
- :mod:`~dinomap.store._atomic` writes any file atomically (temporary file, fsync, rename), so a
  crash, even SIGKILL, leaves either the old file or the new one, never a partial one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dinomap._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time each name loads on use
    from dinomap.store._atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
    from dinomap.store.embeddings import (
        Embeddings,
        StoredEmbeddings,
        check_fresh,
        current_stamp,
        embedding_schema,
        is_stale,
        keys_stamp,
        load_embeddings,
        read_metadata,
        stored_keys,
        write_errors,
        write_metadata,
        write_shard,
    )
    from dinomap.store.info import is_random_init, read_run_info, update_run_info
    from dinomap.store.layout import EMBEDDINGS_DIR, ERRORS_FILE, RUN_FILE, RunLayout
    from dinomap.store.maps import StoredMaps, read_maps, write_maps

__all__ = [
    "EMBEDDINGS_DIR",
    "ERRORS_FILE",
    "RUN_FILE",
    "Embeddings",
    "RunLayout",
    "StoredEmbeddings",
    "StoredMaps",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_fresh",
    "current_stamp",
    "embedding_schema",
    "is_random_init",
    "is_stale",
    "keys_stamp",
    "load_embeddings",
    "read_maps",
    "read_metadata",
    "read_run_info",
    "stored_keys",
    "update_run_info",
    "write_errors",
    "write_maps",
    "write_metadata",
    "write_shard",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "EMBEDDINGS_DIR": "layout",
        "ERRORS_FILE": "layout",
        "RUN_FILE": "layout",
        "RunLayout": "layout",
        "StoredMaps": "maps",
        "read_maps": "maps",
        "write_maps": "maps",
        "Embeddings": "embeddings",
        "StoredEmbeddings": "embeddings",
        "embedding_schema": "embeddings",
        "check_fresh": "embeddings",
        "current_stamp": "embeddings",
        "is_stale": "embeddings",
        "keys_stamp": "embeddings",
        "load_embeddings": "embeddings",
        "stored_keys": "embeddings",
        "write_errors": "embeddings",
        "read_metadata": "embeddings",
        "write_metadata": "embeddings",
        "write_shard": "embeddings",
        "atomic_write_bytes": "_atomic",
        "atomic_write_json": "_atomic",
        "atomic_write_text": "_atomic",
        "is_random_init": "info",
        "read_run_info": "info",
        "update_run_info": "info",
    },
)
