"""A live challenge room in CI: five protocol students on one fresh server (benchmarks/challenge_room.py: 60)."""


def test_five_students_submit_three_times_every_submission_reaches_the_board_and_the_ranks_are_right(tmp_path):
    from benchmarks.load_test import run_challenge_room

    # Three submissions each within 12 s, 3.5 s apart at least (the server refuses a second one within 3 s).
    [summary] = run_challenge_room([5], store_dir=str(tmp_path / "store"), window_s=12.0, gap_s=3.5)
    assert summary["errors"] == []
    assert summary["acknowledged"] == summary["committed"] == summary["on_board"] == 15
    assert summary["lost"] == 0 and summary["never_shown"] == 0
    assert summary["wrong_ranks"] == []
    assert summary["board_max_s"] < 30  # shown at all (the 2 s target is the benchmark's, on a quiet machine)
