"""On CI (CI=true) a skip of a dependency that the README's set-up installs is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = '''
import pytest

def test_faiss_missing():
    pytest.importorskip("no_such_module_faiss_stand_in", reason="needs faiss-cpu")

@pytest.mark.skipif(True, reason="TensorFlow is not installed (extra [keras])")
def test_keras_optional():
    pass

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu_optional():
    pass

@pytest.mark.xfail(reason="known", strict=False)
def test_expected_failure():
    assert False

def test_passes():
    pass
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_skips=TESTS)
    return pytester


def test_on_ci_a_missing_installed_dependency_fails(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*test_faiss_missing*", "*skipped on CI*faiss-cpu*"])


def test_off_ci_the_same_tests_skip(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    suite.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(
        passed=1, skipped=3, xfailed=1
    )
