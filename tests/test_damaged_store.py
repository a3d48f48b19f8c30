"""A damaged store entry is set aside with its reason, never fatal and never changed: the store, and every page."""
import json
import os
import re
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from streamlit.testing.v1 import AppTest

from robust_core.store import InvalidCheckpointError, ModelStore, StoreError
from robust_core.store.checks import meta_problem
from tests.test_pages import APP, widget

# Each way an entry was found damaged, as (its folder, the reason the store must give).
DAMAGES = {
    "meta is a list": ("d000000000000001", r"meta\.json holds a JSON list"),
    "meta without config": ("d000000000000002", r"no training configuration"),
    "meta not UTF-8": ("d000000000000003", r"not UTF-8"),
    "meta truncated": ("d000000000000004", r"meta\.json ends too early \(truncated\)"),
    "weights truncated": ("d000000000000005", r"weights\.safetensors is truncated"),
}
PAGES = ["lab_pages/home.py", "lab_pages/train.py", "lab_pages/attack.py", "lab_pages/saliency.py",
         "lab_pages/classviz.py", "lab_pages/confidence.py", "lab_pages/models.py"]


def damage(valid_dir: Path) -> dict[str, Path]:
    """Beside the valid entry ``valid_dir``, one entry damaged in each way of DAMAGES: {kind: its folder}."""
    meta_bytes = (valid_dir / "meta.json").read_bytes()
    weights = (valid_dir / "weights.safetensors").read_bytes()
    renamed = json.dumps({**json.loads(meta_bytes), "name": "broken weights"}).encode()
    contents = {
        "meta is a list": (b"[]", weights),
        "meta without config": (b'{"name": "x"}', weights),
        "meta not UTF-8": (b'{"name": "caf\xe9"}', weights),  # Latin-1, not UTF-8
        "meta truncated": (meta_bytes[: len(meta_bytes) // 2], weights),
        "weights truncated": (renamed, weights[: len(weights) // 2]),
    }
    folders = {}
    for kind, (meta, weights_bytes) in contents.items():
        folder = valid_dir.parent / DAMAGES[kind][0]
        folder.mkdir()
        (folder / "meta.json").write_bytes(meta)
        (folder / "weights.safetensors").write_bytes(weights_bytes)
        folders[kind] = folder
    return folders


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def damaged_store(isolated_store, tiny_result):
    """(store, the valid entry, {kind: damaged folder})."""
    store = ModelStore(isolated_store)
    valid = store.save(tiny_result, name="first")
    return store, valid, damage(valid.path)


# ---- the library -----------------------------------------------------------------------------------------------------
def test_the_store_lists_the_valid_model_and_sets_each_damaged_entry_aside_unchanged(damaged_store):
    store, valid, folders = damaged_store
    before = snapshot(store.root)
    for fresh in (store, ModelStore(store.root)):  # checked once, then from memory; and in a new process
        assert [e.model_id for e in fresh.list()] == [valid.model_id]
        assert [e.model_id for e in fresh.list("mnist")] == [valid.model_id]
        damaged = {d.folder: d for d in fresh.damaged()}
        assert sorted(damaged) == sorted(folder for folder, _ in DAMAGES.values())
        for kind, (folder, reason) in DAMAGES.items():
            entry = damaged[folder]
            assert entry.dataset == "mnist" and entry.path == folders[kind], kind
            assert re.search(reason, entry.reason), (kind, entry.reason)
            assert str(store.root) not in entry.reason  # visitors read reasons: no paths
        assert damaged[DAMAGES["meta without config"][0]].name == "x"
        assert damaged[DAMAGES["weights truncated"][0]].name == "broken weights"
        assert fresh.damaged("fashion_mnist") == []
    assert snapshot(store.root) == before  # nothing saved is changed or lost


def test_a_damaged_entry_is_not_in_the_store_and_says_why_when_asked_for(damaged_store):
    store, valid, _ = damaged_store
    for kind, (folder, reason) in DAMAGES.items():
        assert folder not in store, kind
        for ask in (store.get, store.load, store.export_bytes):
            with pytest.raises(InvalidCheckpointError, match=f"mnist/{folder} is damaged: .*{reason}"):
                ask(folder)
    with pytest.raises(KeyError):
        store.get("0" * 16)
    assert store.get(valid.model_id).name == "first" and valid.model_id in store
    assert store.resolve(valid.model_id[:6]) == valid.model_id
    with pytest.raises(ValueError, match="no stored model"):
        store.resolve("d0000")


def test_a_damaged_entry_is_never_written_over_and_its_configuration_not_trained_again(store, tiny_result, monkeypatch,
                                                                                         tmp_path):
    from robust_core.store import training as store_training

    other = ModelStore(tmp_path / "other")
    export = other.export_bytes(other.save(tiny_result).model_id)
    entry = store.save(tiny_result, name="first")
    meta = (entry.path / "meta.json").read_bytes()
    (entry.path / "meta.json").write_bytes(meta[:40])
    before = snapshot(store.root)

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained although the save would be refused")

    monkeypatch.setattr(store_training, "train_model", must_not_train)
    with pytest.raises(InvalidCheckpointError, match="damaged entry for this configuration.*Models page"):
        store.train_or_load(tiny_result.config)
    from types import SimpleNamespace

    ctx = SimpleNamespace(job=SimpleNamespace(details={}, owners=[]), progress=lambda _: None, check=lambda: None)
    with pytest.raises(InvalidCheckpointError, match="damaged entry for this configuration"):
        store.training_job(tiny_result.config)(ctx)  # the server's job runner: refused before any training
    with pytest.raises(InvalidCheckpointError, match="damaged entry for this model.*Models page"):
        store.save(tiny_result)
    with pytest.raises(InvalidCheckpointError, match="damaged entry"):
        store.import_bytes(export)
    assert snapshot(store.root) == before
    (entry.path / "meta.json").write_bytes(meta)  # repaired by hand: a model again
    assert [e.model_id for e in store.list()] == [entry.model_id] and store.damaged() == []


def test_weights_that_pass_the_header_check_but_do_not_load_are_set_aside_until_repaired(store, tiny_result):
    entry = store.save(tiny_result, name="first")
    weights_path = entry.path / "weights.safetensors"
    good = weights_path.read_bytes()
    state = load_safetensors(good)
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    weights_path.write_bytes(save_safetensors(state))  # same header, same size: only loading tells
    fresh = ModelStore(store.root)
    assert [e.model_id for e in fresh.list()] == [entry.model_id]
    with pytest.raises(InvalidCheckpointError, match=f"“first” \\(mnist/{entry.model_id}\\) cannot be used.*NaN"):
        fresh.load(entry.model_id)
    assert fresh.list() == [] and [d.folder for d in fresh.damaged()] == [entry.model_id]
    assert "NaN" in fresh.damaged()[0].reason and entry.model_id not in fresh
    weights_path.write_bytes(good)
    assert [e.model_id for e in fresh.list()] == [entry.model_id]
    assert torch.isfinite(next(iter(fresh.load(entry.model_id).state_dict().values()))).all()


def test_remove_damaged_deletes_a_damaged_entry_only(damaged_store):
    store, valid, folders = damaged_store
    folder = DAMAGES["meta is a list"][0]
    store.remove_damaged("mnist", folder)
    assert not folders["meta is a list"].exists()
    assert len(store.damaged()) == len(DAMAGES) - 1 and [e.model_id for e in store.list()] == [valid.model_id]
    not_damaged = [("mnist", valid.model_id), ("mnist", folder), ("mnist", ".."),
                   ("fashion_mnist", DAMAGES["meta truncated"][0])]
    for dataset, name in not_damaged:
        with pytest.raises(StoreError, match="not a damaged entry"):
            store.remove_damaged(dataset, name)
    assert valid.model_id in store and folders["meta truncated"].exists()
    assert not [p for p in (store.root / "mnist").iterdir() if p.name.startswith(".")]  # no trash left


def test_leftovers_of_killed_saves_are_removed_once_stale_but_a_save_in_progress_stays(store, tiny_result):
    entry = store.save(tiny_result)
    parent = entry.path.parent
    old = time.time() - 3600
    stale_tmp, stale_trash, fresh_tmp = parent / ".tmp-abc-1", parent / ".deleted-abc-2", parent / ".tmp-def-3"
    for folder in (stale_tmp, stale_trash, fresh_tmp):
        folder.mkdir()
        (folder / "weights.safetensors").write_bytes(b"partial")
    stale_meta_edit = entry.path / ".meta.json.x1"
    stale_meta_edit.write_text("{")
    for path in (stale_tmp / "weights.safetensors", stale_tmp, stale_trash / "weights.safetensors", stale_trash,
                 stale_meta_edit):
        os.utime(path, (old, old))
    model_files = snapshot(entry.path)
    fresh = ModelStore(store.root)  # opening the store removes them
    assert not stale_tmp.exists() and not stale_trash.exists() and not stale_meta_edit.exists()
    assert fresh_tmp.exists() and (fresh_tmp / "weights.safetensors").read_bytes() == b"partial"
    assert snapshot(entry.path) == {k: v for k, v in model_files.items() if not k.startswith(".meta.json.")}
    # A long-running server: listing sweeps again now and then.
    os.utime(fresh_tmp / "weights.safetensors", (old, old))
    os.utime(fresh_tmp, (old, old))
    fresh._swept -= 10**6
    assert [e.model_id for e in fresh.list()] == [entry.model_id]
    assert not fresh_tmp.exists()


@pytest.mark.parametrize("meta, reason", [
    ({"config": {"dataset": "mnist"}, "metrics": []}, "'metrics' is a JSON list"),
    ({"config": {"dataset": "mnist"}, "metrics": {"test_acc": "high"}}, "metric 'test_acc' is a string"),
    ({"config": {"dataset": "mnist"}, "metrics": {}, "name": 3}, "'name' is a number"),
    ({"config": {"dataset": "mnist"}, "metrics": {}, "history": {"epoch": [1], "val_loss": []}}, "differ in length"),
    ({"config": {"dataset": "mnist"}, "metrics": {}, "history": {"batches": [[0.1, 2]]}}, "triples"),
    ({"config": {"dataset": "mnist"}, "metrics": {}, "parameters": "many"}, "'parameters' is a string"),
    ({"config": {"dataset": "mnist", "arch_kwargs": []}, "metrics": {}}, "arch_kwargs is a JSON list"),
    ({"config": {"dataset": "mnist", "epochs": "2"}, "metrics": {}}, "configuration is invalid: .*epochs"),
    ({"config": {"dataset": "mnist", "colour": 1}, "metrics": {}}, "configuration is invalid: Unknown"),
    ({"config": {"dataset": "fashion_mnist"}, "metrics": {}}, "model of 'fashion_mnist' in the folder of dataset"),
    ({"config": {"dataset": "mnist"}}, "no metrics"),
    ("text", "holds a string"),
])
def test_metadata_of_the_wrong_shape_is_named(meta, reason):
    problem = meta_problem(meta, dataset="mnist")
    assert problem is not None and re.search(reason, problem), problem


def test_the_shipped_models_metadata_passes_the_checks():
    from robust_core.shipped import SHIPPED_DIR
    from robust_core.store import EXPORT_META_KEY

    files = sorted(SHIPPED_DIR.glob("*.safetensors"))
    assert files
    for path in files:
        raw = path.read_bytes()
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
        meta = json.loads(header["__metadata__"][EXPORT_META_KEY])  # the whole metadata, curves included
        assert meta_problem(meta, dataset=meta["config"]["dataset"]) is None, path.name
        assert meta_problem({**meta, "owner": "abc", "imported": "2025"}, dataset=meta["config"]["dataset"]) is None


# ---- the pages -------------------------------------------------------------------------------------------------------
def open_page(page: str, *, token: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if token:
        at.session_state["_owner_token"] = token
    at.run()
    at.switch_page(page).run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return at


def test_every_page_renders_beside_damaged_entries_and_names_them(damaged_store):
    store, _, folders = damaged_store
    before = snapshot(store.root)
    for page in PAGES:
        at = open_page(page)
        [warning] = [w.value for w in at.warning if "set aside" in w.value]
        for folder, _ in DAMAGES.values():
            assert folder in warning, (page, warning)
        assert "“x”" in warning and "broken weights" in warning  # the names their metadata gives
        assert str(folders["meta truncated"]) in warning.replace("\\", "")  # outside lecture mode: the folder
        assert not any("No trained" in i.value for i in at.info), page  # the valid model is still offered
    assert snapshot(store.root) == before


def test_lecture_mode_names_damaged_entries_without_paths_and_only_the_lecturer_removes(damaged_store, monkeypatch):
    store, _, _ = damaged_store
    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    monkeypatch.setenv("ROBUST_LECTURER_KEY", "s3cret")
    before = snapshot(store.root)
    at = open_page("lab_pages/models.py", token="a" * 32)
    [warning] = [w.value for w in at.warning if "set aside" in w.value]
    assert all(folder in warning for folder, _ in DAMAGES.values()) and "lecturer" in warning
    # Listed with their reasons on the Models page, as plain text; no path in either.
    listed = [t.value for t in at.text]
    assert not any(str(store.root) in text.replace("\\", "") for text in [warning, *listed])
    assert any(DAMAGES["meta truncated"][0] in t and "truncated" in t for t in listed), listed
    assert all(p.proto.popover.disabled for p in at.get("popover")) and len(at.get("popover")) == len(DAMAGES)
    # A forged click on a visitor's page removes nothing.
    [remove] = [b for b in at.button if b.key == f"remove_damaged:mnist/{DAMAGES['meta is a list'][0]}"]
    remove.click().run()
    assert not at.exception and any("only the lecturer" in e.value for e in at.error)
    assert snapshot(store.root) == before


def test_the_models_page_removes_a_damaged_entry_on_request(damaged_store):
    _, valid, folders = damaged_store
    at = open_page("lab_pages/models.py")
    folder = DAMAGES["weights truncated"][0]
    [remove] = [b for b in at.button if b.key == f"remove_damaged:mnist/{folder}"]
    remove.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not folders["weights truncated"].exists()
    assert all(folders[k].exists() for k in DAMAGES if k != "weights truncated")
    assert any("Removed the damaged entry" in s.value for s in at.success)
    [warning] = [w.value for w in at.warning if "set aside" in w.value]
    assert folder not in warning and f"{len(DAMAGES) - 1} damaged entries" in warning
    assert widget(at.selectbox, "Model").value == valid.model_id


def test_the_attack_page_names_a_model_whose_weights_do_not_load_instead_of_failing(store, tiny_result):
    import streamlit as st

    st.cache_data.clear()  # the page caches results by model id: the valid twin of another test must not answer
    entry = store.save(tiny_result, name="nan model")
    weights_path = entry.path / "weights.safetensors"
    state = load_safetensors(weights_path.read_bytes())
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    weights_path.write_bytes(save_safetensors(state))
    before = snapshot(store.root)
    at = open_page("lab_pages/attack.py")
    errors = [e.value for e in at.error]
    assert any("nan model" in e and entry.model_id in e and "cannot be used" in e for e in errors), errors
    again = open_page("lab_pages/attack.py")  # set aside from now on: the page says so, and has no network left
    [warning] = [w.value for w in again.warning if "set aside" in w.value]
    assert entry.model_id in warning and "do not load" in warning
    assert any("Train page" in i.value for i in again.info)
    assert snapshot(store.root) == before


def test_a_damaged_entry_in_place_of_a_shipped_model_is_reported_and_kept(store, tmp_path):
    import shutil

    from robust_core.shipped import SHIPPED_DIR, install_shipped, shipped_models

    shipped_dir = tmp_path / "shipped"
    shipped_dir.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(SHIPPED_DIR / f"mnist_cnn_standard{suffix}", shipped_dir)
    [shipped] = shipped_models(shipped_dir)
    folder = store.root / "mnist" / shipped.model_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text('{"name": "half')
    before = snapshot(folder)
    [(_, entry, status)] = install_shipped(store, shipped_dir)
    assert entry is None and status.startswith("error") and "damaged entry" in status, status
    assert snapshot(folder) == before and [d.folder for d in store.damaged()] == [shipped.model_id]
