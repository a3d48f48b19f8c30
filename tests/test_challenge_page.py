"""The Challenges page through AppTest: the lecturer's, the students' and the projector's views of one run."""
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from .test_pages import APP


@pytest.fixture(autouse=True)
def shipped_models(monkeypatch):
    monkeypatch.setenv("ROBUST_SHIPPED_MODELS", "1")


def page(**params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for name, value in params.items():
        at.query_params[name] = value
    at.switch_page("lab_pages/challenges.py")
    return at.run()


def join(at: AppTest, nickname: str) -> AppTest:
    field = next(t for t in at.text_input if t.label == "Your nickname")
    field.input(nickname)
    next(b for b in at.button if b.label == "Join").click()
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [a.value for a in at.success]
                     + [a.value for a in at.error] + [a.value for a in at.info])


def runs(isolated_store):
    from robust_core.challenges import ChallengeBoard

    return ChallengeBoard(isolated_store).runs()


def test_the_lecturer_starts_a_guess_a_student_answers_and_reads_their_rank_after_the_reveal(isolated_store):
    lecturer = page()
    assert not lecturer.exception
    lecturer.button(key="start_02_guess_the_eps").click().run()
    [run] = runs(isolated_store)
    assert run.code in texts(lecturer) and run.reference["measured"] is not None
    student = join(page(c=run.code), "ada")
    assert "You play as **ada**" in texts(student)
    answer = next(n for n in student.number_input if n.label == "Your answer")
    answer.set_value(round(run.reference["measured"], 3))
    student.button(key=f"submit_{run.id}").click().run()  # the typed number and the click in one rerun
    assert "Submitted" in texts(student) and not student.exception
    from robust_core.challenges import ChallengeBoard

    [entry] = ChallengeBoard(isolated_store).board(run.id).entries
    assert entry.answer == round(run.reference["measured"], 3)
    assert "rank **" not in texts(student)  # no rank before the reveal
    lecturer.run()
    lecturer.button(key=f"reveal_{run.id}").click().run()
    student.run()
    assert "rank **1**" in texts(student)
    assert "The answer is out" not in texts(student)
    submit = student.button(key=f"submit_{run.id}")
    assert submit.disabled  # revealed: closed


def test_a_student_in_lecture_mode_sees_no_lecturer_controls_and_cannot_act_through_them(isolated_store,
                                                                                         monkeypatch):
    from robust_core.challenges import ChallengeRoom, read_challenges
    from robust_core.shipped import install_shipped
    from robust_core.store import ModelStore

    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    monkeypatch.setenv("ROBUST_LECTURER_KEY", "the-key")
    store = ModelStore(isolated_store)
    install_shipped(store)
    guess = next(c for c in read_challenges()[0] if c.kind == "guess")
    run = ChallengeRoom(store).start(guess, reference={"measured": 0.3})
    student = page()
    labels = {b.label for b in student.button}
    assert not labels & {"Start", "Pause", "Reveal", "Reset", "End", "Hide"}
    assert "Join" in labels and run.code not in texts(student)  # joins by button, never shown the lecturer's code list

    def forged():  # what a forged click on the lecturer's Reveal would run in a student's session
        from lab_pages._challenges import challenge_room
        from lab_pages.challenge_admin import _act

        import streamlit as st

        _act(challenge_room().set_state, st.session_state["run_id"], "revealed")
        st.write(st.session_state.get("admin_message"))

    at = AppTest.from_function(forged, default_timeout=60)
    at.session_state["run_id"] = run.id
    at.run()
    assert not at.exception
    assert ChallengeRoom(store).board_db.run(run.id).state == "open"


def test_the_projector_shows_nicknames_as_plain_text_and_drops_a_hidden_entry(isolated_store):
    from robust_core.challenges import ChallengeRoom, read_challenges
    from robust_core.shipped import install_shipped
    from robust_core.store import ModelStore

    store = ModelStore(isolated_store)
    install_shipped(store)
    room = ChallengeRoom(store)
    guess = next(c for c in read_challenges()[0] if c.kind == "guess")
    run = room.start(guess, reference={"measured": 0.3})
    for owner, name, answer in (("a", "x __b__", 0.31), ("b", "rude", 0.1)):
        room.claim_nickname(owner, name)
        room.submit(run.id, owner, {"answer": answer})
    room.set_state(run.id, "revealed")
    projector = page(c=run.code, view="projector", present="1")
    assert not projector.exception
    shown = texts(projector)
    assert r"x \_\_b\_\_" in shown  # no bold: as typed
    assert "rude" in shown and "**2** submissions" in shown
    entry = next(e for e in room.board(run.id).entries if e.nickname == "rude")
    room.hide(entry.id)
    projector.run()
    assert "rude" not in texts(projector) and "**1** students" in texts(projector)


def test_a_student_paints_sees_the_live_reading_and_the_server_scores_the_submission(isolated_store):
    from robust_core.challenges import ChallengeRoom, read_challenges
    from robust_core.shipped import install_shipped
    from robust_core.store import ModelStore

    store = ModelStore(isolated_store)
    install_shipped(store)
    room = ChallengeRoom(store)
    fool = next(c for c in read_challenges()[0] if c.kind == "fool")
    run = room.start(fool, reference={})
    student = join(page(c=run.code), "painter")
    paint = np.zeros((280, 280, 4), np.uint8)
    paint[100:180, 100:180] = [255, 255, 255, 255]  # 8x8 image pixels brightened by the whole budget
    student.session_state["fool_paint"] = paint
    student.slider(key="fool_strength").set_value(50).run()
    assert not student.exception
    shown = texts(student)
    assert "L∞ 0.150" in shown and "reads **" in shown
    student.button(key=f"submit_{run.id}").click().run()
    [entry] = room.board(run.id).entries
    assert entry.scores["linf"] == pytest.approx(0.15, abs=1e-6)
    assert "Your entry" in texts(student)


@pytest.mark.parametrize("forged", ["bomb", "not a png", "unparsable"])
def test_a_forged_canvas_value_is_an_empty_canvas_with_a_message_never_a_decoded_bomb(forged):
    """What the canvas component hands the server comes from the browser: a PNG declaring 9,400 x 9,400 pixels (a
    few hundred KB) once took 3 GB and 12 s to decode; a value the component cannot parse raised inside it."""

    def draw():
        import io

        import streamlit as st
        import streamlit_drawable_canvas  # (imports only inside a Streamlit run)
        from PIL import Image

        from lab_pages._canvas import drawn_canvas

        forged = st.session_state["forged"]
        if forged == "bomb":
            buffer = io.BytesIO()
            Image.new("1", (9400, 9400)).save(buffer, format="PNG")
            data = buffer.getvalue()
        else:
            data = b"GIF89a...."

        class Result:
            @property
            def image_bytes(self):
                if forged == "unparsable":
                    raise AttributeError("'int' object has no attribute 'split'")
                return data

        real = streamlit_drawable_canvas.st_canvas
        streamlit_drawable_canvas.st_canvas = lambda **kwargs: Result()
        try:
            st.session_state["drawn"] = drawn_canvas(height=280, width=280, key="c")
        finally:
            streamlit_drawable_canvas.st_canvas = real

    at = AppTest.from_function(draw, default_timeout=60)
    at.session_state["forged"] = forged
    at.run()
    assert not at.exception
    assert at.session_state["drawn"] is None
    assert "unreadable" in at.warning[0].value


def test_a_damaged_challenge_database_is_said_on_the_page_and_left_as_it_was(isolated_store):
    folder = isolated_store / ".challenges"
    folder.mkdir(parents=True)
    (folder / "board.sqlite3").write_bytes(b"not a database at all" * 200)
    for at in (page(), page(c="ABCD")):
        assert not at.exception
        assert "cannot be used" in at.error[0].value and str(isolated_store) not in at.error[0].value
    assert (folder / "board.sqlite3").read_bytes().startswith(b"not a database")


def test_a_challenge_whose_model_was_removed_says_so_to_the_student(isolated_store):
    from robust_core.challenges import ChallengeRoom, read_challenges
    from robust_core.shipped import install_shipped
    from robust_core.store import ModelStore

    store = ModelStore(isolated_store)
    install_shipped(store)
    fool = next(c for c in read_challenges()[0] if c.kind == "fool")
    run = ChallengeRoom(store).start(fool, reference={})
    student = join(page(c=run.code), "bea")
    from robust_core.lectures import shipped_weights

    store.delete(shipped_weights()["mnist_cnn_pgd_at"][0])
    student.session_state["fool_paint"] = np.zeros((280, 280, 4), np.uint8) + 255
    student.run()
    assert not student.exception
    assert "cannot be played" in texts(student) and "removed from the store" in texts(student)
