"""Class challenges (robust_core.challenges): files, server-side scoring, nicknames, rate limits, ranks, durability and
exports."""
import csv
import io
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from robust_core.challenges import (
    BadSubmission,
    ChallengeBoard,
    ChallengeError,
    RateLimited,
    canvas_direction,
    parse_challenge,
    perturbation_norms,
    perturbed,
    read_challenges,
    read_payload,
    score_fool,
)
from robust_core.challenges.scoring import budget_slack, score_split

SHIPPED = {"mnist_cnn_standard": "mnist", "mnist_cnn_pgd_at": "mnist", "fashion_mlp_standard": "fashion_mnist"}
GUESS = dict(kind="guess", title="Guess", task="At which ε?", dataset="mnist", models=["mnist_cnn_pgd_at"],
             answer={"measure": "eps_below", "attack": "pgd", "accuracy": 0.5, "min": 0.0, "max": 0.4})
FOOL = dict(kind="fool", title="Fool", task="Paint.", dataset="mnist", models=["mnist_cnn_standard"], image=3,
            norm="linf", budget=0.3)
SPLIT = dict(kind="split", title="Split", task="Draw.", dataset="mnist",
             models=["mnist_cnn_standard", "mnist_cnn_pgd_at"], target=1, drawn=7)


# ---- challenge files ----
def test_the_shipped_challenge_files_all_read_and_cover_the_three_kinds():
    challenges, errors = read_challenges()
    assert errors == []
    assert {c.kind for c in challenges} == {"fool", "guess", "split"}


def test_a_bad_challenge_file_is_reported_by_name_and_the_others_still_show(tmp_path):
    (tmp_path / "01_good.toml").write_text('kind = "guess"\ntitle = "Guess"\ntask = "At which ε?"\ndataset = "mnist"\n'
                                           'models = ["mnist_cnn_pgd_at"]\n[answer]\nmeasure = "eps_below"\n'
                                           'attack = "pgd"\naccuracy = 0.5\n', encoding="utf-8")
    bad = {"02_syntax.toml": "kind = ", "03_kind.toml": 'kind = "race"\n',
           "04_model.toml": 'kind = "fool"\ntitle = "t"\ntask = "t"\ndataset = "mnist"\nmodels = ["nope"]\n'
                            'budget = 0.3\n',
           "05_budget.toml": 'kind = "fool"\ntitle = "t"\ntask = "t"\ndataset = "mnist"\n'
                             'models = ["mnist_cnn_standard"]\nnorm = "linf"\nbudget = 1.5\n',
           "06_dataset.toml": 'kind = "fool"\ntitle = "t"\ntask = "t"\ndataset = "mnist"\n'
                              'models = ["fashion_mlp_standard"]\nbudget = 0.3\n',
           "07_field.toml": 'kind = "split"\ntitle = "t"\ntask = "t"\ndataset = "mnist"\n'
                            'models = ["mnist_cnn_standard", "mnist_cnn_pgd_at"]\ntarget = 1\nprize = "cake"\n'}
    for name, text in bad.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "08_bytes.toml").write_bytes(b"\xff\xfe\x00")
    challenges, errors = read_challenges(tmp_path, shipped=SHIPPED)
    assert [c.name for c in challenges] == ["01_good"]
    reported = {e.split(":", 1)[0] for e in errors}
    assert reported == set(bad) | {"08_bytes.toml"}
    by_file = dict(e.split(": ", 1) for e in errors)
    assert "kind must be one of" in by_file["03_kind.toml"]
    assert "no shipped model 'nope'" in by_file["04_model.toml"]
    assert "budget must lie in [0, 1]" in by_file["05_budget.toml"]
    assert "not a mnist one" in by_file["06_dataset.toml"]
    assert "no field prize" in by_file["07_field.toml"]


@pytest.mark.parametrize("change, message", [
    ({"answer": {"measure": "eps_below", "attack": "pgd", "accuracy": 0.5, "min": 0.4, "max": 0.1}},
     "below answer.max"),
    ({"answer": {"measure": "vibes", "attack": "pgd", "accuracy": 0.5}}, "answer.measure"),
    ({"answer": {"measure": "eps_below", "attack": "nope", "accuracy": 0.5}}, "answer.attack"),
    ({"answer": {"measure": "eps_below", "attack": "pgd", "accuracy": float("nan")}}, "finite number"),
    ({"title": "x" * 81}, "at most 80"),
    ({"models": ["mnist_cnn_pgd_at", "mnist_cnn_standard"]}, "must list 1"),
])
def test_a_guess_file_with_a_bad_value_says_which(change, message):
    with pytest.raises(ValueError, match=message):
        parse_challenge("g", {**GUESS, **change}, shipped=SHIPPED)


def test_a_fool_or_split_file_with_a_bad_value_says_which():
    with pytest.raises(ValueError, match="test image index"):
        parse_challenge("f", {**FOOL, "image": 10_000}, shipped=SHIPPED)
    with pytest.raises(ValueError, match="norm must be"):
        parse_challenge("f", {**FOOL, "norm": "l0"}, shipped=SHIPPED)
    with pytest.raises(ValueError, match="budget must be above 0"):
        parse_challenge("f", {**FOOL, "budget": 0}, shipped=SHIPPED)
    assert parse_challenge("f", {**FOOL, "norm": "l2", "budget": 28.0}, shipped=SHIPPED).budget == 28.0  # sqrt(784)
    with pytest.raises(ValueError, match="drawn must differ"):
        parse_challenge("s", {**SPLIT, "drawn": 1}, shipped=SHIPPED)
    with pytest.raises(ValueError, match="class from 0 to 9"):
        parse_challenge("s", {**SPLIT, "target": 10}, shipped=SHIPPED)


# ---- scoring on the server ----
def _stroke(side: int, rows: slice, cols: slice, rgb: int, alpha: int = 255) -> np.ndarray:
    paint = np.zeros((side, side, 4), np.uint8)
    paint[rows, cols] = [rgb, rgb, rgb, alpha]
    return paint


def test_the_painted_direction_is_plus_one_white_minus_one_black_and_half_for_half_alpha_at_any_canvas_size():
    shape = (1, 28, 28)
    white = canvas_direction(_stroke(280, slice(30, 40), slice(50, 60), 255), shape)  # exactly image pixel (3, 5)
    assert white[0, 0, 3, 5] == 1 and white.abs().sum() == 1
    black = canvas_direction(_stroke(280, slice(30, 40), slice(50, 60), 0), shape)
    assert black[0, 0, 3, 5] == -1
    half = canvas_direction(_stroke(280, slice(30, 40), slice(50, 60), 255, alpha=51), shape)
    assert half[0, 0, 3, 5] == pytest.approx(0.2)
    half_covered = canvas_direction(_stroke(280, slice(30, 35), slice(50, 60), 255), shape)  # half the block
    assert half_covered[0, 0, 3, 5] == pytest.approx(0.5)
    retina = canvas_direction(_stroke(560, slice(60, 80), slice(100, 120), 255), shape)  # 2 device px per CSS px
    assert torch.equal(retina, white)
    colour = canvas_direction(_stroke(320, slice(0, 10), slice(0, 10), 255), (3, 32, 32))
    assert colour.shape == (1, 3, 32, 32) and torch.all(colour[0, :, 0, 0] == 1)


@pytest.mark.parametrize("paint", [np.zeros((10, 10, 4)), np.zeros((280, 280, 3)), np.full((280, 280, 4), np.nan),
                                   np.full((280, 280, 4), 300.0), np.zeros((4096, 280, 4))])
def test_a_painting_that_is_no_canvas_image_is_refused(paint):
    with pytest.raises(BadSubmission):
        canvas_direction(paint, (1, 28, 28))


def test_perturbation_norms_of_hand_made_images_and_the_budget_projection():
    x = torch.full((1, 1, 28, 28), 0.5)
    x_adv = x.clone()
    x_adv[0, 0, :4, :4] += 0.25  # 16 pixels by 0.25: L∞ 0.25, L2 sqrt(16) * 0.25 = 1
    norms = perturbation_norms(x, x_adv)
    assert norms == {"linf": 0.25, "l2": 1.0}
    direction = torch.zeros_like(x)
    direction[0, 0, :4, :4] = 1.0
    linf = perturbed(x, direction, norm="linf", budget=0.3, strength=0.5)
    assert perturbation_norms(x, linf)["linf"] == pytest.approx(0.15, abs=1e-7)
    l2 = perturbed(x, direction, norm="l2", budget=2.0, strength=1.0)  # 16 pixels: 0.5 each, L2 exactly 2
    assert perturbation_norms(x, l2)["l2"] == pytest.approx(2.0, abs=budget_slack(784))
    assert perturbation_norms(x, l2)["linf"] == pytest.approx(0.5, abs=1e-7)
    white = torch.ones_like(x)
    clipped = perturbed(white, direction, norm="linf", budget=0.3)  # a white image cannot get whiter
    assert perturbation_norms(white, clipped)["linf"] == 0
    with pytest.raises(BadSubmission, match="strength"):
        perturbed(x, direction, norm="linf", budget=0.3, strength=1.5)


class PixelReader(nn.Module):
    """Reads class 1 when pixel (0, 0) is above 0.5, class 0 otherwise: which images it misreads is known."""

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([0.5 - p, p - 0.5], dim=1) * 20


def test_score_fool_reads_the_submitted_image_and_refuses_one_outside_the_budget():
    model = PixelReader()
    x = torch.zeros(1, 1, 28, 28)
    near = x.clone()
    near[0, 0, 0, 0] = 0.3
    scores = score_fool({"reader": model}, x=x, label=0, x_adv=near, norm="linf", budget=0.3)
    assert scores["fooled"] == [] and scores["norm"] == pytest.approx(0.3)
    x = torch.full((1, 1, 28, 28), 0.3)
    scores = score_fool({"reader": model}, x=x, label=0, x_adv=near + 0.3, norm="linf", budget=0.3)
    assert scores["fooled"] == ["reader"] and scores["readings"]["reader"]["class"] == 1
    with pytest.raises(BadSubmission, match="above the budget"):
        score_fool({"reader": model}, x=x, label=0, x_adv=(x + 0.31).clamp(0, 1), norm="linf", budget=0.3)


def test_score_split_needs_a_to_read_the_target_and_b_not():
    class Fixed(nn.Module):
        def __init__(self, label):
            super().__init__()
            self.label = label

        def forward(self, x):
            return nn.functional.one_hot(torch.tensor([self.label]), 10).float() * 10

    image = torch.zeros(1, 1, 28, 28)
    split = score_split({"a": Fixed(1), "b": Fixed(7)}, image=image, target=1, drawn=None)
    assert split["success"] and split["split"] > 0.99
    same = score_split({"a": Fixed(1), "b": Fixed(1)}, image=image, target=1, drawn=None)
    assert not same["success"]


def test_a_claimed_score_in_a_payload_is_dropped():
    assert read_payload("guess", {"answer": 0.2, "score": 0.0, "rank": 1}) == {"answer": 0.2}
    paint = np.zeros((280, 280, 4))
    assert set(read_payload("fool", {"paint": paint, "strength": 0.5, "norm": 0.0, "fooled": ["x"]})) == \
        {"paint", "strength"}
    for answer in (float("nan"), float("inf"), "0.2", True, None):
        with pytest.raises(BadSubmission):
            read_payload("guess", {"answer": answer})


# ---- the board: nicknames, rate limits, ranks ----
@pytest.fixture
def board(tmp_path):
    return ChallengeBoard(tmp_path / "store")


def _guess_challenge():
    return parse_challenge("guess", GUESS, shipped=SHIPPED)


def test_a_nickname_is_plain_unique_up_to_look_alikes_and_one_per_browser(board):
    assert board.claim_nickname("owner-a", "  ada\u200b  lovelace ") == "ada lovelace"
    assert board.claim_nickname("owner-a", "ADA LOVELACE") == "ada lovelace"  # the same name again: kept
    with pytest.raises(ChallengeError, match="already plays as"):
        board.claim_nickname("owner-a", "grace")
    for look_alike in ("Ada Lovelace", "аda lovelace", "ａｄａ lovelace", "ada\u2060 lovelace"):  # case, Cyrillic а,
        with pytest.raises(ChallengeError, match="taken"):                                  # full width, invisible
            board.claim_nickname("owner-b", look_alike)
    for bad in ("", "   ", "\u200b", "x" * 25, "!!!", "<b>grace</b>", "ada · L∞ 0.001", "bob: 0.3", "a" + "\u0301" * 3):
        with pytest.raises(ChallengeError):
            board.claim_nickname("owner-b", bad)
    with pytest.raises(ChallengeError, match="taken"):
        board.claim_nickname("owner-b", "ada lovelace".replace("m", "rn").replace("d", "cl"))  # "acla" reads "ada"
    board.claim_nickname("owner-d", "claude")
    board.claim_nickname("owner-e", "will")
    for look_alike in ("cIaude", "c1aude", "clau.de", "cláude", "c l a u d e", "vviII", "VViLL"):  # a disguised pair
        with pytest.raises(ChallengeError, match="taken"):
            board.claim_nickname("owner-f", look_alike)
    for score_like in ("1. ada", "0.001", "ada 0.0001", "bob -5", "ـــــ"):
        with pytest.raises(ChallengeError):
            board.claim_nickname("owner-f", score_like)
    assert board.claim_nickname("owner-f", "Nan") == "Nan"  # a name, not a number: only words with digits are checked
    assert board.claim_nickname("owner-b", "Nguyễn Thị Ánh") == "Nguyễn Thị Ánh"  # accents, two on one letter
    assert board.claim_nickname("owner-c", "O'Brien-Ünal_2.0") == "O'Brien-Ünal_2.0"
    assert board.nickname("owner-b") == "Nguyễn Thị Ánh"


def test_at_most_three_nicknames_come_from_one_address(board):
    for k in range(3):
        board.claim_nickname(f"tab-{k}", f"player{k}", address="10.0.0.7")
    with pytest.raises(ChallengeError, match="from this device's network address"):
        board.claim_nickname("tab-3", "player3", address="10.0.0.7")
    board.claim_nickname("tab-3", "player3", address="10.0.0.8")  # another laptop
    board.nicknames_per_address = 0  # a room behind one NAT
    board.claim_nickname("tab-4", "player4", address="10.0.0.7")


def test_rate_limits_hold_per_student_and_run(board):
    run = board.start(_guess_challenge(), reference={"measured": 0.2})
    board.claim_nickname("s", "sam")
    board.claim_nickname("t", "tam")
    board.submit(run.id, "s", scores={}, answer=0.1, now=1000.0)
    with pytest.raises(RateLimited) as refused:
        board.submit(run.id, "s", scores={}, answer=0.1, now=1001.0)
    assert refused.value.retry_after_s == pytest.approx(2.0)
    board.submit(run.id, "t", scores={}, answer=0.1, now=1001.0)  # another student is not held back
    for k in range(1, 10):
        board.submit(run.id, "s", scores={}, answer=0.1, now=1000.0 + 3.0 * k)
    with pytest.raises(RateLimited, match="a minute"):  # the 11th within 60 s
        board.submit(run.id, "s", scores={}, answer=0.1, now=1030.0)
    board.submit(run.id, "s", scores={}, answer=0.1, now=1060.5)
    assert board.submission_count(run.id) == 12
    board.rate_limits["per_run"] = 11
    with pytest.raises(RateLimited, match="submissions a challenge allows"):
        board.submit(run.id, "s", scores={}, answer=0.1, now=2000.0)


def test_submissions_need_an_open_run_and_a_nickname(board):
    run = board.start(_guess_challenge(), reference={"measured": 0.2})
    with pytest.raises(ChallengeError, match="nickname"):
        board.submit(run.id, "s", scores={}, answer=0.1)
    board.claim_nickname("s", "sam")
    for state, message in (("paused", "paused"), ("revealed", "answer is out"), ("ended", "ended")):
        board.set_state(run.id, state)
        with pytest.raises(ChallengeError, match=message):
            board.submit(run.id, "s", scores={}, answer=0.1)
    with pytest.raises(ChallengeError, match="no longer exists"):
        board.submit(run.id + 99, "s", scores={}, answer=0.1)


def test_one_live_entry_per_student_and_guess_ranks_only_after_the_reveal(board):
    run = board.start(_guess_challenge(), reference={"measured": 0.2})
    for owner, name in (("a", "ann"), ("b", "bob"), ("c", "cid")):
        board.claim_nickname(owner, name)
    board.submit(run.id, "a", scores={}, answer=0.21, now=1.0)
    board.submit(run.id, "b", scores={}, answer=0.05, now=2.0)
    board.submit(run.id, "c", scores={}, answer=0.19, now=3.0)  # as close as ann's, later
    board.submit(run.id, "b", scores={}, answer=0.2, now=10.0)  # replaces bob's 0.05
    live = board.board(run.id)
    assert sorted(e.answer for e in live.entries) == [0.19, 0.2, 0.21] and live.submissions == 4
    assert live.ranks == {}
    board.set_state(run.id, "revealed")
    ranked = board.board(run.id)
    by_id = {e.id: e.nickname for e in ranked.entries}
    names = [by_id[i] for i in ranked.ranks["guess"]]
    assert names == ["bob", "ann", "cid"]  # |0.2 - 0.2| = 0, then 0.01 (ann first: earlier)


def test_fool_ranks_per_model_by_norm_and_split_by_score(board):
    fool = board.start(parse_challenge("fool", {**FOOL, "models": ["mnist_cnn_standard", "mnist_cnn_pgd_at"]},
                                       shipped=SHIPPED))
    for owner in "abcd":
        board.claim_nickname(owner, f"player {owner}")
    entries = {"a": (0.20, ["mnist_cnn_standard"]), "b": (0.10, ["mnist_cnn_standard", "mnist_cnn_pgd_at"]),
               "c": (0.05, []), "d": (0.15, ["mnist_cnn_pgd_at"])}
    ids = {o: board.submit(fool.id, o, scores={"norm": n, "linf": n, "l2": n, "fooled": f, "readings": {}})
           for o, (n, f) in entries.items()}
    ranks = board.board(fool.id).ranks
    assert ranks["mnist_cnn_standard"] == [ids["b"], ids["a"]]
    assert ranks["mnist_cnn_pgd_at"] == [ids["b"], ids["d"]]
    split = board.start(parse_challenge("split", SPLIT, shipped=SHIPPED))
    scores = {"a": (True, 0.5), "b": (False, 0.9), "c": (True, 0.8)}
    ids = {o: board.submit(split.id, o, scores={"success": s, "split": v, "readings": {}})
           for o, (s, v) in scores.items()}
    assert board.board(split.id).ranks == {"split": [ids["c"], ids["a"]]}


def test_hidden_submissions_leave_the_public_board_and_stay_in_the_export(board):
    run = board.start(_guess_challenge(), reference={"measured": 0.2})
    board.claim_nickname("a", "ann")
    board.claim_nickname("b", "rude")
    board.submit(run.id, "a", scores={}, answer=0.1)
    rude = board.submit(run.id, "b", scores={}, answer=0.3)
    before = board.revision(run.id)
    board.hide(rude)
    assert board.revision(run.id) > before  # the projector redraws
    assert [e.nickname for e in board.board(run.id).entries] == ["ann"]
    assert {e.nickname for e in board.board(run.id, include_hidden=True).entries} == {"ann", "rude"}
    assert "rude" in board.export_csv(run.id)
    board.hide(rude, hidden=False)
    assert len(board.board(run.id).entries) == 2


def test_a_reset_clears_the_board_and_keeps_the_cleared_entries_in_the_database(board):
    run = board.start(_guess_challenge(), reference={"measured": 0.2})
    board.claim_nickname("a", "ann")
    board.submit(run.id, "a", scores={}, answer=0.1, now=1.0)
    board.set_state(run.id, "paused")
    board.reset(run.id)
    assert board.run(run.id).state == "open" and board.board(run.id).entries == ()
    assert board.board(run.id).submissions == 0
    rows = list(csv.DictReader(io.StringIO(board.export_csv(run.id))))
    assert [r["cleared"] for r in rows] == ["1"]


def test_two_runs_at_once_keep_their_own_boards(board):
    first, second = board.start(_guess_challenge(), reference={}), board.start(_guess_challenge(), reference={})
    assert first.code != second.code
    board.claim_nickname("a", "ann")
    board.submit(first.id, "a", scores={}, answer=0.1, now=1.0)
    board.submit(second.id, "a", scores={}, answer=0.3, now=1.5)  # the limits count per run
    assert [e.answer for e in board.board(first.id).entries] == [0.1]
    assert [e.answer for e in board.board(second.id).entries] == [0.3]
    assert board.run(first.code.lower()).id == first.id


def test_exports_round_trip(board):
    fool = board.start(parse_challenge("fool", FOOL, shipped=SHIPPED))
    rng = np.random.default_rng(0)
    images = {}
    for owner, name in (("a", "ann"), ("b", "bea")):
        board.claim_nickname(owner, name)
        images[owner] = rng.random((1, 28, 28), dtype=np.float32)
        norm = float(rng.random())
        board.submit(fool.id, owner, image=images[owner],
                     scores={"norm": norm, "linf": norm, "l2": 3 * norm, "fooled": ["mnist_cnn_standard"],
                             "readings": {"mnist_cnn_standard": {"class": 3, "p": 0.9}}})
    rows = list(csv.DictReader(io.StringIO(board.export_csv(fool.id))))
    entries = {e.id: e for e in board.board(fool.id).entries}
    assert len(rows) == 2
    for row in rows:
        entry = entries[int(row["submission"])]
        assert float(row["linf"]) == entry.scores["linf"] and float(row["l2"]) == entry.scores["l2"]  # repr: exact
        assert row["reads_mnist_cnn_standard"] == "3"
    assert rows[0]["nickname"] == "ann"
    from robust_core.challenges.export import csv_text

    for formula in ("=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)"):  # never a spreadsheet formula
        assert csv_text(formula) == "'" + formula
    npz = np.load(io.BytesIO(board.export_npz(fool.id)), allow_pickle=False)
    assert npz["images"].shape == (2, 1, 28, 28) and npz["images"].dtype == np.float32
    for image, sid in zip(npz["images"], npz["submission"]):
        assert np.array_equal(image, entries[int(sid)].image.reshape(1, 28, 28))
    assert list(npz["nicknames"]) == [entries[int(s)].nickname for s in npz["submission"]]


def test_a_damaged_database_gives_a_clear_error_and_is_not_overwritten(tmp_path):
    folder = tmp_path / "store" / ".challenges"
    folder.mkdir(parents=True)
    (folder / "board.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ChallengeError, match="cannot be used"):
        ChallengeBoard(tmp_path / "store")
    assert (folder / "board.sqlite3").read_bytes().startswith(b"this is not")


_SUBMITTER = textwrap.dedent("""
    import sys, time
    from robust_core.challenges import ChallengeBoard
    board = ChallengeBoard(sys.argv[1], rate_limits={"min_interval_s": 0, "per_minute": 10**6, "per_run": 10**6})
    run = int(sys.argv[2])
    for k in range(100000):
        owner = f"o{k % 50}"
        if k < 50:
            board.claim_nickname(owner, f"n{k}")
        sid = board.submit(run, owner, scores={"k": k}, answer=0.1)
        print(sid, flush=True)
""")


def test_a_server_killed_mid_challenge_loses_no_acknowledged_submission(tmp_path):
    root = tmp_path / "store"
    board = ChallengeBoard(root)
    run = board.start(_guess_challenge(), reference={})
    child = subprocess.Popen([sys.executable, "-c", _SUBMITTER, str(root), str(run.id)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    acknowledged = []
    for line in child.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 120:
            child.kill()  # SIGKILL mid-stream: no clean-up of any kind
            break
    child.wait()
    reopened = ChallengeBoard(root)  # a restarted server
    kept = {e.id for e in reopened.entries(run.id, live_only=False, include_hidden=True, with_images=False)}
    assert set(acknowledged) <= kept
    assert math.isclose(len(kept), len(acknowledged), abs_tol=1)  # at most the one in flight when killed
    import sqlite3

    with sqlite3.connect(reopened.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ---- the room: scoring with the shipped networks ----
@pytest.fixture
def room(isolated_store):
    from robust_core.challenges import ChallengeRoom
    from robust_core.shipped import install_shipped
    from robust_core.store import ModelStore

    store = ModelStore(isolated_store)
    install_shipped(store)
    return ChallengeRoom(store)


def test_the_room_scores_a_painting_on_the_server_and_ignores_a_forged_score(room):
    from robust_core.attacks.gradient import pgd

    challenge = parse_challenge("fool", {**FOOL, "image": 0}, shipped=SHIPPED)
    run = room.start(challenge, reference={})
    room.claim_nickname("s", "sam")
    x, label = room.test_image(challenge)
    model = room.models(challenge)["mnist_cnn_standard"]
    adv = pgd(model, x, torch.tensor([label]), eps=0.3, steps=40, seed=0)
    direction = ((adv - x) / 0.3).clamp(-1, 1)[0, 0].numpy()
    big = np.kron(direction, np.ones((10, 10)))
    paint = np.zeros((280, 280, 4), np.uint8)
    paint[..., :3] = np.where(big[..., None] > 0, 255, 0)
    paint[..., 3] = np.abs(big * 255).round()
    forged = {"paint": paint, "strength": 1.0, "norm": 0.0, "linf": 0.0, "fooled": ["mnist_cnn_standard"],
              "scores": {"norm": 0.0}}
    room.submit(run.id, "s", forged)
    [entry] = room.board(run.id).entries
    # the server's own numbers: alpha is rounded to 1/255, so the painted L∞ is 0.3 within 0.3 / 255 / 2
    assert entry.scores["linf"] == pytest.approx(0.3, abs=0.3 / 510 + 1e-7)
    assert entry.scores["fooled"] == ["mnist_cnn_standard"]
    with torch.no_grad():
        assert int(model(torch.from_numpy(entry.image)[None]).argmax()) != label  # the stored image fools it
    assert torch.equal(torch.from_numpy(entry.image)[None].clamp(0, 1), torch.from_numpy(entry.image)[None])


def test_the_guess_reference_is_where_the_shipped_curve_falls_below_the_threshold(room):
    from robust_core.evaluation import accuracy_at
    from robust_core.lectures import ShippedResults

    challenge = parse_challenge("g", GUESS, shipped=SHIPPED)
    measured = room.reference(challenge)["measured"]
    min_eps = ShippedResults().minimal_eps("mnist_cnn_pgd_at", "pgd", n=1000)
    below = float(accuracy_at(min_eps, [measured])[0])
    # the float32 just below (the shipped minimal ε are float32: a float64 neighbour would round back to it)
    just_before = float(accuracy_at(min_eps, [float(np.nextafter(np.float32(measured), np.float32(0)))])[0])
    assert below < 0.5 <= just_before


def test_the_room_refuses_a_drawing_that_is_no_image_and_an_answer_out_of_range(room):
    split = room.start(parse_challenge("s", SPLIT, shipped=SHIPPED), reference={})
    guess = room.start(parse_challenge("g", GUESS, shipped=SHIPPED), reference={})
    room.claim_nickname("s", "sam")
    for image in (np.full((1, 28, 28), np.nan), np.zeros((3, 32, 32)), np.full((1, 28, 28), 2.0), "pixels"):
        with pytest.raises(BadSubmission):
            room.submit(split.id, "s", {"image": image})
    with pytest.raises(BadSubmission, match="lie in"):
        room.submit(guess.id, "s", {"answer": 0.9})
    assert room.board(split.id).submissions == 0 and room.board(guess.id).submissions == 0


_RACER = textwrap.dedent("""
    import sys, time
    from robust_core.challenges import ChallengeBoard, RateLimited
    board = ChallengeBoard(sys.argv[1])
    start = float(sys.argv[3])
    time.sleep(max(0.0, start - time.time()))
    try:
        board.submit(int(sys.argv[2]), "s", scores={}, answer=0.1)
        print("accepted")
    except RateLimited:
        print("refused")
""")


def test_two_replicas_submitting_for_one_student_at_once_accept_one(tmp_path):
    import time

    root = tmp_path / "store"
    board = ChallengeBoard(root)
    run = board.start(_guess_challenge(), reference={})
    board.claim_nickname("s", "sam")
    start = time.time() + 1.5  # both processes are up and waiting by then
    children = [subprocess.Popen([sys.executable, "-c", _RACER, str(root), str(run.id), repr(start)],
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
                for _ in range(2)]
    verdicts = sorted(child.communicate(timeout=60)[0].strip() for child in children)
    assert verdicts == ["accepted", "refused"]
    assert board.submission_count(run.id) == 1


def test_the_command_line_starts_reveals_and_exports_a_run(isolated_store, tmp_path, capsys):
    from robust_core.challenges.__main__ import main

    assert main(["--store", str(isolated_store), "start", "02_guess_the_eps"]) == 0
    code = capsys.readouterr().out.split()[1].rstrip(":")
    board = ChallengeBoard(isolated_store)
    run = board.run(code)
    board.claim_nickname("a", "ann")
    board.submit(run.id, "a", scores={}, answer=0.3)
    assert main(["--store", str(isolated_store), "state", code, "revealed"]) == 0
    assert main(["--store", str(isolated_store), "board", code]) == 0
    assert "1. 'ann'  0.3000" in capsys.readouterr().out
    out = tmp_path / "board.csv"
    assert main(["--store", str(isolated_store), "export", code, "--csv", str(out)]) == 0
    [row] = list(csv.DictReader(out.open()))
    assert row["nickname"] == "ann" and row["rank"] == "1"
    assert main(["--store", str(isolated_store), "board", "ZZZZ"]) == 1
    assert "no challenge run has the code" in capsys.readouterr().err


def test_the_fool_reference_is_the_shipped_pgd_bisection_and_a_verified_best_of_l2(room):
    from robust_core.challenges.reference import fool_reference
    from robust_core.lectures import ShippedResults

    challenge = parse_challenge("fool", {**FOOL, "image": 0}, shipped=SHIPPED)  # the standard CNN only
    x, label = room.test_image(challenge)
    model = room.models(challenge)["mnist_cnn_standard"]
    ref = fool_reference(challenge, {"mnist_cnn_standard": model}, x, label)["models"]["mnist_cnn_standard"]
    pgd = ShippedResults().minimal_eps("mnist_cnn_standard", "pgd", n=1000)
    assert ref["clean_correct"] and ref["pgd_linf"] == pytest.approx(float(pgd[0]))
    # a perturbation inside [0, 1]^784 has an L2 norm of at most sqrt(784) = 28, and its L∞ norm lies between
    # L2 / sqrt(784) and L2
    assert ref["best_l2_found_by"] in ("fab_l2", "deepfool", "cw_l2")
    assert 0 < ref["best_l2"] < 28
    assert ref["best_l2"] / 28 - 1e-6 <= ref["best_l2_linf"] <= ref["best_l2"] + 1e-6
