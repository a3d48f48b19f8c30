"""Issue 23, section 5: what the lecture server shows a visitor of itself (no paths, no tracebacks), and where it
listens by default."""
import tomllib

from streamlit.testing.v1 import AppTest

from tests.conftest import REPO
from tests.test_pages import APP


def open_models_page(monkeypatch, isolated_store, *, lecture: bool):
    if lecture:
        monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
        monkeypatch.setenv("ROBUST_LECTURER_KEY", "s3cret")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_owner_token"] = "a-visitor"
    at.run()
    at.switch_page("pages/models.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_visitors_see_neither_the_store_s_path_nor_error_details(monkeypatch, isolated_store):
    import streamlit as st

    at = open_models_page(monkeypatch, isolated_store, lecture=True)
    shown = " ".join(c.value for c in at.caption) + " ".join(m.value for m in at.markdown)
    assert str(isolated_store) not in shown and "ROBUST_STORE_DIR" not in shown
    assert st.get_option("client.showErrorDetails") == "none"  # an uncaught error: a generic message, no traceback
    monkeypatch.delenv("ROBUST_LECTURE_MODE")
    at = open_models_page(monkeypatch, isolated_store, lecture=False)
    assert any(str(isolated_store) in c.value for c in at.caption)  # single-user: the path helps
    assert st.get_option("client.showErrorDetails") != "none"


def test_the_server_listens_on_loopback_unless_told_otherwise():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
