"""Lecture mode: visitors cannot change what is not theirs; the lecturer can; training is limited."""

import pytest
from streamlit.testing.v1 import AppTest

from robust_core.access import (
    Visitor,
    can_modify,
    is_lecturer_key,
    lecture_mode,
    training_limits_error,
    visitor_id,
)
from robust_core.store import ModelStore
from tests.test_pages import APP, widget


def test_the_rules():
    assert lecture_mode(argv=[], environ={"ROBUST_LECTURE_MODE": "1"})
    assert lecture_mode(argv=["app.py", "--lecture"], environ={})
    assert not lecture_mode(argv=[], environ={}) and not lecture_mode(argv=[], environ={"ROBUST_LECTURE_MODE": "0"})
    assert is_lecturer_key("s3cret", environ={"ROBUST_LECTURER_KEY": "s3cret"})
    assert not is_lecturer_key("guess", environ={"ROBUST_LECTURER_KEY": "s3cret"})
    assert not is_lecturer_key("", environ={}) and not is_lecturer_key("anything", environ={})  # no key: no lecturer
    student, other, lecturer = Visitor("tok-a"), Visitor("tok-b"), Visitor("tok-c", lecturer=True)
    shipped, mine = {"name": "CNN · standard"}, {"name": "my CNN", "owner": "tok-a"}
    assert can_modify(shipped, student, lecture=False)[0]  # single-user mode: everything, as before
    assert not can_modify(shipped, student, lecture=True)[0] and not can_modify(mine, other, lecture=True)[0]
    assert can_modify(mine, student, lecture=True)[0] and can_modify(shipped, lecturer, lecture=True)[0]
    assert training_limits_error(epochs=2, train_subset=5000, lecture=True, lecturer=False) is None
    assert "3 epochs" in training_limits_error(epochs=10, train_subset=5000, lecture=True, lecturer=False)
    assert "10,000 training images" in training_limits_error(epochs=1, train_subset=None, lecture=True, lecturer=False)
    assert training_limits_error(epochs=50, train_subset=None, lecture=True, lecturer=True) is None
    assert training_limits_error(epochs=50, train_subset=None, lecture=False, lecturer=False) is None


@pytest.fixture
def lecture(monkeypatch, isolated_store, tiny_result):
    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    monkeypatch.setenv("ROBUST_LECTURER_KEY", "s3cret")
    store = ModelStore(isolated_store)
    lecturers = store.save(tiny_result, name="lecturer's CNN")
    return store, lecturers


def models_page(token: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_owner_token"] = token
    at.run()
    at.switch_page("lab_pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_visitor_cannot_rename_or_delete_a_model_that_is_not_theirs(lecture):
    store, lecturers = lecture
    at = models_page("student-token")
    assert widget(at.text_input, "New name").disabled
    assert [b for b in at.get("button") if b.proto.label == "Delete"][0].proto.disabled
    assert [c for c in at.checkbox if c.label.startswith("Yes, delete")][0].disabled
    assert any("Lecture mode" in i.value for i in at.info)
    assert at.get("file_uploader")[0].proto.disabled  # uploads are the lecturer's
    assert lecturers.model_id in store


def test_a_visitor_may_change_their_own_model_and_the_lecturer_every_model(lecture, tiny_result, mnist):
    from robust_core.training import TrainConfig, train_model

    store, lecturers = lecture
    own = store.save(train_model(TrainConfig(train_subset=500, epochs=1, seed=5), data=mnist), name="my CNN",
                     extra_meta={"owner": visitor_id("student-token")})
    at = models_page("student-token")
    widget(at.selectbox, "Model").set_value(own.model_id).run()
    assert not widget(at.text_input, "New name").disabled
    widget(at.text_input, "New name").input("my renamed CNN")
    [b for b in at.button if b.label == "Rename"][0].click().run()
    assert store.get(own.model_id).name == "my renamed CNN"
    # The lecturer's key unlocks the lecturer's model too; a wrong key does not. (The sidebar is drawn by app.py,
    # which AppTest runs on the first run only: the key is typed before it.)
    from lab_pages._audience import lecturer_key_guard

    for key, unlocked in (("wrong", False), ("s3cret", True)):
        lecturer_key_guard.clear()  # a second try right after a wrong one waits a second (tested on its own)
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["_owner_token"] = "lecturer-browser"
        at.session_state["_lecturer_key_input"] = key
        at.run()
        assert bool(at.session_state["_lecturer"] if "_lecturer" in at.session_state else False) is unlocked
        assert any("Wrong key" in e.value for e in at.sidebar.error) is not unlocked
        at.switch_page("lab_pages/models.py").run()
        widget(at.selectbox, "Model").set_value(lecturers.model_id).run()
        assert widget(at.text_input, "New name").disabled is not unlocked


def test_visitors_train_small_models_only(lecture):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("lab_pages/train.py").run()
    assert any("Lecture mode" in w.value for w in at.warning)  # all training images by default
    assert [b for b in at.button if b.label == "Train"][0].disabled
    widget(at.selectbox, "Training images").select(1000).run()
    widget(at.number_input, "Epochs").set_value(2).run()
    assert not [b for b in at.button if b.label == "Train"][0].disabled


def test_the_owner_id_is_a_hash_of_the_browser_secret_which_a_first_visit_stores_in_a_cookie(lecture):
    """Models record the public id, not the secret; a first visit embeds the script that keeps the secret in a cookie
    (tests/test_browser.py checks that a reload keeps it)."""
    from lab_pages._audience import VISITOR_COOKIE

    secret = "0123456789abcdef0123456789abcdef"
    assert (visitor_id(secret) != secret and len(visitor_id(secret)) == 32
            and visitor_id(secret) != visitor_id(secret[::-1]))
    at = AppTest.from_file(APP, default_timeout=120).run()
    made = at.session_state["_owner_token"]
    scripts = [str(e.proto) for e in at.sidebar.get("iframe")]
    assert len(made) == 32 and any(f"{VISITOR_COOKIE}={made}" in s for s in scripts), scripts
    at.run()  # once stored, not embedded again
    assert not [e for e in at.sidebar.get("iframe") if VISITOR_COOKIE in str(e.proto)]
