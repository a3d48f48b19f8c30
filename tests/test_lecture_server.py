"""What the lecture server shows a visitor of itself (no paths, no tracebacks), and where it
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
    at.switch_page("lab_pages/models.py").run()
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


def test_a_visitor_neither_downloads_a_missing_dataset_nor_sees_its_folders(monkeypatch, isolated_store, tmp_path):
    """A curious student's finding: choosing CIFAR-10 made the server try a download and showed its data folders."""
    import robust_core.data as data_module

    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    monkeypatch.setenv("ROBUST_LECTURER_KEY", "s3cret")
    monkeypatch.setenv("ROBUST_DATA_DIR", str(tmp_path / "empty-data"))
    monkeypatch.delenv("ROBUST_OFFLINE")  # as a real, online server
    downloads = []
    real = data_module.load_dataset
    monkeypatch.setattr(data_module, "load_dataset",
                        lambda *a, **k: downloads.append(k.get("download")) or real(*a, **k))
    from lab_pages import _resources

    monkeypatch.setattr(_resources, "load_dataset", data_module.load_dataset)
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_owner_token"] = "a-visitor"
    at.run()
    at.switch_page("lab_pages/attack.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = " ".join(e.value for e in at.error)
    assert "not available on this server" in shown and str(tmp_path) not in shown and "empty-data" not in shown
    assert downloads and all(d is False for d in downloads)


def test_the_server_keeps_only_uploads_under_file_ids_it_issued():
    """A curious student's finding: PUTs under made-up file ids of the student's own session were kept (600 MB each)."""
    import pytest
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    from lab_pages._audience import accept_only_issued_uploads

    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    accept_only_issued_uploads(manager)
    accept_only_issued_uploads(manager)  # once per process: a second call wraps nothing again
    [issued] = manager.get_upload_urls("session-a", ["digit.png"])
    manager.add_file("session-a", UploadedFileRec(issued.file_id, "digit.png", "image/png", b"png"))
    assert [f.name for f in manager.get_files("session-a", [issued.file_id])] == ["digit.png"]
    for session, file_id in (("session-a", "made-up-0"), ("session-b", issued.file_id), ("session-a", issued.file_id)):
        with pytest.raises(PermissionError):  # made up, another session's, or used already
            manager.add_file(session, UploadedFileRec(file_id, "x", "application/octet-stream", b"x" * 1000))
    assert manager.get_files("session-a", ["made-up-0"]) == []
    assert manager.get_files("session-b", [issued.file_id]) == []


def test_a_visitor_cannot_fill_the_server_s_memory_with_uploads():
    """A curious student's finding: ids were issued for any number of file names, on any page, and each id took a file
    up to 600 MB. Now a session holds a few unused ids, and in lecture mode a visitor's files are small."""
    import pytest
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    import lab_pages._audience as audience

    manager = MemoryUploadedFileManager("/_stcore/upload_file")
    audience.accept_only_issued_uploads(manager, lecture=lambda: True)
    infos = manager.get_upload_urls("student", [f"f{i}.png" for i in range(100)])
    assert len(infos) == audience.UNUSED_IDS_PER_SESSION
    big = b"x" * (audience.VISITOR_UPLOAD_BYTES + 1)
    with pytest.raises(PermissionError):
        manager.add_file("student", UploadedFileRec(infos[0].file_id, "big.png", "image/png", big))
    small = b"x" * (audience.VISITOR_UPLOAD_BYTES - 1)
    manager.add_file("student", UploadedFileRec(infos[1].file_id, "a.png", "image/png", small))
    manager.add_file("student", UploadedFileRec(infos[2].file_id, "b.png", "image/png", small))
    with pytest.raises(PermissionError):  # the third one would hold more than the visitor's total
        manager.add_file("student", UploadedFileRec(infos[3].file_id, "c.png", "image/png", small))
    # Ids asked for again and again: only the newest few stay usable.
    for _ in range(3):
        newest = manager.get_upload_urls("student", ["g.png", "h.png"])
    assert len(manager._robust_lab_issued["student"]) == audience.UNUSED_IDS_PER_SESSION
    # The lecturer's session uploads weights files.
    audience._lecturer_sessions.add("lecturer")
    try:
        [weights] = manager.get_upload_urls("lecturer", ["vgg16.pth"])
        manager.add_file("lecturer", UploadedFileRec(weights.file_id, "vgg16.pth", "application/octet-stream", big))
        assert len(manager.get_files("lecturer", [weights.file_id])[0].data) == len(big)
    finally:
        audience._lecturer_sessions.discard("lecturer")
    assert newest
