"""Lecture cards say what the page they open shows.

The Attack paths' numbers are placeholders filled from the shipped results the page opens on (robust_core.lectures),
so a rebuilt result changes the card with it; these tests check that every number on a card is one, that the words
around them still hold for the shipped results, and the morph card's claims against the morph the page runs."""
import json
import re
import shutil

import pytest

from robust_core.lectures import LECTURES_DIR, PLACEHOLDER, ShippedResults, lecture_paths
from robust_core.shipped import shipped_models

IDS = {s.file.stem: s.model_id for s in shipped_models()}


def _raw_summaries() -> dict[str, str]:
    import tomllib

    return {f.stem: tomllib.loads(f.read_text(encoding="utf-8"))["summary"]
            for f in sorted(LECTURES_DIR.glob("*.toml"))}


def _cards() -> dict:
    paths, errors = lecture_paths()
    assert errors == []
    return {p.name: p for p in paths}


def acc(model: str, attack: str, eps: float) -> float:
    """The shipped result's accuracy in percent as a card writes it (one decimal)."""
    return round(100 * ShippedResults().accuracy(model, attack, eps, n=1000), 1)


def test_every_number_on_an_attack_card_is_a_placeholder_filled_from_the_shipped_result_it_opens_on():
    from robust_core.evaluation import EvalKey, accuracy_at, comparison_params
    from robust_core.precomputed import precomputed_results

    shipped = {item.key: item.values() for item in precomputed_results()[0]}
    cards = _cards()
    quoted = 0
    for name, raw in _raw_summaries().items():
        # A percentage typed into a card goes stale when a model is retrained: it must be a placeholder.
        assert not re.findall(r"\d%", PLACEHOLDER.sub("", raw)), (name, raw)
        card = cards[name]
        expected = raw
        for model, attack, eps in re.findall(r"\{([a-z0-9_]+):([a-z0-9_]+)@([0-9.]+)\}", raw):
            # Recomputed here from the result file itself, under the key the page looks it up by.
            key = EvalKey(IDS[model], attack, tuple(sorted(comparison_params(attack).items())),
                          int(card.params.get("n", 1000)), 0)
            value = 100 * float(accuracy_at(shipped[key], [float(eps)])[0])
            expected = expected.replace(f"{{{model}:{attack}@{eps}}}", f"{value:.1f}", 1)
            quoted += 1
        assert card.summary == expected and "{" not in card.summary, name
    assert quoted >= 10


def test_the_attack_cards_words_hold_for_the_shipped_results():
    from robust_core.evaluation import accuracy_at, comparison_params, measured_eps_grid, single_step_masking
    from robust_core.precomputed import precomputed_results

    cards = _cards()
    # 01: the standard CNN "falls to" about nothing by 0.2, the PGD-trained one "still holds" most at 0.3.
    assert "falls to" in cards["01_eps_collapse"].summary and "still holds" in cards["01_eps_collapse"].summary
    assert acc("mnist_cnn_standard", "pgd", 0.2) < 1 and acc("mnist_cnn_pgd_at", "pgd", 0.3) > 85
    assert acc("mnist_cnn_standard", "pgd", 0.1) > acc("mnist_cnn_standard", "pgd", 0.2)
    # 02: FGSM at 0.3 "nearly as much as at 0.1", everything else at about zero, and the rule calls it catastrophic
    # overfitting on the comparison the card opens (FGSM, PGD, APGD-CE, Square).
    assert acc("mnist_cnn_fgsm_at", "fgsm", 0.1) - acc("mnist_cnn_fgsm_at", "fgsm", 0.3) < 10
    assert max(acc("mnist_cnn_fgsm_at", a, 0.3) for a in ("pgd", "apgd_ce", "square")) < 1
    params = cards["02_gradient_masking"].params
    attacks = params["cmp_attacks"].split(",")
    assert params["cmp"] == IDS["mnist_cnn_fgsm_at"] and set(attacks) == {"fgsm", "pgd", "apgd_ce", "square"}
    values = {i.key.attack: i.values() for i in precomputed_results()[0] if i.key.model_id == params["cmp"]}
    frames = [round(0.4 * k / 40, 6) for k in range(41)]
    grid = min((measured_eps_grid(comparison_params(a), frames) for a in attacks), key=len)
    assert single_step_masking({a: accuracy_at(values[a], grid).tolist() for a in attacks}, grid)
    # 06: GFA "ahead of the standard model at small ε", "far behind adversarial training at ε = 0.3".
    assert acc("mnist_cnn_gfa_deep", "pgd", 0.1) > acc("mnist_cnn_standard", "pgd", 0.1) + 5
    assert acc("mnist_cnn_pgd_at", "pgd", 0.3) - acc("mnist_cnn_gfa_deep", "pgd", 0.3) > 50


def test_each_card_opens_on_the_models_it_names():
    named = {"the standard CNN": "mnist_cnn_standard", "the PGD-trained": "mnist_cnn_pgd_at",
             "trained against single-step FGSM": "mnist_cnn_fgsm_at",
             "Gradient-Feature Alignment": "mnist_cnn_gfa_deep"}
    for card in _cards().values():
        models = set(card.params.get("models", "").split(",")) | {card.params.get("cmp")}
        for words, stem in named.items():
            if words in card.summary:
                assert IDS[stem] in models, (card.name, words)


def test_the_morph_card_says_what_the_models_and_the_knn_read_in_the_pages_morph(mnist, isolated_store):
    """The morph the Class Visualization page runs for this path (its default recipe and settings), and what the
    page's "read by the others" line reads in each result (about a second on one core)."""
    import torch

    from robust_core.classviz import RECIPES
    from robust_core.classviz.compare import compare_morphs
    from robust_core.store import ModelStore

    card = _cards()["03_morph_4_to_9"]
    p = card.params
    assert p["start"] == "test" and int(mnist.test_y[int(p["index"])]) == 4 and p["target"] == "9"
    store = ModelStore(isolated_store)
    by_id = {s.model_id: s for s in shipped_models()}
    models = {}
    for model_id in p["models"].split(","):
        store.import_bytes(by_id[model_id].file.read_bytes())
        models[by_id[model_id].file.stem] = store.load(model_id)
    assert list(models) == ["mnist_cnn_standard", "mnist_cnn_pgd_at"]
    recipe = RECIPES["smoothed"]  # the page's default ascent, with its other controls at their defaults
    settings = dict(start="image", image=mnist.test_x[int(p["index"])], l2=0.0, tv=0.0, jitter_pixels=0,
                    blur_every=0, budget=None, threshold=0.99, seed=0, **recipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = compare_morphs(models, target=9, train_x=mnist.train_x, train_y=mnist.train_y, **settings)
    finally:
        torch.set_num_threads(threads)
    knn = "k-NN (k=3)"
    standard, robust = out.results["mnist_cnn_standard"], out.results["mnist_cnn_pgd_at"]
    # "The standard CNN reads a 9 ... that the PGD-trained CNN still reads as a 4, while the k-NN already sees a 9
    # (2 of 3 neighbours)."
    assert float(standard.final_probabilities[0, 9]) >= 0.99
    assert out.cross["mnist_cnn_standard"]["mnist_cnn_pgd_at"][0] == 4
    assert out.cross["mnist_cnn_standard"][knn] == (9, pytest.approx(2 / 3))
    # "The PGD-trained CNN draws a bolder 9 that the standard CNN and the k-NN both read as a 9."
    assert float(robust.final_probabilities[0, 9]) >= 0.99
    assert {who: c for who, (c, _) in out.cross["mnist_cnn_pgd_at"].items()} == {"mnist_cnn_standard": 9, knn: 9}
    # "a faint change (L∞ 0.26)", "a bolder 9 (L∞ 0.51)": the change's largest pixel, as the page writes it (two
    # decimals); one sign step more or less (0.01) is within the card's claim.
    changes = [float((r.final[0, 0] - r.frames[0, 0, 0]).abs().max()) for r in (standard, robust)]
    quoted = [float(v) for v in re.findall(r"L∞ (\d\.\d\d)", card.summary)]
    assert len(quoted) == 2 and quoted[0] < quoted[1]
    for measured, said in zip(changes, quoted):
        assert abs(measured - said) <= recipe["lr"] + 0.005, (changes, quoted)


def test_a_card_number_follows_its_shipped_result_and_a_missing_or_stale_one_is_reported(tmp_path):
    from robust_core.precomputed import PRECOMPUTED_DIR

    lectures, evaluations = tmp_path / "lectures", tmp_path / "evaluations"
    lectures.mkdir()
    shutil.copytree(PRECOMPUTED_DIR, evaluations)
    card = ('title = "T"\npage = "attack"\nsummary = "FGSM leaves {mnist_cnn_fgsm_at:fgsm@0.3}% at ε = 0.3"\n'
            '[params]\nn = "1000"\n')
    (lectures / "good.toml").write_text(card, encoding="utf-8")
    bad = {"model": "{mnist_cnn_nothing:fgsm@0.3}", "missing": "{mnist_cnn_standard:apgd_ce@0.3}",
           "grid": "{mnist_cnn_standard:pgd@0.305}", "form": "{about 94}", "images": "{mnist_cnn_standard:pgd@0.3}"}
    for name, placeholder in bad.items():
        text = card.replace("{mnist_cnn_fgsm_at:fgsm@0.3}", placeholder)
        (lectures / f"{name}.toml").write_text(text.replace('n = "1000"', 'n = "500"') if name == "images" else text,
                                               encoding="utf-8")
    results = ShippedResults(evaluations_dir=evaluations)
    paths, errors = lecture_paths(lectures, results=results)
    assert [p.name for p in paths] == ["good"] and paths[0].summary == "FGSM leaves 88.7% at ε = 0.3"
    text = "\n".join(errors)
    assert len(errors) == 5 and "no shipped model 'mnist_cnn_nothing'" in text and "no shipped apgd_ce result" in text
    assert "ε = 0.305 is not an ε" in text and "{about 94} is not a placeholder" in text and "on 500 images" in text
    # The FGSM-trained CNN's FGSM result rebuilt (here: every image broken at eps 0.25): the card's number follows.
    [fgsm_file] = [f for f in evaluations.glob("*.json")
                   if (json.loads(f.read_text())["model_id"], json.loads(f.read_text())["attack"])
                   == (IDS["mnist_cnn_fgsm_at"], "fgsm")]
    payload = json.loads(fgsm_file.read_text())
    fgsm_file.write_text(json.dumps({**payload, "min_eps": [0.25] * payload["n_examples"]}))
    assert lecture_paths(lectures, results=results)[0][0].summary == "FGSM leaves 0.0% at ε = 0.3"
    # Made for other weights (the model retrained, its results not rebuilt): an error, not a stale number.
    fgsm_file.write_text(json.dumps({**payload, "weights_sha256": "0" * 64}))
    paths, errors = lecture_paths(lectures, results=results)
    assert "good" not in [p.name for p in paths] and any("made for other weights" in e for e in errors)
