"""What one visitor shows the others: a model's name is plain text on every page, never
Markdown or HTML; it cannot pass for another model's (Unicode look-alikes); a visitor's model is marked as a
student's and is never another visitor's default; the lecturer's models stay the lecturer's, and a shared training
that its first requester cancelled is saved as the remaining requester's."""
import json
import re
import threading

import pytest
from streamlit.testing.v1 import AppTest

from robust_core.access import (
    LECTURER_OWNER,
    Visitor,
    can_modify,
    model_owner,
    trained_by_visitor,
    visitor_id,
)
from robust_core.names import clean_name, names_look_alike
from robust_core.store import (
    ModelStore,
    StoreError,
    display_names,
    record_training_request,
)

from .browser import (
    browser_page,
    chromium_available,
    dashboard,
    page_errors,
    wait_until_idle,
)
from .test_pages import APP, widget

IMAGE_NAME = "![t](http://127.0.0.1:8699/track.png)"  # every browser showing it as Markdown would fetch that address
HTML_NAME = "**bold** <img src=x onerror=alert(1)>"
SHIPPED_NAME = "CNN · PGD-AT ε=0.3"
LOOK_ALIKE = "СNN · PGD-AT ε=0.3"  # a Cyrillic С


def variant(result, **changes):
    """The same weights under another configuration: another store entry, no training."""
    return result.__class__(result.model, result.config.replace(**changes), {}, {}, 0.0)


def files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def backdate(entry, created: str) -> None:
    """Set an entry's creation time (pages list the newest first), as a store written over days would have it."""
    (entry.path / "meta.json").write_text(json.dumps({**entry.meta, "created": created}))


# ---- names are plain text -------------------------------------------------------------------------------------------
# Fields of the page's elements that Streamlit renders as Markdown (bodies of Markdown, captions, alerts and headings;
# widget, metric and expander labels; help tooltips; progress texts; image captions). Not JSON, code or tables.
PLAIN_TYPES = {"json", "code", "dataframe", "arrow_data_frame", "text", "plotly_chart", "text_input"}


def markdown_sources(node, found=None) -> list[str]:
    found = [] if found is None else found
    proto, kind = getattr(node, "proto", None), getattr(node, "type", None)
    if proto is not None and hasattr(proto, "DESCRIPTOR") and kind not in PLAIN_TYPES:
        for field in ("body", "label", "help", "text", "caption"):
            if field in proto.DESCRIPTOR.fields_by_name and isinstance(getattr(proto, field), str):
                found.append(getattr(proto, field))
        if "expandable" in proto.DESCRIPTOR.fields_by_name:
            found.append(proto.expandable.label)
        if "imgs" in proto.DESCRIPTOR.fields_by_name:
            found.extend(img.caption for img in proto.imgs)
    for child in getattr(node, "children", {}).values():
        markdown_sources(child, found)
    return found


def figure_specs(node, found=None) -> list[str]:
    found = [] if found is None else found
    if getattr(node, "type", None) == "plotly_chart":
        found.append(node.proto.spec)
    for child in getattr(node, "children", {}).values():
        figure_specs(child, found)
    return found


def assert_plain(at: AppTest, page: str) -> list[str]:
    """No Markdown element of the page would render a hostile name as an image, a link, emphasis or HTML; no figure
    holds its HTML. Returns the Markdown sources that show one of the names."""
    sources = markdown_sources(at._tree)
    for text in sources:
        # Unescaped, "![t](" is an image, "](" a link, "**" emphasis; and GitHub's Markdown links a bare URL.
        assert not re.search(r"(?<!\\)!\[|(?<!\\)\]\(|\*\*bold|(?<!\\)<img", text), (page, text)
        assert "127.0.0.1:8699" not in text and "http:" not in text, (page, text)
    for spec in figure_specs(at._tree):
        assert "<img" not in spec, (page, spec[:300])  # Plotly reads HTML in names and titles, not Markdown
    return [s for s in sources if "track" in s or "onerror" in s]


@pytest.fixture
def hostile_store(isolated_store, tiny_result):
    """A store whose two newest networks are named with Markdown (an image from another host) and HTML."""
    store = ModelStore(isolated_store)
    plain_model = store.save(tiny_result, name="CNN · standard")
    image = store.save(variant(tiny_result, seed=1), name=IMAGE_NAME)
    html = store.save(variant(tiny_result, seed=2), name=HTML_NAME)
    backdate(plain_model, "2000-01-01T00:00:00+00:00")
    return store, image, html


def test_a_hostile_name_is_plain_text_on_every_page(hostile_store):
    from lab_pages._text import plain
    from robust_core.plots import plotly_text

    store, image, html = hostile_store
    ids = f"{image.model_id},{html.model_id}"
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["models"] = ids
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown: dict[str, list[str]] = {}
    for page in ("lab_pages/attack.py", "lab_pages/models.py", "lab_pages/train.py", "lab_pages/confidence.py",
                 "lab_pages/saliency.py", "lab_pages/classviz.py"):
        at.switch_page(page)
        at.query_params["models"] = ids
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        shown[page] = assert_plain(at, page)
        if page == "lab_pages/saliency.py":  # the grid's titles name the models: Plotly text, escaped
            assert any(plotly_text(HTML_NAME) in spec for spec in figure_specs(at._tree))
    # The names are there, escaped: the Attack page's "not computed yet" warning, the Models page's delete
    # confirmation (the sidebar's newest model is a hostile one), the progress texts of Confidence and Saliency.
    assert any(plain(IMAGE_NAME) in s and plain(HTML_NAME) in s for s in shown["lab_pages/attack.py"]), shown
    assert any(plain(HTML_NAME) in s for s in shown["lab_pages/models.py"]), shown
    assert plain(IMAGE_NAME).startswith("\\!\\[t\\]\\(http\u2060\\:")  # what the browser test shows as text


def test_a_job_label_with_a_name_is_plain_in_the_status_line():
    """The job status line, which every visitor waiting on the same job sees."""
    from lab_pages._jobs import _job_line
    from robust_core.jobs import JobRunner

    runner, release = JobRunner(), threading.Event()
    runner.submit("block", lambda ctx: release.wait(30), owner="someone")
    job = runner.submit("named", lambda ctx: None, owner="me", label=f"{IMAGE_NAME} · PGD · 500 images")
    try:
        line = _job_line(job, runner)
        assert "\\!\\[t\\]\\(" in line and not re.search(r"(?<!\\)\]\(", line) and "127.0.0.1:8699" not in line
    finally:
        release.set()


@pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")
def test_no_browser_fetches_the_address_in_a_model_name(hostile_store):
    """In Chromium: the Attack page's "not computed yet" warning and the Models page show the names literally, and
    nothing asks for the address in the name (nor the "x" of the HTML name's image)."""
    store, image, html = hostile_store
    requests: list[str] = []
    with dashboard() as url, browser_page(height=1400) as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{url}/attack?models={image.model_id},{html.model_id}")
        wait_until_idle(page)
        page.get_by_text("Not computed yet").first.wait_for(timeout=60_000)
        text = page.locator('[data-testid="stMain"]').inner_text().replace("\u2060", "")
        assert IMAGE_NAME in text and HTML_NAME in text, text[:2000]
        page.goto(f"{url}/models")
        wait_until_idle(page)
        page.get_by_text("Yes, delete").first.wait_for(timeout=60_000)  # a loaded machine draws the page in steps
        text = page.locator('[data-testid="stMain"]').inner_text().replace("\u2060", "")
        assert f"Yes, delete “{HTML_NAME}”" in text, text[:2000]
        assert page_errors(page) == []
        main = '[data-testid="stMain"]'
        assert page.locator(f'{main} img[src*="8699"], {main} strong:text("bold")').count() == 0
    assert not [r for r in requests if "8699" in r or r.split("?")[0].rstrip("/").endswith("/x")], requests


# ---- look-alike names -----------------------------------------------------------------------------------------------
def test_names_that_read_alike_are_one_name():
    for a, b in ((LOOK_ALIKE, SHIPPED_NAME), ("ＣＮＮ", "cnn"), ("C\u200bNN", "CNN"), ("CNN\u202e", "CNN"),
                 ("САТ", "CAT"), ("САТ", "cat"), ("Ϲat", "cat"), ("Original", "ORIGINAL"), ("  a  b ", "A B")):
        assert names_look_alike(a, b), (a, b)
    for a, b in (("CNN", "MLP"), ("model a", "model b"), ("CNN · standard", "CNN · PGD-AT"), ("ε=0.3", "ε=0.1")):
        assert not names_look_alike(a, b), (a, b)


def test_a_look_alike_of_another_model_s_name_is_refused_and_nothing_changes(store, tiny_result):
    shipped = store.save(tiny_result, name=SHIPPED_NAME)
    mine = store.save(variant(tiny_result, seed=1), name="my CNN")
    before = files(store.root)
    for taken in (LOOK_ALIKE, "C\u200bNN · PGD-AT ε=0.3", "ＣＮＮ · PGD-AT ε=0.3", "\u202eCNN · PGD-AT ε=0.3"):
        with pytest.raises(StoreError, match=f"already named.*{shipped.model_id}"):
            store.rename(mine.model_id, taken)
    with pytest.raises(StoreError, match="empty"):
        store.rename(mine.model_id, "\u200b\u2060 \u202e")
    assert files(store.root) == before
    # Invisible characters are removed from the names the store keeps; a new model never takes a look-alike.
    assert store.rename(mine.model_id, "my\u200b \u202eown CNN").name == "my own CNN"
    assert store.save(variant(tiny_result, seed=2), name=LOOK_ALIKE).name == f"{LOOK_ALIKE} (2)"
    with pytest.raises(StoreError, match=shipped.model_id):
        store.check_name("mnist", LOOK_ALIKE)


def test_the_train_page_refuses_a_look_alike_name_before_training(isolated_store, tiny_result):
    from lab_pages._jobs import job_runner

    store = ModelStore(isolated_store)
    shipped = store.save(tiny_result, name=SHIPPED_NAME)
    before = files(store.root)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("lab_pages/train.py").run()
    widget(at.selectbox, "Training images").select(1000)
    widget(at.text_input, "Name in the store (optional)").input(LOOK_ALIKE).run()
    assert any(shipped.model_id in e.value and "alike" in e.value for e in at.error), [e.value for e in at.error]
    assert widget(at.button, "Train").disabled
    # A click forged past the disabled button: Streamlit drops a disabled widget's value, and the page checks again.
    forged = widget(at.button, "Train")
    forged.proto.disabled = False
    forged.click().run()
    assert not at.exception and job_runner().jobs() == []
    assert files(store.root) == before


# ---- visitors' models in pickers and defaults -----------------------------------------------------------------------
def test_a_visitor_s_model_is_marked_in_pickers_and_never_another_visitor_s_default(
        monkeypatch, isolated_store, tiny_result):
    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    store = ModelStore(isolated_store)
    shipped = store.save(tiny_result, name="CNN · standard")
    robust = store.save(variant(tiny_result, method="pgd_at"), name=SHIPPED_NAME)
    student = {"owner": visitor_id("student-a")}
    # Newer than the shipped ones: the newest standard network, and the newest PGD-trained one, are a student's.
    theirs = store.save(variant(tiny_result, seed=7), name="СNN · standard", extra_meta=student)
    theirs_robust = store.save(variant(tiny_result, seed=8, method="pgd_at"), name=LOOK_ALIKE, extra_meta=student)
    for entry in (shipped, robust):
        backdate(entry, "2000-01-01T00:00:00+00:00")
    assert {theirs.name, theirs_robust.name} == {"СNN · standard (2)", f"{LOOK_ALIKE} (2)"}  # look-alikes: not taken

    for token, expected_sidebar in (("student-b", shipped.model_id), ("student-a", theirs.model_id)):
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["_owner_token"] = token
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        sidebar = widget(at.sidebar.selectbox, "Model")
        assert at.session_state["model_id"] == expected_sidebar, token  # one's own model may be one's default
        labels = {o for o in sidebar.options}
        assert {f"(student) {theirs.name}", f"(student) {theirs_robust.name}", shipped.name, robust.name} == labels
        at.switch_page("lab_pages/classviz.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["classviz_models"][0] == expected_sidebar
        if token == "student-b":
            assert at.session_state["classviz_models"] == [shipped.model_id, robust.model_id]
    # Outside lecture mode nobody is a student and every model is a candidate, as before.
    assert display_names(store.list()) == {e.model_id: e.name for e in store.list()}


def test_labels_stay_distinct_when_a_student_mark_meets_a_lecturer_s_name(store, tiny_result):
    lecturers = store.save(tiny_result, name="(student) x")
    students = store.save(variant(tiny_result, seed=1), name="x", extra_meta={"owner": visitor_id("s")})
    labels = display_names(store.list(), mark_students=True)
    assert len(set(labels.values())) == 2 and labels[students.model_id].startswith("(student) x")
    assert labels[lecturers.model_id].startswith("(student) x")


# ---- the lecturer's models, and shared trainings ---------------------------------------------------------------------
def test_what_the_lecturer_trains_is_the_lecturer_s_not_the_browser_s(monkeypatch, isolated_store):
    """Trained with the key, a model records the lecturer as owner: the same browser, without the key, may not
    rename it, and pickers do not mark it as a student's."""
    from .test_pages import finish_jobs

    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    monkeypatch.setenv("ROBUST_LECTURER_KEY", "s3cret")
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["_owner_token"] = "lecturer-browser"
    at.session_state["_lecturer_key_input"] = "s3cret"
    at.run()
    assert at.session_state["_lecturer"]
    at.switch_page("lab_pages/train.py").run()
    widget(at.selectbox, "Training images").select(1000)
    widget(at.number_input, "Epochs").set_value(1)
    widget(at.button, "Train").click().run()
    finish_jobs(at)
    [entry] = ModelStore(isolated_store).list()
    assert entry.meta["owner"] == LECTURER_OWNER and not trained_by_visitor(entry.meta)
    # The same browser once it left lecturer mode (or after a server restart: the key is not kept) may not rename or
    # delete it.
    from lab_pages._audience import lecturer_key_guard

    lecturer_key_guard().leave(visitor_id("lecturer-browser"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_owner_token"] = "lecturer-browser"
    at.run()
    at.switch_page("lab_pages/models.py").run()
    assert widget(at.text_input, "New name").disabled and widget(at.button, "Rename").disabled
    assert any("Lecture mode" in i.value for i in at.info)
    same_browser = Visitor(visitor_id("lecturer-browser"))
    assert not can_modify(entry.meta, same_browser, lecture=True)[0]
    assert can_modify(entry.meta, Visitor(same_browser.owner, lecturer=True), lecture=True)[0]
    assert model_owner(same_browser) == same_browser.owner  # a visitor's own model stays theirs
    # Trained outside lecture mode, a model is the lab owner's: not a "(student)" model once a lecture starts.
    assert model_owner(same_browser, lecture=False) == LECTURER_OWNER


def test_a_shared_training_cancelled_by_its_first_requester_is_saved_as_the_remaining_requester_s(store, mnist):
    from robust_core.jobs import JobRunner
    from robust_core.training import TrainConfig

    runner, release = JobRunner(), threading.Event()
    runner.submit("block", lambda ctx: release.wait(60), owner="someone")  # the training waits in the queue
    config = TrainConfig(train_subset=200, epochs=1, batch_size=100, seed=11)
    first, second = visitor_id("first"), visitor_id("second")
    job = runner.submit("train", store.training_job(config, data=mnist, name="first's name",
                                                    extra_meta={"owner": first}), owner=first)
    record_training_request(job, first, name="first's name", extra_meta={"owner": first})
    assert runner.submit("train", lambda ctx: None, owner=second) is job  # the second joins the same training
    record_training_request(job, second, name="second's name", extra_meta={"owner": second})
    runner.cancel(job, first)
    release.set()
    assert job.wait(120) and job.status == "done", job.error
    saved = store.get(config.config_hash())
    assert (saved.name, saved.meta["owner"]) == ("second's name", second)


def test_blank_looking_padding_does_not_make_a_new_name():
    """A curious student's finding: Braille blanks, Hangul fillers, variation selectors and the combining grapheme
    joiner draw nothing, so a shipped name padded with them read as that name in a picker."""
    for padding in ("\u2800" * 30, "\u3164", "\u115f", "\ufe0f\u034f", "\U000e0100"):
        assert clean_name(SHIPPED_NAME + padding) == SHIPPED_NAME
        assert names_look_alike(SHIPPED_NAME + padding, SHIPPED_NAME), repr(padding)
    assert clean_name("café") == "café" and clean_name("cafe\u0301") == "cafe\u0301"  # accents stay


def test_a_huge_forged_name_is_refused_before_it_is_cleaned(monkeypatch, isolated_store):
    """A curious student's finding: an 8 MB name cost 1.6 s of Unicode cleaning at every rerun before its length
    was checked."""
    import robust_core.store.model_store as store_module

    def no_cleaning(name):
        raise AssertionError("cleaned a name longer than any the store keeps")

    monkeypatch.setattr(store_module, "clean_name", no_cleaning)
    with pytest.raises(store_module.StoreError, match="at most 120"):
        ModelStore(isolated_store).check_name("mnist", "x" * 8_000_000)
