"""The Models page and the sidebar's model picker: unique names, labels that tell models apart, and a
delete that removes exactly the model that was confirmed."""
import json

import pytest

from robust_core.store import ModelStore

from .browser import (
    browser_page,
    chromium_available,
    dashboard,
    open_page,
    page_errors,
    wait_until_idle,
)
from .test_pages import run_app, widget


def _variant(result, seed: int):
    """The same weights under another configuration: another store entry, no training."""
    return result.__class__(result.model, result.config.replace(seed=seed), {}, {}, 0.0)


@pytest.fixture
def two_models(isolated_store, tiny_result):
    """(older, newer) entries of one dataset; the newer one is listed first."""
    store = ModelStore(isolated_store)
    older = store.save(tiny_result, name="CNN · standard")
    newer = store.save(_variant(tiny_result, 1), name="my CNN")
    meta = {**newer.meta, "created": "2999-01-01T00:00:00+00:00"}  # newest whatever the clock says
    (newer.path / "meta.json").write_text(json.dumps(meta))
    return older, newer


def _manage(at):
    return widget(at.main.selectbox, "Model")


def _pick(select, model_id):
    # AppTest sends a selectbox's choice as its label, as a browser does.
    return select.set_value(model_id)


def test_rename_to_a_taken_name_is_refused_naming_the_other_model(two_models, isolated_store):
    older, newer = two_models
    at = run_app("lab_pages/models.py")
    _pick(_manage(at), newer.model_id).run()
    widget(at.text_input, "New name").input("  cnn · STANDARD")
    widget(at.button, "Rename").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("already named" in e.value and older.model_id in e.value for e in at.error), [e.value for e in at.error]
    assert ModelStore(isolated_store).get(newer.model_id).name == "my CNN"
    assert not at.success


def test_a_rename_keeps_the_managed_model(two_models, isolated_store):
    """Before: renaming changed the picker's labels, so it became a new widget showing the sidebar's
    model (in the report, the shipped CNN · standard), whose confirmation was then ticked."""
    older, newer = two_models
    at = run_app("lab_pages/models.py")
    assert _manage(at).value == newer.model_id  # the sidebar's model (the newest standard network)
    _pick(_manage(at), older.model_id).run()
    widget(at.text_input, "New name").input("renamed CNN")
    widget(at.button, "Rename").click().run()
    assert ModelStore(isolated_store).get(older.model_id).name == "renamed CNN"
    assert _manage(at).value == older.model_id
    assert at.checkbox[0].label.startswith("Yes, delete “renamed CNN”") and older.model_id in at.checkbox[0].label


def test_pickers_tell_models_with_equal_names_apart(two_models, isolated_store):
    older, newer = two_models
    # A store written before names were unique can hold two models of one name.
    meta = {**newer.meta, "name": "CNN · standard", "created": "2999-01-01T00:00:00+00:00"}
    (newer.path / "meta.json").write_text(json.dumps(meta))
    at = run_app()
    sidebar = widget(at.sidebar.selectbox, "Model")
    assert sorted(sidebar.options) == sorted(f"CNN · standard [{e.model_id[:8]}]" for e in (older, newer))
    at.switch_page("lab_pages/models.py").run()
    manage = _manage(at)
    assert len(set(manage.options)) == 2 and all("CNN · standard [" in o for o in manage.options)
    # Picking the older model (sent back to the server as its label) selects the older model.
    _pick(manage, older.model_id).run()
    assert _manage(at).value == older.model_id
    assert older.model_id in at.checkbox[0].label


def test_delete_confirmation_names_the_model_and_its_id(two_models, isolated_store):
    older, newer = two_models
    at = run_app("lab_pages/models.py")
    _pick(_manage(at), older.model_id).run()
    label = at.checkbox[0].label
    assert "CNN · standard" in label and older.model_id in label
    assert widget(at.button, "Delete").disabled
    at.checkbox[0].check().run()
    widget(at.button, "Delete").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.model_id for e in ModelStore(isolated_store).list()] == [newer.model_id]
    assert any("Deleted" in s.value and older.model_id in s.value for s in at.success), [s.value for s in at.success]


def test_the_confirmed_model_stays_selected_when_the_sidebar_model_changes(two_models, isolated_store):
    """The reported loss: after the tick, "Manage a model" jumped to the sidebar's model, whose own
    confirmation the user then ticked and deleted. The managed model must not follow the sidebar."""
    older, newer = two_models
    at = run_app("lab_pages/models.py")
    _pick(_manage(at), older.model_id).run()
    at.checkbox[0].check().run()
    at.session_state["model_id"] = newer.model_id  # what the sidebar does when its model changes
    at.run()
    assert _manage(at).value == older.model_id
    assert at.checkbox[0].value and older.model_id in at.checkbox[0].label
    widget(at.button, "Delete").click().run()
    assert [e.model_id for e in ModelStore(isolated_store).list()] == [newer.model_id]


def test_a_delete_never_removes_a_model_other_than_the_confirmed_one(two_models, isolated_store):
    older, newer = two_models
    at = run_app("lab_pages/models.py")
    _pick(_manage(at), older.model_id).run()
    at.checkbox[0].check().run()
    # Another model picked after the tick: the confirmation is withdrawn.
    _pick(_manage(at), newer.model_id).run()
    assert not at.checkbox[0].value and newer.model_id in at.checkbox[0].label
    assert widget(at.button, "Delete").disabled
    # The selection changes in the very run of the click (the button was drawn for the confirmed
    # model): nothing is deleted.
    _pick(_manage(at), older.model_id).run()
    at.checkbox[0].check().run()
    _pick(_manage(at), newer.model_id)
    widget(at.button, "Delete").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(ModelStore(isolated_store).list()) == 2
    assert any("nothing was deleted" in w.value for w in at.warning), [w.value for w in at.warning]


def test_the_sidebar_shows_a_new_name_at_once_and_keeps_its_model(two_models, isolated_store):
    """A browser holds a selectbox's choice as the label it shows, and sends it back. After a rename
    the server must send the new label, or the browser keeps the old name and its next request
    (an old label that no option has any more) moves the sidebar to another model."""
    older, newer = two_models
    at = run_app()
    _pick(widget(at.sidebar.selectbox, "Model"), older.model_id).run()
    at.switch_page("lab_pages/models.py").run()
    assert widget(at.sidebar.selectbox, "Model").value == older.model_id  # the sidebar is drawn
    assert _manage(at).value == older.model_id  # "Manage a model" starts from the sidebar's model
    widget(at.text_input, "New name").input("renamed CNN")
    widget(at.button, "Rename").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Renamed" in s.value and older.model_id in s.value for s in at.success), [s.value for s in at.success]
    for select in (widget(at.sidebar.selectbox, "Model"), _manage(at)):
        assert select.value == older.model_id
        assert select.options[select.index] == "renamed CNN"
        # What the browser is told to show: it keeps the label it has unless the server sends one.
        assert select.proto.set_value and select.proto.raw_value == "renamed CNN"
    at.checkbox[0].check().run()  # the next request: both pickers stay on the renamed model
    assert widget(at.sidebar.selectbox, "Model").value == older.model_id and _manage(at).value == older.model_id
    assert older.model_id in at.checkbox[0].label and at.checkbox[0].value


def test_a_rename_elsewhere_keeps_the_sidebar_on_its_model(two_models, isolated_store):
    """The label the browser sends back after a rename by another page, tab or the command line is
    the old one (AppTest, like a browser, sends the label it last received)."""
    older, newer = two_models
    at = run_app()
    _pick(widget(at.sidebar.selectbox, "Model"), older.model_id).run()
    ModelStore(isolated_store).rename(older.model_id, "renamed CNN")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    sidebar = widget(at.sidebar.selectbox, "Model")
    assert sidebar.value == older.model_id
    assert sidebar.proto.set_value and sidebar.proto.raw_value == "renamed CNN"
    at.run()
    assert widget(at.sidebar.selectbox, "Model").value == older.model_id


@pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")
def test_in_the_browser_a_rename_shows_at_once_in_both_pickers(two_models, isolated_store):
    """What the user sees (AppTest cannot show what the browser displays): before, the sidebar kept
    the old name until the next interaction."""
    older, newer = two_models
    with dashboard() as url, browser_page(1280, 720) as page:
        open_page(page, url, "Models")
        main = page.locator('[data-testid="stMain"]')

        def shown(root):
            return root.locator('input[role="combobox"][aria-label="Model"]').input_value()

        sidebar = page.locator('[data-testid="stSidebar"]')
        assert shown(sidebar) == "my CNN" and shown(main).startswith("my CNN")
        # 90 s: under the suite's load (two workers, other browsers) the rename's two reruns took over 30 s once.
        main.get_by_label("New name").fill("renamed CNN")
        main.get_by_role("button", name="Rename").click()
        main.get_by_test_id("stAlertContentSuccess").filter(has_text="Renamed").first.wait_for(timeout=90_000)
        wait_until_idle(page)
        assert shown(sidebar) == "renamed CNN" and shown(main) == "renamed CNN"
        main.get_by_label("New name").fill("cnn · standard")
        main.get_by_role("button", name="Rename").click()
        main.get_by_text("already named").wait_for(timeout=90_000)
        assert older.model_id in main.locator('[data-testid="stAlert"]').inner_text()
        main.locator('[data-testid="stCheckbox"]').first.click()
        wait_until_idle(page)
        assert shown(sidebar) == shown(main) == "renamed CNN"
        assert newer.model_id in main.locator('[data-testid="stCheckbox"]').first.inner_text()
        assert page_errors(page) == []
    assert ModelStore(isolated_store).get(newer.model_id).name == "renamed CNN"


@pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium and playwright")
def test_in_the_browser_weights_trained_elsewhere_are_checked_and_imported(isolated_store, tmp_path):
    """The Models page's second kind of upload, as the lecturer does it: a safetensors state dict for one of the lab's
    architectures, its arguments as JSON; once the checks ran (in the server's job runner), the model is in the
    store under the file's name."""
    import torch
    from safetensors.torch import save_file

    from robust_core.models import build_model

    torch.manual_seed(0)
    network = build_model("wrn_16_4", "fashion_mnist", depth=10, widen=1)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(tmp_path / "my-wrn.safetensors"))
    with dashboard() as url, browser_page(1280, 720) as page:
        open_page(page, url, "Models")
        main = page.locator('[data-testid="stMain"]')
        main.get_by_text("weights trained elsewhere for an architecture of the lab").click()
        wait_until_idle(page)
        main.get_by_label("Dataset").click()
        page.get_by_role("option", name="Fashion-MNIST").click()
        wait_until_idle(page)
        main.get_by_label("Architecture", exact=True).click()
        page.get_by_role("option", name="WideResNet-16-4").click()
        wait_until_idle(page)
        main.get_by_label("Architecture arguments (JSON)", exact=True).fill('{"depth": 10, "widen": 1}')
        main.get_by_label("Architecture arguments (JSON)", exact=True).press("Enter")
        wait_until_idle(page)
        main.locator('input[type="file"]').set_input_files(str(tmp_path / "my-wrn.safetensors"))
        main.get_by_test_id("stAlertContentSuccess").filter(has_text="Imported").first.wait_for(timeout=120_000)
        assert page_errors(page) == []
    [entry] = ModelStore(isolated_store).list("fashion_mnist")
    assert entry.name == "WideResNet-16-4 · my-wrn.safetensors"
    assert entry.meta["config"]["arch_kwargs"]["kwargs"] == {"arch": "wrn_16_4", "dataset": "fashion_mnist",
                                                             "depth": 10, "widen": 1}
