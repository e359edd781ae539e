""" "CI skips nothing": under AUREA_REQUIRE_ALL (set by .ci/run) every kind of skip in this suite
fails, whichever way the test wrote it; without it, they skip with their reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).parents[1] / "conftest.py"
SKIPPING_TESTS = """
import pytest

needs_tool = pytest.mark.skipif(True, reason="no frobnicator (pip install frobnicator)")


@needs_tool
def test_marked():
    pass


def test_called():
    pytest.skip("no widget")


def test_imported():
    pytest.importorskip("no_such_module_anywhere")


@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    raise AssertionError


def test_plain():
    pass
"""
SKIPPED_MODULE = """
import pytest

pytest.skip("no gizmo", allow_module_level=True)


def test_never_collected():
    pass
"""


def run_suite(tmp_path: Path, tests: str, require_all: bool) -> tuple[int, str]:
    """Run ``tests`` as a one-file suite with this suite's conftest; return (exit code, output)."""
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_it.py").write_text(tests)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AUREA_REQUIRE_ALL"}
    if require_all:
        env["AUREA_REQUIRE_ALL"] = "1"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return r.returncode, r.stdout + r.stderr


def test_skips_skip_locally(tmp_path: Path) -> None:
    code, out = run_suite(tmp_path, SKIPPING_TESTS, require_all=False)
    assert code == 0, out
    assert "1 passed, 3 skipped, 1 xfailed" in out, out


def test_every_kind_of_skip_fails_under_require_all(tmp_path: Path) -> None:
    code, out = run_suite(tmp_path, SKIPPING_TESTS, require_all=True)
    assert code == 1, out
    summary = out.strip().splitlines()[-1]
    assert "1 passed" in summary and "1 xfailed" in summary, out
    assert "2 failed" in summary and "1 error" in summary, out  # a skipif fails in setup
    assert "skipped" not in summary, out
    for reason in ("no frobnicator", "no widget", "could not import 'no_such_module_anywhere'"):
        assert f"AUREA_REQUIRE_ALL is set but this test was skipped: {reason}" in out, reason


def test_a_module_skip_fails_under_require_all(tmp_path: Path) -> None:
    code, out = run_suite(tmp_path, SKIPPED_MODULE, require_all=False)
    assert "1 skipped" in out, out  # (and no test ran: pytest's exit code 5)
    code, out = run_suite(tmp_path, SKIPPED_MODULE, require_all=True)
    assert code not in (0, 5), out
    assert "AUREA_REQUIRE_ALL is set but this module was skipped: no gizmo" in out, out
