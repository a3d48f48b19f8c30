"""Shipped evaluation results: installed only for the very model and key they were made for."""
import json

import torch

from robust_core.evaluation import EvalKey, EvaluationCache
from robust_core.precomputed import (
    SHIPPED_PARAMS,
    build,
    install_precomputed,
    precomputed_results,
    weights_digest,
)


def test_build_writes_results_the_attack_page_finds_and_install_checks_weights_and_key(store, tmp_path, mnist):
    from robust_core.shipped import install_shipped

    install_shipped(store)
    standard = next(e for e in store.list("mnist") if e.meta["config"]["method"] == "standard")
    out = tmp_path / "evaluations"
    lines = []
    build(store, directory=out, n_images=8, models=[standard.model_id], on_result=lines.append)
    assert [line.split()[0] for line in lines] == ["written", "written"]  # PGD-40 and FGSM
    items, errors = precomputed_results(out)
    assert errors == [] and {i.payload["attack"] for i in items} == {"pgd", "fgsm"}
    # The page's key for PGD-40 on 8 images: exactly what was written.
    key = EvalKey(standard.model_id, "pgd", tuple(sorted(SHIPPED_PARAMS["pgd"].items())), 8, 0)
    assert (out / f"{key.digest()}.json").is_file()
    # A second build computes nothing again.
    again = []
    build(store, directory=out, n_images=8, models=[standard.model_id], on_result=again.append)
    assert [line.split()[0] for line in again] == ["present", "present"]

    # Into a fresh store: installed once, then present; the values are the ones written.
    from robust_core.store import ModelStore

    fresh = ModelStore(tmp_path / "fresh")
    install_shipped(fresh)
    report = dict(install_precomputed(fresh, directory=out))
    assert set(report.values()) == {"installed"}
    cached = EvaluationCache(fresh).get(key)
    written = json.loads((out / f"{key.digest()}.json").read_text())
    assert cached is not None and cached.tolist() == [float(v) for v in written["min_eps"]]
    assert set(dict(install_precomputed(fresh, directory=out)).values()) == {"present"}

    # Other weights under the same id, a key of another search version, a damaged file, an absent model.
    tampered = json.loads((out / f"{key.digest()}.json").read_text())
    tampered["weights_sha256"] = "0" * 64
    (out / f"{key.digest()}.json").write_text(json.dumps(tampered))
    forged = {**written, "attack": "fgsm", "params": SHIPPED_PARAMS["fgsm"]}
    (out / "0123456789abcdef.json").write_text(json.dumps(forged))
    (out / "broken.json").write_text("{not json")
    absent = {**written, "model_id": "ffffffffffffffff"}
    (out / f"{EvalKey('ffffffffffffffff', 'pgd', key.params, 8, 0).digest()}.json").write_text(json.dumps(absent))
    other = ModelStore(tmp_path / "other")
    install_shipped(other)
    report = dict(install_precomputed(other, directory=out))
    assert report[f"{key.digest()}.json"] == "stale: the model's weights differ"
    assert report["0123456789abcdef.json"].startswith("stale: made for another version")
    assert report["broken.json"].startswith("error")
    assert any(v == "skipped: model not in the store" for v in report.values())
    assert EvaluationCache(other).get(key) is None  # nothing stale reached the cache


def test_weights_digest_changes_with_any_weight(small_cnn):
    import copy

    other = copy.deepcopy(small_cnn)
    assert weights_digest(other) == weights_digest(small_cnn)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    assert weights_digest(other) != weights_digest(small_cnn)
