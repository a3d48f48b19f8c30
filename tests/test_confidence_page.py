"""The Confidence page through Streamlit's AppTest: fitting the baselines, and what adversarial rows measured."""
import dataclasses
import json

import pytest

from robust_core.confidence import adversarial_inputs
from robust_core.store import ModelStore
from robust_core.training import TrainConfig
from tests.test_pages import finish_jobs, run_app, widget

FIT_BUTTON = "Fit the k-NN and logistic-regression baselines"


@pytest.fixture
def small_train_mnist(mnist, monkeypatch):
    """The pages see MNIST with 2,000 training images, so the page's own baseline fit takes a second
    (the full split takes about half a minute); validation and test splits are whole."""
    import lab_pages._resources

    small = dataclasses.replace(mnist, train_x=mnist.train_x[:2000], train_y=mnist.train_y[:2000])
    monkeypatch.setattr(lab_pages._resources, "_dataset", lambda name, root: small)
    return small


@pytest.fixture
def cnn_entry(isolated_store, tiny_result):
    return ModelStore(isolated_store).save(tiny_result, name="first")


def test_fitting_the_baselines_selects_them_with_readable_names_and_fills_the_table(cnn_entry, small_train_mnist,
                                                                                   isolated_store):
    at = run_app("lab_pages/confidence.py")
    widget(at.selectbox, "Images").select(500).run()
    assert widget(at.multiselect, "Models").value == [cnn_entry.model_id]
    widget(at.button, FIT_BUTTON).click().run()
    assert not at.exception, [e.value for e in at.exception]
    finish_jobs(at)  # the fits run in the server's job runner (a browser reruns from the job status fragment)
    at.run()  # the page adds the fitted baselines to the selection, then reruns

    by_arch = {e.meta["config"]["arch"]: e for e in ModelStore(isolated_store).list("mnist")}
    # The new baselines join the selection (a keyed multiselect ignores a changed default), with readable names ...
    models = widget(at.multiselect, "Models")
    assert set(models.value) == {cnn_entry.model_id, by_arch["knn"].model_id, by_arch["logreg"].model_id}
    assert by_arch["knn"].name == "k-NN (k=3) · MNIST" and by_arch["logreg"].name == "Logistic regression · MNIST"
    assert not [b for b in at.button if b.label.startswith("Fit the")]  # nothing left to fit
    # ... and their rows are filled: every accuracy, a temperature wherever there are logits.
    table = at.dataframe[0].value.set_index("Model")
    assert set(table.index) == {"first", "k-NN (k=3) · MNIST", "Logistic regression · MNIST"}
    assert table["Accuracy"].notna().all() and (table["Accuracy"] > 0.5).all(), table.to_dict()
    assert table.loc["Logistic regression · MNIST", "Temperature (val)"] > 0
    assert table.loc["first", "Temperature (val)"] > 0
    # The k-NN has no logits: its temperature cells are empty and read "—", not "None" (Streamlit's default).
    assert table.loc["k-NN (k=3) · MNIST", ["Temperature (val)", "ECE after T", "NLL after T"]].isna().all()
    assert at.dataframe[0].proto.placeholder == "—"


def test_adversarial_mode_attacks_every_model_and_labels_what_each_row_measured(cnn_entry, small_train_mnist,
                                                                                isolated_store, mnist):
    store = ModelStore(isolated_store)
    knn, knn_entry, _ = store.train_or_load(TrainConfig(arch="knn", train_subset=2000), data=mnist, name="knn")
    logreg, logreg_entry, _ = store.train_or_load(TrainConfig(arch="logreg", arch_kwargs={"max_iter": 30},
                                                              train_subset=2000),
                                                  data=mnist, name="logreg")
    at = run_app("lab_pages/confidence.py")
    widget(at.selectbox, "Images").select(500)
    at.session_state["confidence_models_mnist"] = [cnn_entry.model_id, knn_entry.model_id, logreg_entry.model_id]
    at.run()
    clean = at.dataframe[0].value.set_index("Model")
    assert set(clean["Inputs"]) == {"clean"}

    widget(at.radio, "Inputs").set_value("adversarial").run()
    widget(at.selectbox, "Attack").select("fgsm").run()
    assert not at.exception, [e.value for e in at.exception]
    attacked = at.dataframe[0].value.set_index("Model")
    # No row keeps clean inputs: each says what it measured.
    assert attacked.loc["knn", "Inputs"] == "transfer from first"
    assert attacked.loc["first", "Inputs"] == "white-box" and attacked.loc["logreg", "Inputs"] == "white-box"
    assert set(attacked["Attack"]) == {"FGSM ε=0.10"}
    # The header says it too.
    assert json.loads(at.dataframe[0].proto.columns)["Inputs"]["label"] == "Inputs (FGSM ε=0.10)"
    assert widget(at.selectbox, "k-NN attacked with images crafted on").value == cnn_entry.model_id
    # And the numbers are those of these inputs.
    x, y = mnist.test_x[:500], mnist.test_y[:500]
    cnn = store.load(cnn_entry.model_id)
    from_cnn = adversarial_inputs(cnn, x, y, attack="fgsm", eps=0.1)
    on_logreg = adversarial_inputs(logreg, x, y, attack="fgsm", eps=0.1)
    expected = {"first": cnn.eval()(from_cnn).argmax(1), "knn": knn.predict_proba(from_cnn).argmax(1),
                "logreg": logreg.predict_proba(on_logreg).argmax(1)}
    for name, pred in expected.items():
        assert attacked.loc[name, "Accuracy"] == pytest.approx(float((pred == y).float().mean())), name
        assert attacked.loc[name, "Accuracy"] < clean.loc[name, "Accuracy"], name
    assert len(at.get("plotly_chart")) == 4

    # Transferring from the logistic regression instead relabels the k-NN's row and changes its numbers.
    widget(at.selectbox, "k-NN attacked with images crafted on").select(logreg_entry.model_id).run()
    assert not at.exception, [e.value for e in at.exception]
    again = at.dataframe[0].value.set_index("Model")
    assert again.loc["knn", "Inputs"] == "transfer from logreg"
    pred = knn.predict_proba(on_logreg).argmax(1)
    assert again.loc["knn", "Accuracy"] == pytest.approx(float((pred == y).float().mean()))


def test_adversarial_gallery_shows_the_attacked_images(cnn_entry, small_train_mnist):
    at = run_app("lab_pages/confidence.py")
    widget(at.selectbox, "Images").select(500).run()
    clean_images = [img.value for img in at.image]
    assert len(clean_images) == 16  # two galleries of eight
    widget(at.radio, "Inputs").set_value("adversarial").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("The gallery shows these attacked images" in c.value for c in at.caption)
    assert [img.value for img in at.image] != clean_images
