import json
import os

import pytest
import torch
from safetensors.torch import save as save_safetensors

from robust_core import store as store_mod
from robust_core.store import training as store_training
from robust_core.store import InvalidCheckpointError, ModelStore, StoreError
from robust_core.training import TrainConfig

from .conftest import state_equal

REQUIRED_META = {"format_version", "id", "name", "config", "metrics", "history", "parameters", "wall_time_s",
                 "created", "versions"}


def test_round_trip_keeps_weights_and_complete_metadata(store, tiny_result):
    entry = store.save(tiny_result, name="tiny")
    assert entry.model_id == tiny_result.config.config_hash()
    assert entry.path == store.root / "mnist" / entry.model_id
    meta = json.loads((entry.path / "meta.json").read_text())
    assert REQUIRED_META <= meta.keys()
    assert meta["versions"]["torch"] == torch.__version__ and meta["parameters"] == 225_034
    fresh = ModelStore(store.root)  # a new process: nothing in memory
    loaded = fresh.load(entry.model_id)
    assert state_equal(loaded.state_dict(), tiny_result.model.state_dict())
    assert not loaded.training
    [listed] = fresh.list()
    assert listed.name == "tiny" and listed.meta["metrics"] == tiny_result.metrics


def test_a_configuration_in_the_store_is_never_trained_again(store, mnist, monkeypatch):
    config = TrainConfig(train_subset=300, epochs=1)
    model, entry, cached = store.train_or_load(config, data=mnist, device="cpu")
    assert not cached

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained twice")

    monkeypatch.setattr(store_training, "train_model", must_not_train)
    again, entry2, cached2 = ModelStore(store.root).train_or_load(config)
    assert cached2 and entry2.model_id == entry.model_id
    assert state_equal(again.state_dict(), model.state_dict())
    assert store.load(entry.model_id) is model  # the in-memory cache serves the same object


def test_a_crash_mid_save_leaves_the_store_as_it_was(store, tiny_result, mnist, monkeypatch):
    from robust_core.training import train_model

    store.save(tiny_result)
    before = sorted(p.name for p in (store.root / "mnist").iterdir())
    other = train_model(TrainConfig(train_subset=200, epochs=1, seed=5), data=mnist, device="cpu")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="disk full"):
        store.save(other)
    assert sorted(p.name for p in (store.root / "mnist").iterdir()) == before  # no partial folder, no temp left
    assert [e.model_id for e in store.list()] == [tiny_result.config.config_hash()]


def test_a_crash_mid_rename_keeps_the_old_metadata(store, tiny_result, monkeypatch):
    entry = store.save(tiny_result, name="original")

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.rename(entry.model_id, "renamed")
    assert store.get(entry.model_id).name == "original"
    assert sorted(p.name for p in entry.path.iterdir()) == ["meta.json", "weights.safetensors"]


def test_rename_and_delete(store, tiny_result):
    entry = store.save(tiny_result)
    assert store.rename(entry.model_id, "  lecture model ").name == "lecture model"
    assert ModelStore(store.root).get(entry.model_id).name == "lecture model"
    with pytest.raises(StoreError, match="cannot be empty"):
        store.rename(entry.model_id, "   ")
    store.delete(entry.model_id)
    assert store.list() == [] and entry.model_id not in store
    assert list((store.root / "mnist").iterdir()) == []
    with pytest.raises(KeyError):
        store.delete(entry.model_id)


def test_export_then_import_into_another_store(store, tiny_result, tmp_path):
    entry = store.save(tiny_result, name="shared")
    payload = store.export_bytes(entry.model_id)
    other = ModelStore(tmp_path / "other")
    imported, was_new = other.import_bytes(payload)
    assert was_new and imported.name == "shared" and imported.meta["metrics"] == tiny_result.metrics
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(other.load(entry.model_id)(x), tiny_result.model(x))
    again, was_new = other.import_bytes(payload)
    assert not was_new and again.model_id == entry.model_id


def _listing(store):
    return sorted((e.model_id, e.name) for e in store.list())


def _bad_payloads(store, entry):
    good = store.export_bytes(entry.model_id)
    meta = store.get(entry.model_id).meta
    state = {k: v.clone() for k, v in tiny_state(store, entry).items()}
    wrong_shape = dict(state, **{"blocks.head.weight": torch.zeros(10, 64)})
    nan_weights = dict(state, **{"blocks.head.bias": torch.full((10,), float("nan"))})

    def with_meta(s, m):
        return save_safetensors(s, metadata={store_mod.EXPORT_META_KEY: json.dumps(m)})

    return {
        "empty": (b"", "empty"),
        "random bytes": (os.urandom(4096), "not a safetensors file"),
        "truncated": (good[: len(good) // 2], "not a safetensors file"),
        "foreign safetensors": (save_safetensors(state), "no Robustness Lab metadata"),
        "metadata not JSON": (save_safetensors(state, metadata={store_mod.EXPORT_META_KEY: "{oops"}),
                              "metadata is invalid"),
        "edited config": (with_meta(state, {**meta, "config": {**meta["config"], "seed": 99}}), "does not match"),
        "wrong shapes": (with_meta(wrong_shape, meta), "do not fit"),
        "NaN weights": (with_meta(nan_weights, meta), "NaN"),
    }


def tiny_state(store, entry):
    from safetensors.torch import load_file

    return load_file(entry.path / "weights.safetensors")


def test_corrupted_or_foreign_files_are_rejected_and_change_nothing(store, tiny_result, tmp_path):
    entry = store.save(tiny_result)
    target = ModelStore(tmp_path / "target")
    target.save(tiny_result.__class__(tiny_result.model, tiny_result.config.replace(seed=7), {}, {}, 0.0))
    before = _listing(target)
    for label, (payload, message) in _bad_payloads(store, entry).items():
        with pytest.raises(InvalidCheckpointError, match=message):
            target.import_bytes(payload)
        assert _listing(target) == before, label


def test_unreadable_entries_are_skipped_and_bad_weights_raise_clearly(store, tiny_result):
    entry = store.save(tiny_result)
    broken = store.root / "mnist" / "0123456789abcdef"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    (broken / "weights.safetensors").write_bytes(b"junk")
    assert [e.model_id for e in store.list()] == [entry.model_id]
    (entry.path / "weights.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(InvalidCheckpointError, match="damaged.*weights.safetensors is corrupted"):
        ModelStore(store.root).load(entry.model_id)


def test_baselines_are_stored_without_pickle(store, mnist):
    model, entry, _ = store.train_or_load(TrainConfig(arch="logreg", arch_kwargs={"max_iter": 20}, train_subset=500),
                                          data=mnist)
    reloaded = ModelStore(store.root).load(entry.model_id)
    x = mnist.test_x[:20]
    assert torch.allclose(reloaded.predict_proba(x), model.predict_proba(x), atol=1e-6)
    knn_model, knn_entry, _ = store.train_or_load(TrainConfig(arch="knn", train_subset=500), data=mnist)
    assert torch.equal(ModelStore(store.root).load(knn_entry.model_id).predict_proba(x), knn_model.predict_proba(x))


def test_store_location_comes_from_the_environment(isolated_store):
    assert ModelStore().root == isolated_store


def _variant(result, seed: int, dataset: str = "mnist"):
    """The same weights under another configuration: another model id (a store entry), no training."""
    return result.__class__(result.model, result.config.replace(seed=seed, dataset=dataset), {}, {}, 0.0)


def test_names_are_unique_within_a_dataset(store, tiny_result):
    first = store.save(tiny_result, name="CNN · standard")
    second = store.save(_variant(tiny_result, 1), name="mine")
    # Another model's name, whatever the case and spacing: refused, naming the model that has it.
    for taken in ("CNN · standard", "  cnn ·  STANDARD "):
        with pytest.raises(StoreError, match=f"already.*{first.model_id}"):
            store.rename(second.model_id, taken)
    assert store.get(second.model_id).name == "mine"
    # Its own name (another case) is fine, and so is a name used in another dataset only.
    assert store.rename(first.model_id, "CNN · Standard").name == "CNN · Standard"
    fashion = store.save(_variant(tiny_result, 1, "fashion_mnist"), name="Fashion CNN")
    assert store.rename(fashion.model_id, "cnn · standard").name == "cnn · standard"


def test_trained_or_imported_models_get_a_free_name(store, tiny_result, tmp_path):
    first = store.save(tiny_result, name="lecture")
    second = store.save(_variant(tiny_result, 1), name="Lecture ")
    third = store.save(_variant(tiny_result, 2), name="lecture")
    assert (second.name, third.name) == ("Lecture (2)", "lecture (3)")
    assert store.get(third.model_id).name == "lecture (3)"
    # A default name cannot collide with another default (it holds the id), but it can with a
    # name a user typed: the same rule applies.
    fourth = _variant(tiny_result, 4)
    taken = store_mod.default_name(fourth.config, fourth.config.config_hash())
    store.rename(first.model_id, taken)
    assert store.save(fourth).name == f"{taken} (2)"
    # An import whose name is taken in the target store is renamed, not duplicated.
    other = ModelStore(tmp_path / "other")
    other.save(_variant(tiny_result, 5), name="lecture (3)")
    imported, was_new = other.import_bytes(store.export_bytes(third.model_id))
    assert was_new and imported.name == "lecture (3) (2)"
    assert sorted(e.name for e in other.list()) == ["lecture (3)", "lecture (3) (2)"]


def test_display_names_add_the_id_only_where_names_collide(store, tiny_result):
    from robust_core.store import StoredModel, display_names

    a = store.save(tiny_result, name="CNN · standard")
    b = store.save(_variant(tiny_result, 1), name="other")
    # A store written before names were unique (or edited by hand) can hold duplicates.
    meta = {**b.meta, "name": "cnn · standard "}
    (b.path / "meta.json").write_text(json.dumps(meta))
    entries = store.list()
    labels = display_names(entries)
    assert labels[a.model_id] == f"CNN · standard [{a.model_id[:8]}]"
    assert labels[b.model_id] == f"cnn · standard [{b.model_id[:8]}]"
    assert len(set(labels.values())) == 2
    store.rename(b.model_id, "other")
    assert display_names(store.list()) == {a.model_id: "CNN · standard", b.model_id: "other"}
    # Ids that share their first 8 digits get longer prefixes: labels stay distinct.
    twins = [StoredModel(i, store.root, {"name": "x"}) for i in ("0123456789abcdef", "0123456789abcdee")]
    assert display_names(twins) == {"0123456789abcdef": "x [0123456789abcdef]",
                                    "0123456789abcdee": "x [0123456789abcdee]"}
    assert display_names([]) == {}


def test_default_names_are_readable(store, tiny_result):
    """A baseline fitted without a name gets a readable one, not "mnist · knn · standard · 845080"."""
    from robust_core.store import default_name
    from robust_core.training import TrainConfig

    knn = TrainConfig(arch="knn", train_subset=2000)
    assert default_name(knn, knn.config_hash()) == "k-NN (k=3) · MNIST"
    assert (default_name(TrainConfig(arch="logreg", dataset="fashion_mnist"), "x" * 16)
            == "Logistic regression · Fashion-MNIST")
    entry = store.save(tiny_result)
    assert entry.name == f"Seed CNN · Standard (cross-entropy) · {entry.model_id[:6]}"


def test_a_reused_listing_sees_this_process_changes_and_other_processes_additions_at_once(tmp_path, tiny_result):
    """The dashboard's store reuses a listing for a second (ModelStore.reuse_listing_s): a save, a rename or a delete
    made here or by another process is listed at once all the same."""
    store = ModelStore(tmp_path)
    store.reuse_listing_s = 60.0  # far longer than the test: whatever is seen below is not the clock's doing
    assert store.list() == []
    saved = store.save(tiny_result, name="first")
    assert [e.name for e in store.list()] == ["first"]
    store.rename(saved.model_id, "renamed")
    assert [e.name for e in store.list()] == ["renamed"]
    other = ModelStore(tmp_path)  # another replica: its own process's store object
    other.rename(saved.model_id, "renamed elsewhere")
    assert [e.name for e in store.list()] == ["renamed elsewhere"]
    other.delete(saved.model_id)
    assert store.list() == []  # the dataset folder's mtime changed
    other.save(tiny_result, name="again")
    assert [e.name for e in store.list()] == ["again"]
    store.delete(store.list()[0].model_id)
    assert store.list() == [] and store.damaged() == []
