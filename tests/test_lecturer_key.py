"""The lecturer key cannot be guessed by trying, from one browser or from many forged ones."""
import pytest
from streamlit.testing.v1 import AppTest

from robust_core.lecturer_key import LecturerKeyGuard
from tests.test_pages import APP

KEY = {"ROBUST_LECTURER_KEY": "s3cret"}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_visitor_gets_a_few_tries_a_second_apart_then_waits_out_the_window():
    clock = Clock()
    guard = LecturerKeyGuard(visitor_failures=3, server_failures=100, window_s=60, min_interval_s=1, clock=clock)
    for _ in range(3):
        verdict = guard.attempt("guess", visitor="a", environ=KEY)
        assert not verdict.accepted and verdict.message == "Wrong key." and verdict.retry_after_s == 0
        clock.now += 0.5
        too_soon = guard.attempt("s3cret", visitor="a", environ=KEY)  # even the right key: not compared
        assert not too_soon.accepted and too_soon.retry_after_s > 0 and "try again" in too_soon.message
        clock.now += 1.0
    locked = guard.attempt("s3cret", visitor="a", environ=KEY)
    assert not locked.accepted and 55 < locked.retry_after_s <= 60
    assert guard.attempt("s3cret", visitor="b", environ=KEY).accepted  # another visitor is not locked out
    clock.now += 61
    assert guard.attempt("s3cret", visitor="a", environ=KEY).accepted
    # A success forgets the visitor's failures.
    clock.now += 2
    assert guard.attempt("guess", visitor="a", environ=KEY).message == "Wrong key."


def test_forged_visitors_meet_the_server_wide_bound():
    clock = Clock()
    guard = LecturerKeyGuard(visitor_failures=5, server_failures=10, window_s=60, clock=clock)
    for i in range(10):  # a new cookie for every try
        assert guard.attempt(f"guess{i}", visitor=f"forged-{i}", environ=KEY).message == "Wrong key."
        clock.now += 0.1
    refused = guard.attempt("s3cret", visitor="forged-new", environ=KEY)
    assert not refused.accepted and refused.retry_after_s > 0
    clock.now += 60
    assert guard.attempt("s3cret", visitor="forged-new", environ=KEY).accepted


def test_no_configured_key_is_never_accepted_and_bad_settings_are_refused():
    guard = LecturerKeyGuard(min_interval_s=0)
    assert not guard.attempt("", visitor="a", environ={}).accepted
    assert not guard.attempt("anything", visitor="a", environ={}).accepted
    with pytest.raises(ValueError):
        LecturerKeyGuard(visitor_failures=0)


def test_the_sidebar_counts_each_typed_key_once_and_refuses_a_quick_second_guess(monkeypatch):
    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    monkeypatch.setenv("ROBUST_LECTURER_KEY", "s3cret")

    def browser_types(key):
        # (AppTest draws app.py's sidebar on the first run only: each try is a new session of the same browser.)
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["_owner_token"] = "guessing-browser"
        at.session_state["_lecturer_key_input"] = key
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    at = browser_types("wrong")
    assert [e.value for e in at.sidebar.error] == ["Wrong key."]
    assert at.session_state["_lecturer_key_input"] == ""  # tried once, then cleared: a rerun tries nothing again
    # The right key a moment after a wrong one, from another tab of the same browser: refused uncompared.
    at = browser_types("s3cret")
    assert not at.session_state["_lecturer"] and "try again in" in at.sidebar.error[0].value


def test_the_room_cannot_lock_the_lecturer_out():
    clock = Clock()
    guard = LecturerKeyGuard(visitor_failures=5, server_failures=10, window_s=60, clock=clock)
    assert guard.attempt("s3cret", visitor="lecturer-browser", environ=KEY).accepted
    for i in range(50):  # the room floods the field with forged cookies
        guard.attempt(f"guess{i}", visitor=f"forged-{i}", environ=KEY)
        clock.now += 0.1
    assert not guard.attempt("s3cret", visitor="late-browser", environ=KEY).accepted  # the bound holds
    # The browser that unlocked stays the lecturer, whatever the room does; until it leaves.
    assert guard.is_lecturer("lecturer-browser") and not guard.is_lecturer("forged-3")
    guard.leave("lecturer-browser")
    assert not guard.is_lecturer("lecturer-browser") and guard.has_left("lecturer-browser")
    # At the server's own machine the room's failures do not count; its own still do.
    clock.now += 1.1
    assert guard.attempt("s3cret", visitor="podium", from_server_machine=True, environ=KEY).accepted
    for _ in range(5):
        clock.now += 1.1
        assert guard.attempt("guess", visitor="podium-2", from_server_machine=True, environ=KEY).message == "Wrong key."
    clock.now += 1.1
    assert not guard.attempt("s3cret", visitor="podium-2", from_server_machine=True, environ=KEY).accepted


def test_a_lecturer_browser_stays_the_lecturer_after_a_reload(monkeypatch):
    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    monkeypatch.setenv("ROBUST_LECTURER_KEY", "s3cret")
    token = "0123456789abcdef0123456789abcdef"
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_owner_token"] = token
    at.session_state["_lecturer_key_input"] = "s3cret"
    at.run()
    assert not at.exception and at.session_state["_lecturer"]
    reloaded = AppTest.from_file(APP, default_timeout=120)  # a new session of the same browser (its cookie)
    reloaded.session_state["_owner_token"] = token
    reloaded.run()
    assert not reloaded.exception, [e.value for e in reloaded.exception]
    assert any("you are the lecturer" in c.value for c in reloaded.sidebar.caption)
    other = AppTest.from_file(APP, default_timeout=120)
    other.session_state["_owner_token"] = "f" * 32
    other.run()
    assert not any("you are the lecturer" in c.value for c in other.sidebar.caption)


@pytest.mark.parametrize("ip, headers, expected", [
    (None, {"Host": "localhost:8501"}, True),  # a browser on the server's machine, straight to Streamlit
    (None, {"Host": "lab.example", "X-Forwarded-For": "10.0.0.7"}, False),  # through the room's nginx
    (None, {"Host": "lab.example", "X-Forwarded-For": ""}, True),  # (an empty header is no forwarding)
    (None, {"Host": "lab.example", "Forwarded": "for=10.0.0.7"}, False),
    ("10.0.0.7", {"Host": "lab.example"}, False),  # a laptop in the room, Streamlit served on the network
    (None, {}, False),  # no real connection (AppTest)
])
def test_only_an_unforwarded_loopback_connection_is_the_server_machine(monkeypatch, ip, headers, expected):
    import types

    import lab_pages._audience as audience

    fake = types.SimpleNamespace(context=types.SimpleNamespace(ip_address=ip, headers=headers))
    monkeypatch.setattr(audience, "st", fake)
    assert audience._from_server_machine() is expected
