"""A real S3-compatible server for the remote run tests (tests/_moto.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._moto import moto_s3


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server on a free port; the AWS variables point at it while the module runs."""
    with moto_s3() as endpoint:
        yield endpoint
