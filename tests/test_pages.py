"""Every page through Streamlit's AppTest: renders without exception and does its job."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from robust_core.store import ModelStore
from robust_core.training import TrainConfig

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def run_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def finish_jobs(at: AppTest, timeout_s: float = 240) -> AppTest:
    """Wait for the server's job runner to run what the page queued, then rerun the page (a browser does this
    from the job status fragment, every second)."""
    import time

    from lab_pages._jobs import job_runner

    runner = job_runner()
    deadline = time.monotonic() + timeout_s
    while runner.jobs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runner.jobs(), "jobs still running"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_section(at, key: str):
    """Open the lazy expander ``key`` (lab_pages._layout.lazy_settings_box: its widgets exist only once opened), as
    a click on its header does, and rerun."""
    at.session_state[key] = True
    return at.run()


def widget(elements, label):
    matches = [e for e in elements if e.label == label]
    assert matches, f"no widget labelled {label!r}: {[e.label for e in elements]}"
    return matches[0]


def test_app_opens_on_the_home_page_with_lecture_paths_and_the_shared_sidebar():
    from robust_core.lectures import lecture_paths

    at = run_app()
    assert at.title[0].value == "Robustness Lab"
    paths, errors = lecture_paths()
    assert len(paths) >= 5 and errors == []
    links = [link for link in at.get("page_link") if not link.proto.page.endswith("challenges")]
    assert len(links) == len(paths)  # one card per path, and the link to the live challenges
    assert len(at.get("page_link")) == len(paths) + 1
    # Each card opens its page with its parameters in the query string.
    first = links[0].proto
    assert first.page.endswith("attack") and "models=" in first.query_string and "attack=pgd" in first.query_string
    assert widget(at.sidebar.selectbox, "Dataset").value == "mnist"
    assert any("Device:" in c.value and "CPU" in c.value for c in at.sidebar.caption)
    assert any("No trained model" in c.value for c in at.sidebar.caption)


def test_train_page_trains_a_tiny_model_end_to_end_then_loads_it(isolated_store):
    at = run_app("lab_pages/train.py")
    widget(at.selectbox, "Training images").select(1000)
    widget(at.number_input, "Epochs").set_value(1)
    widget(at.text_input, "Name in the store (optional)").input("apptest cnn")
    widget(at.button, "Train").click().run()
    assert not at.exception, [e.value for e in at.exception]
    # The training runs in the server's job runner: the page shows its progress, then (a browser reruns it from the
    # progress fragment) the outcome. Train is disabled meanwhile: one training per visitor at a time.
    assert (any(p.proto.text.startswith(("Starting", "Epoch", "Waiting")) for p in at.get("progress"))
            or ModelStore(isolated_store).list())
    finish_jobs(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Trained **apptest cnn**" in s.value for s in at.success), [s.value for s in at.success]
    [entry] = ModelStore(isolated_store).list()
    assert entry.name == "apptest cnn" and entry.meta["config"]["train_subset"] == 1000
    # The same configuration again: loaded, not trained, and the sidebar now offers the model.
    at.run()
    assert any("already in the store" in i.value for i in at.info)
    widget(at.button, "Load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("not retrained" in s.value for s in at.success)
    assert at.session_state["select_model_id"] == entry.model_id  # the sidebar selects it on its next run
    # AppTest re-runs only the page script after the first run (a browser re-runs app.py, sidebar
    # included), so the sidebar is checked in a new session.
    fresh = run_app()
    model_select = widget(fresh.sidebar.selectbox, "Model")
    assert model_select.value == entry.model_id and model_select.options == ["apptest cnn"]


def test_train_page_stop_withdraws_the_queued_training_and_a_failed_one_says_why(isolated_store, monkeypatch):
    import time

    from lab_pages._jobs import job_runner

    at = run_app("lab_pages/train.py")
    widget(at.selectbox, "Training images").select(10000)
    widget(at.number_input, "Epochs").set_value(3)
    widget(at.button, "Train").click().run()
    assert widget(at.button, "Train").disabled  # one training per visitor at a time
    deadline = time.monotonic() + 30
    while not job_runner().jobs()[0].details.get("last") and time.monotonic() < deadline:
        time.sleep(0.02)
    widget(at.button, "Stop").click().run()
    finish_jobs(at)
    assert any("Training stopped at epoch 1/3" in w.value and "Nothing was saved" in w.value for w in at.warning), \
        [w.value for w in at.warning]
    assert ModelStore(isolated_store).list() == []

    # A job that raises (here: a diverging loss) reports its error on the page; the store is unchanged.
    def diverging(self, config, **kwargs):
        def run(ctx):
            raise FloatingPointError("the training loss became NaN at epoch 1, batch 3. Lower the learning rate")
        return run

    monkeypatch.setattr(ModelStore, "training_job", diverging)
    widget(at.number_input, "Epochs").set_value(1)
    widget(at.button, "Train").click().run()
    finish_jobs(at)
    assert any("Training failed" in e.value and "became NaN" in e.value for e in at.error), [e.value for e in at.error]
    assert ModelStore(isolated_store).list() == []


def test_train_page_reports_missing_data_instead_of_crashing(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUST_DATA_DIR", str(tmp_path / "no-data"))
    at = run_app("lab_pages/train.py")
    widget(at.selectbox, "Training images").select(1000)
    widget(at.button, "Train").click().run()
    assert not at.exception
    assert any("MNIST is not available" in e.value and "python -m robust_core.data" in e.value for e in at.error)


def test_train_page_rejects_bad_mlp_sizes():
    at = run_app("lab_pages/train.py")
    widget(at.selectbox, "Architecture").select("mlp").run()
    widget(at.text_input, "Hidden layer sizes").input("256, lots").run()
    assert any("whole numbers" in e.value for e in at.error)


def test_models_page_with_an_empty_store():
    at = run_app("lab_pages/models.py")
    assert at.title[0].value == "Models"
    assert any("store is empty" in i.value for i in at.info)


@pytest.fixture
def stored_model(isolated_store, tiny_result):
    return ModelStore(isolated_store).save(tiny_result, name="first")


def test_models_page_lists_renames_and_deletes(stored_model, isolated_store, tiny_result):
    at = run_app("lab_pages/models.py")
    table = at.dataframe[0].value
    assert list(table["Name"]) == ["first"] and table["Parameters"][0] == 225_034
    widget(at.text_input, "New name").input("renamed")
    widget(at.button, "Rename").click().run()
    assert not at.exception
    assert ModelStore(isolated_store).get(stored_model.model_id).name == "renamed"
    assert any("Renamed" in s.value for s in at.success)
    delete = widget(at.button, "Delete")
    assert delete.disabled  # confirmation first
    at.checkbox[0].check().run()
    widget(at.button, "Delete").click().run()
    assert not at.exception
    assert ModelStore(isolated_store).list() == []
    assert any("store is empty" in i.value for i in at.info)


def test_compare_curves_of_stored_models(stored_model, isolated_store, mnist):
    from robust_core.training import train_model

    ModelStore(isolated_store).save(train_model(TrainConfig(train_subset=500, epochs=2, seed=3), data=mnist),
                                    name="second")
    at = run_app("lab_pages/train.py")
    compare = widget(at.multiselect, "Models")
    assert len(compare.value) == 2
    assert len(at.get("plotly_chart")) == 1


def test_attack_page_without_networks_points_to_training():
    at = run_app("lab_pages/attack.py")
    assert any("Train page" in i.value for i in at.info)


def test_attack_page_computes_once_then_the_slider_figure_is_served_from_cache(stored_model, isolated_store):
    at = run_app("lab_pages/attack.py")
    widget(at.selectbox, "Test images").select(100)
    widget(at.number_input, "Steps").set_value(5).run()
    compute = [b for b in at.button if b.label.startswith("Compute (")]
    assert compute, [w.value for w in at.warning]
    compute[0].click().run()
    finish_jobs(at)
    [chart] = at.get("plotly_chart")
    import json

    figure = json.loads(chart.proto.spec)
    frames = figure["frames"]
    assert len(frames) == 41  # one precomputed frame per slider position, played in the browser
    steps = figure["layout"]["sliders"][0]["steps"]
    assert steps[0]["method"] == "animate" and steps[-1]["label"] == "0.400"
    # accuracy falls along the frames (the moving marker is the first dynamic trace of each frame)
    first, last = frames[0]["data"][0]["y"][0], frames[-1]["data"][0]["y"][0]
    assert first > 0.5 and last < first
    # The gallery rows are one PNG per frame and row, swapped by the frames.
    assert [t["type"] for t in figure["data"]].count("image") == 2
    assert frames[-1]["data"][-1]["source"].startswith("data:image/png;base64,")
    table = at.dataframe[0].value
    assert table["Clean accuracy"][0] == pytest.approx(first)
    # Targeted mode: the smallest eps that makes test image 0 (a 7) read as a 3, for the selected model.
    assert widget(at.selectbox, "Read it as (true class: 7)").value == 3
    assert at.metric and 0 < float(at.metric[0].value) <= 0.5
    # Gallery by class: the figure is rebuilt for the images of that class.
    widget(at.radio, "Gallery images").set_value("By class").run()
    widget(at.selectbox, "Class").select(4).run()
    assert not at.exception, [e.value for e in at.exception]
    figure_by_class = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert figure_by_class["frames"][-1]["data"][-1]["source"] != frames[-1]["data"][-1]["source"]
    # Cached on disk beside the model: a new session does not ask to compute again.
    assert list((isolated_store / "mnist" / stored_model.model_id / "evaluations").glob("*.json"))
    again = run_app("lab_pages/attack.py")
    widget(again.selectbox, "Test images").select(100)
    widget(again.number_input, "Steps").set_value(5).run()
    assert not [b for b in again.button if b.label.startswith("Compute (")]
    assert len(again.get("plotly_chart")) == 1


def test_train_page_offers_the_method_s_own_arguments():
    at = run_app("lab_pages/train.py")
    widget(at.selectbox, "Training method").select("pgd_at").run()
    assert widget(at.number_input, "ε (L∞, pixel scale 0–1)").value == pytest.approx(0.3)
    widget(at.number_input, "Attack steps").set_value(3).run()
    assert not at.exception and not at.error
    widget(at.selectbox, "Training method").select("gfa").run()
    assert widget(at.selectbox, "Aligned layers").value == "deep"
    assert not at.exception and not at.error


def test_saliency_page_renders_the_grid_and_switches_method_and_model(stored_model, isolated_store, tiny_result):
    from robust_core.store import ModelStore
    from robust_core.training import TrainConfig, train_model

    at = run_app("lab_pages/saliency.py")
    assert not at.exception, [e.value for e in at.exception]
    [grid] = at.get("plotly_chart")
    import json

    spec = json.loads(grid.proto.spec)
    assert sum(t["type"] == "heatmap" for t in spec["data"]) >= 4 * 2 * 2  # 4 methods x (clean, adversarial) x overlay
    widget(at.multiselect, "Methods (rows)").set_value(["occlusion"]).run()
    [b for b in at.button if b.label == "Random image"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    widget(at.number_input, "Images").set_value(3)
    [b for b in at.button if b.label == "Run the checks"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 3
    assert not at.exception, [e.value for e in at.exception]
    # An MLP joins: Grad-CAM is not available for it, and the page says so instead of failing.
    mlp = train_model(TrainConfig(arch="mlp", train_subset=500, epochs=1), data=None, device="cpu")
    entry = ModelStore(isolated_store).save(mlp, name="tiny mlp")
    at = run_app("lab_pages/saliency.py")
    widget(at.multiselect, "Models (columns)").set_value([stored_model.model_id, entry.model_id])
    widget(at.multiselect, "Methods (rows)").set_value(["saliency", "grad_cam"]).run()
    assert not at.exception, [e.value for e in at.exception]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert any("no conv layer" in a.get("text", "") for a in spec["layout"]["annotations"])


def test_saliency_page_upload_mode_without_a_file_gives_a_hint(stored_model):
    """AppTest cannot drive a file uploader: the rejection of non-images is tested in test_digits."""
    at = run_app("lab_pages/saliency.py")
    widget(at.radio, "Image").set_value("Upload").run()
    assert not at.exception
    assert any("Pick a test image or upload" in i.value for i in at.info)


def test_saliency_page_explains_a_drawn_digit(stored_model):
    import numpy as np

    at = AppTest.from_file(APP, default_timeout=120)
    stroke = np.zeros((280, 280, 4), dtype=np.uint8)
    stroke[40:240, 130:150] = [255, 255, 255, 255]  # a "1", as the canvas would return it
    at.session_state["saliency_draw_image"] = stroke
    at.run()
    at.switch_page("lab_pages/saliency.py").run()
    widget(at.radio, "Image").set_value("Draw").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.get("plotly_chart") and not any("Draw a digit" in i.value for i in at.info)


def test_class_visualization_morphs_a_drawn_digit_with_all_targets_and_knn(stored_model):
    import json

    import numpy as np

    at = AppTest.from_file(APP, default_timeout=180)
    stroke = np.zeros((280, 280, 4), dtype=np.uint8)
    stroke[40:240, 130:150] = [255, 255, 255, 255]
    at.session_state["classviz_draw_image"] = stroke  # what the canvas would return
    at.run()
    at.switch_page("lab_pages/classviz.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [e for e in at.number_input if e.label == "Max steps"]  # built only once its section is opened
    open_section(at, "classviz_advanced")
    widget(at.number_input, "Max steps").set_value(20)
    widget(at.toggle, "All targets: morph the start toward each class at once (first model)").set_value(True)
    widget(at.toggle, "Compare with a gradient-free k-NN morph").set_value(True).run()
    [b for b in at.button if b.label == "Morph"][0].click().run()
    finish_jobs(at)  # the morph runs in the server's job runner (short lane); a browser reruns from its status fragment
    charts = at.get("plotly_chart")
    morph = json.loads(charts[0].proto.spec)
    assert morph["frames"] and len(morph["data"]) >= 12  # image + 10 probability curves + marker
    nine = morph["data"][1 + 9]["y"]
    assert nine[-1] > nine[0]  # the target's (9) probability rose
    assert any("k-NN" in s.value for s in at.subheader) and any("All targets" in s.value for s in at.subheader)
    downloads = {b.proto.label: b.proto for b in at.get("download_button")}
    assert {"Frames (PNG strip)", "Frames (GIF)", "Download the ten final images (PNG)"} <= set(downloads)


def test_confidence_page_compares_a_network_and_a_baseline_and_switches_split_and_model(stored_model, isolated_store,
                                                                                        mnist):
    from robust_core.training import TrainConfig

    ModelStore(isolated_store).train_or_load(TrainConfig(arch="knn", train_subset=2000), data=mnist)
    at = run_app("lab_pages/confidence.py")
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert len(table) == 2 and set(table["Inputs"]) == {"clean"}
    knn_row = table[table["Model"].str.contains("k-NN")]
    assert knn_row["Temperature (val)"].isna().all()
    widget(at.selectbox, "Split").select("validation").run()
    assert not at.exception, [e.value for e in at.exception]
    widget(at.radio, "Inputs").set_value("adversarial").run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    # The k-NN gets transferred images.
    assert set(table["Inputs"]) == {"white-box", "transfer from first"}, table.to_dict()
    # Switch the models to the k-NN alone (through the widget's state: AppTest cannot pick formatted options).
    knn_id = next(e.model_id for e in ModelStore(isolated_store).list() if e.meta["config"]["arch"] == "knn")
    at.session_state["confidence_models_mnist"] = [knn_id]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) == 1


def test_confidence_gallery_opens_an_image_on_the_saliency_and_attack_pages(stored_model):
    """The click-through: a gallery button switches page with that image (and the gallery's model) opened."""
    at = run_app("lab_pages/confidence.py")
    saliency_buttons = [b for b in at.button if b.label == "Saliency"]
    assert len(saliency_buttons) >= 8  # two galleries of up to 8 images
    first = saliency_buttons[0]
    index = int(first.key.rsplit("_", 1)[1])
    first.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Saliency"
    assert widget(at.radio, "Image").value == "Opened image"
    assert any(f"test image #{index}" in c.value and "Confidence page" in c.value for c in at.caption)
    assert widget(at.selectbox, "Model").value == stored_model.model_id  # the sidebar follows the gallery

    # Back on Confidence, the validation split: Saliency still opens it, Attack is refused (test images only).
    at.switch_page("lab_pages/confidence.py").run()
    widget(at.selectbox, "Split").select("validation").run()
    attack_buttons = [b for b in at.button if b.label == "Attack"]
    assert attack_buttons and all(b.disabled for b in attack_buttons)
    widget(at.selectbox, "Split").select("test").run()
    attack = [b for b in at.button if b.label == "Attack"][0]
    index = int(attack.key.rsplit("_", 1)[1])
    attack.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Attack"
    assert widget(at.number_input, "Test image").value == index
    assert any(f"Test image #{index} opened from the Confidence page" in i.value for i in at.info)


def test_presentation_switch_enlarges_text_and_lines_of_every_figure(stored_model):
    import json

    from robust_core.plots import projector_style, training_curves_figure

    fig = training_curves_figure({"m": stored_model.meta["history"]})
    big = projector_style(fig)
    assert big.layout.font.size == 17 and (fig.layout.font.size or 12) < 17  # the original is untouched
    assert all(b.line.width > (f.line.width or 2) for b, f in zip(big.data, fig.data) if f.type == "scatter")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["presentation"] = True
    at.run()
    at.switch_page("lab_pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["font"]["size"] == 17
