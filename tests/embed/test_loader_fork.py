"""Decoding workers start even when the parent process has used OpenCV's thread pool.

A DataLoader worker forked while the parent's OpenCV pool exists used to hang for ever in
``cv2.setNumThreads`` (seen in the test suite: a second ``dinomap run`` in one process). The
check runs in a fresh interpreter with a timeout, so a hang fails instead of stalling the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import write_images

SCRIPT = textwrap.dedent(
    """
    import sys
    import cv2
    import numpy as np
    import torch
    from dinomap.data import open_source
    from dinomap.embed.config import EmbedConfig
    from dinomap.embed.loader import make_loader

    cv2.setNumThreads(4)  # the parent's pool, busy as after thumbnails or a contact sheet
    big = np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)
    for _ in range(20):
        cv2.resize(big, (1024, 1024), interpolation=cv2.INTER_AREA)
    src = open_source(sys.argv[1])
    cfg = EmbedConfig(batch_size=2, num_workers=2)
    for round_ in range(3):  # three loaders in one process, as three runs in a notebook
        n = sum(len(meta) for _, meta, _ in make_loader(src, range(len(src.items)), cfg,
                                                        torch.device("cpu")))
        assert n == len(src.items), n
        for _ in range(5):
            cv2.resize(big, (1024, 1024), interpolation=cv2.INTER_AREA)
    print("ok")
    """
)


def test_workers_start_after_the_parent_used_opencv_threads(tmp_path: Path) -> None:
    write_images(tmp_path / "img", n_per_class=4)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "img")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the hung workers too, not only their parent
        proc.communicate()
        pytest.fail("a decoding worker hung after the parent used OpenCV's thread pool")
    assert proc.returncode == 0 and stdout.strip() == "ok", stderr[-2000:]
