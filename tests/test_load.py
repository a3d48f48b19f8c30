"""A small room in CI: five students at once on one fresh server, no error (benchmarks/load_test.py measures 1-60)."""
import pytest

from .browser import chromium_available

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")


def test_five_students_open_a_lecture_path_drag_eps_and_morph_without_error(tmp_path):

    from benchmarks.load_test import run

    # Four browserless students (the server does for them all it does for a browser) and one Chromium student, who
    # also renders and drags: five at once on the server, one browser's rendering on the test machine's 2 cores.
    [summary] = run([4], store_dir=str(tmp_path / "store"), clients="protocol", probes=1)
    probe = summary["probes"]
    assert summary["errors"] == [] and probe["errors"] == [], (summary["errors"], probe["errors"])
    for students in (summary, probe):  # every student got there
        assert students["page_ready_p95_s"] < 110 and students["morph_p95_s"] < 110


def test_the_warm_heap_is_frozen_out_of_full_collections_after_the_50th_run(monkeypatch):
    import gc

    from lab_pages import _heap

    monkeypatch.setattr(_heap, "_runs", 0)
    gc.unfreeze()
    kept = [[i] for i in range(1000)]  # long-lived objects the cycle collector tracks
    for _ in range(49):
        _heap.count_run()
    assert gc.get_freeze_count() == 0
    _heap.count_run()
    try:
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
