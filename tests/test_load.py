"""A small room in CI: five students at once on one fresh server, no error (benchmarks/load_test.py measures 1-60)."""
import pytest

from .browser import chromium_available

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")


def test_five_students_open_a_lecture_path_drag_eps_and_morph_without_error(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from load_test import run

    [summary] = run([5], store_dir=str(tmp_path / "store"))
    assert summary["errors"] == [], summary["errors"]
    assert summary["page_ready_p95_s"] < 110 and summary["morph_p95_s"] < 110  # every student got there
