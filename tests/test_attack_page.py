"""The Attack page through AppTest: curves kept while another model computes, a gallery row per model, labels."""
import json

from robust_core.store import ModelStore
from tests.test_pages import finish_jobs, run_app, widget


def open_attack_page():
    at = run_app("lab_pages/attack.py")
    widget(at.selectbox, "Test images").select(100)
    widget(at.number_input, "Steps").set_value(3).run()
    return at


def compute(at):
    [button] = [b for b in at.button if b.label.startswith("Compute (")]
    button.click().run()
    finish_jobs(at)


def figure(at):
    charts = [c for c in at.get("plotly_chart") if json.loads(c.proto.spec).get("frames")]
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def test_adding_a_model_keeps_the_computed_curves_on_screen(two_models):
    first, second = two_models
    at = open_attack_page()
    widget(at.multiselect, "Models").set_value([first]).run()
    compute(at)
    # A second model joins: the first one's curve, table and gallery stay; the new one waits for its Compute button.
    widget(at.multiselect, "Models").set_value([first, second]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [b.label for b in at.button if b.label.startswith("Compute (")] == ["Compute (100 images × 1 model(s))"]
    assert any("second" in w.value for w in at.warning)
    fig = figure(at)
    assert [t["name"] for t in fig["data"] if t.get("mode") == "lines"] == ["first"]
    assert list(at.dataframe[0].value["Model"]) == ["first"]
    compute(at)
    assert [t["name"] for t in figure(at)["data"] if t.get("mode") == "lines"] == ["first", "second"]
    assert not [b for b in at.button if b.label.startswith("Compute (")]


def test_gallery_shows_a_block_of_digits_per_model_moved_by_one_slider(two_models):
    first, second = two_models
    at = open_attack_page()
    widget(at.multiselect, "Models").set_value([first, second]).run()
    compute(at)
    assert widget(at.multiselect, "Gallery models").value == [first, second]
    fig = figure(at)
    images = [i for i, t in enumerate(fig["data"]) if t["type"] == "image"]
    assert len(images) == 4  # adversarial and perturbation rows, for each model
    assert len({fig["data"][i]["yaxis"] for i in images}) == 4  # four rows, not drawn over each other
    titles = " ".join(a["text"] for a in fig["layout"]["annotations"])
    assert "first" in titles and "second" in titles
    # Every slider frame moves every row: the same traces, each with its own image for that eps.
    for frame in fig["frames"]:
        assert set(images) <= set(frame["traces"])
        assert sum(d["type"] == "image" for d in frame["data"]) == 4
    last = fig["frames"][-1]["data"]
    first_rows = [d["source"] for d in last if d["type"] == "image"]
    assert first_rows[0] != first_rows[2]  # each model its own adversarial digits
    # One model in the gallery: its block alone, the curves of both stay.
    widget(at.multiselect, "Gallery models").set_value([second]).run()
    fig = figure(at)
    assert sum(t["type"] == "image" for t in fig["data"]) == 2
    assert [t["name"] for t in fig["data"] if t.get("mode") == "lines"] == ["first", "second"]


def test_comparison_offers_every_stored_network_not_only_the_selected_ones(two_models):
    first, second = two_models
    at = open_attack_page()
    widget(at.multiselect, "Models").set_value([first]).run()
    picker = widget(at.selectbox, "Model to compare on")
    assert set(picker.options) == {"first", "second"}
    picker.select(second).run()  # not among the models above
    assert not at.exception, [e.value for e in at.exception]
    assert widget(at.multiselect, "Models").value == [first]
    assert any(b.label.endswith("on second") for b in at.button)


def test_attack_label_names_the_norm_once_and_the_caption_cites_the_paper_once(isolated_store, tiny_result):
    ModelStore(isolated_store).save(tiny_result, name="first")
    at = run_app("lab_pages/attack.py")
    attack = widget(at.selectbox, "Attack")
    assert attack.value == "pgd"
    # The options as the selectbox shows them: each norm once, as a symbol.
    for label in ["PGD · L∞", "PGD · L2", "Square · L∞", "Carlini-Wagner · L2", "FGSM · L∞", "DeepFool · L∞"]:
        assert label in attack.options, attack.options
    assert not [o for o in attack.options if "L-inf" in o or "LINF" in o or o.count("L2") > 1]
    captions = [c.value for c in at.caption if "Madry" in c.value]
    assert len(captions) == 1 and captions[0].count("ICLR 2018") == 1, captions


def test_the_comparison_names_catastrophic_overfitting_and_explains_it(isolated_store, tiny_result):
    """On the page: FGSM flat and high while PGD and APGD reach 0% (the FGSM-trained CNN's curves)."""
    import torch

    from robust_core.evaluation import (
        MASKING_SECTION,
        EvalKey,
        EvaluationCache,
        comparison_params,
    )

    store = ModelStore(isolated_store)
    entry = store.save(tiny_result, name="fgsm-like")
    cache = EvaluationCache(store)
    n = 500  # the page's default number of test images
    # Per-image minimal eps as the comparison caches them: FGSM breaks 6% of the images and nothing more at any eps
    # (the rest "inf": never broken); PGD-40 and APGD-CE break every image by eps 0.27.
    fgsm = torch.full((n,), float("inf"))
    fgsm[:30] = 0.02
    iterative = torch.linspace(0.01, 0.27, n)
    # Square's coarse search (3 bisection steps) brackets each threshold to the next multiple of 0.05.
    square = torch.ceil(iterative / 0.05) * 0.05
    for attack, values in (("fgsm", fgsm), ("pgd", iterative), ("apgd_ce", iterative), ("square", square)):
        cache.put(EvalKey(entry.model_id, attack, tuple(sorted(comparison_params(attack).items())), n, 0), values)
    at = run_app("lab_pages/attack.py")
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    assert any("catastrophic overfitting" in w and "flat" in w for w in warnings), warnings
    assert any(MASKING_SECTION in e.label for e in at.expander)
    # Square is drawn where it was measured (every 0.05, with markers), the others on the 41 frames; the page says so.
    [figure] = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "attack_comparison" in c.proto.id]
    traces = {t["name"]: t for t in figure["data"]}
    square_trace = next(t for name, t in traces.items() if name.startswith("Square"))
    assert square_trace["mode"] == "lines+markers" and len(square_trace["x"]) == 9 and square_trace["x"][1] == 0.05
    assert all(len(t["x"]) == 41 for name, t in traces.items() if not name.startswith("Square"))
    assert any("measured at every 0.05 of ε" in c.value for c in at.caption)


def test_first_time_computations_queue_in_one_runner_shared_by_every_visitor(two_models):
    """Heavy work goes through one job runner; identical requests from two visitors run once; each
    visitor sees the queue position and cancels only their own request."""
    import threading

    from lab_pages._jobs import job_runner

    first, _ = two_models
    runner = job_runner()
    release = threading.Event()
    runner.submit("test-blocker", lambda ctx: release.wait(60), owner="someone else")  # the server is busy
    try:
        visitors = []
        for token in ("student-a", "student-b"):
            at = AppTest_for(token)
            widget(at.multiselect, "Models").set_value([first]).run()
            [b for b in at.button if b.label.startswith("Compute (")][0].click().run()
            assert not at.exception, [e.value for e in at.exception]
            visitors.append(at)
        [job] = [j for j in runner.jobs() if j.key != "test-blocker"]
        from robust_core.access import visitor_id

        # One job for both.
        assert job.owners == [visitor_id("student-a"), visitor_id("student-b")] and runner.position(job) == 1
        a, b = visitors
        assert any("waiting, position 1 in the queue" in p.proto.text for p in a.get("progress"))
        # A withdraws: the job stays queued for B. B withdraws: it is cancelled, nothing computed.
        [cancel] = [x for x in a.button if x.label == "Cancel"]
        cancel.click().run()
        assert job.status == "queued" and job.owners == [visitor_id("student-b")]
        [x for x in b.button if x.label == "Cancel"][0].click().run()
        assert job.status == "cancelled"
    finally:
        release.set()
    assert runner.get("test-blocker").wait(10)


def AppTest_for(token: str):
    from streamlit.testing.v1 import AppTest

    from tests.test_pages import APP

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_owner_token"] = token
    at.run()
    at.switch_page("lab_pages/attack.py").run()
    widget(at.selectbox, "Test images").select(100)
    widget(at.number_input, "Steps").set_value(3).run()
    return at


def test_a_shared_figure_is_serialised_like_the_figure_and_never_changed_by_a_visitor():
    """The ε-slider figure is built once per server and shared: its dict is handed out as it is (no per-run deep
    copy), serialises exactly as the figure it came from, and the projector style (a visitor's switch) works on a
    copy, leaving what the other visitors receive untouched."""
    import plotly.io as pio

    from lab_pages._outputs import shared_figure
    from robust_core.plots import eps_slider_figure, projector_style

    fig = eps_slider_figure([0.0, 0.1, 0.2], {"a": [1.0, 0.5, 0.1], "b": [1.0, 0.9, 0.8]})
    shared = shared_figure(fig)
    assert shared.to_dict() is shared.to_dict()
    assert pio.to_json(shared.to_dict(), validate=False) == pio.to_json(fig.to_dict(), validate=False)
    before = json.dumps(shared.to_dict(), sort_keys=True)
    big = projector_style(shared)
    assert big.layout.font.size > (fig.layout.font.size or 12)
    assert json.dumps(shared.to_dict(), sort_keys=True) == before


def test_autoattack_runs_in_the_queue_at_one_eps_and_reports_every_stage(two_models):
    """The AutoAttack chain in the Attack page's comparison, through the server's job runner, cached beside
    the model (a second visit reads it, nothing runs), its protocol and every stage stated."""
    from lab_pages._jobs import job_runner

    first, _ = two_models
    at = open_attack_page()
    widget(at.selectbox, "Version").select("autoattack_fast").run()
    [run] = [b for b in at.button if b.label.startswith("Run AutoAttack fast")]
    run.click().run()
    finish_jobs(at)
    metrics = {m.label: m.value for m in at.metric}
    assert "Robust accuracy" in metrics and metrics["Clean accuracy"].endswith("%")
    robust = float(metrics["Robust accuracy"].rstrip("%"))
    assert 0 <= robust <= float(metrics["Clean accuracy"].rstrip("%"))
    stages = at.dataframe[-1].value
    assert list(stages["Stage"]) == ["APGD-CE · L∞", "APGD-T · L∞"]
    assert any("AutoAttack fast, L∞ ε = 0.3" in c.value for c in at.caption)
    # Cached: a new visitor sees the result at once, and no job is queued.
    again = open_attack_page()
    widget(again.selectbox, "Version").select("autoattack_fast").run()
    assert "Robust accuracy" in {m.label for m in again.metric}
    assert not job_runner().jobs()


def test_a_job_shown_by_the_curves_and_the_comparison_gets_a_cancel_button_in_each(two_models):
    """With the page's default PGD, the curves and the comparison wait on the same job; both sections draw
    its Cancel button (one key each: a shared key would raise StreamlitDuplicateElementKey while the job waits)."""
    import threading

    from lab_pages._jobs import job_runner

    first, _ = two_models
    runner = job_runner()
    release = threading.Event()
    runner.submit("test-blocker", lambda ctx: release.wait(60), owner="someone else")  # the job stays queued
    try:
        at = run_app("lab_pages/attack.py")
        widget(at.selectbox, "Test images").select(100)
        widget(at.multiselect, "Models").set_value([first]).run()
        widget(at.selectbox, "Model to compare on").select(first).run()
        [b for b in at.button if b.label.startswith("Compute (")][0].click().run()
        assert not at.exception, [e.value for e in at.exception]
        [job] = [j for j in runner.jobs() if j.key != "test-blocker"]
        # The comparison's PGD is the curves' job: both sections show it, each with its own Cancel.
        cancels = [b for b in at.button if b.label == "Cancel"]
        assert len(cancels) == 2 and len({b.key for b in cancels}) == 2
        # Streamlit writes widget keys into the page's HTML: the job key's store folder must not be in them.
        assert "store" in job.key and not any("store" in b.key or "/" in b.key for b in cancels)
        cancel = next(b for b in at.button if b.label == "Cancel")
        cancel.click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert job.status == "cancelled"
    finally:
        release.set()
    assert runner.get("test-blocker").wait(10)


def open_lecture_path(**params):
    """The Attack page opened as a lecture path's link opens it (``focus=`` and the path's other parameters)."""
    from streamlit.testing.v1 import AppTest

    from tests.test_pages import APP

    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(params)
    at.run()
    at.switch_page("lab_pages/attack.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_lecture_path_runs_its_own_section_and_the_rest_only_when_asked(two_models):
    """A room opening the eps-collapse path runs the curves only: the targeted search and AutoAttack wait behind one
    button (each student's run of them was most of the page's work while nobody looked)."""
    at = open_lecture_path(focus="curves")
    headers = [h.value for h in at.subheader]
    assert not any(h.startswith("Targeted") for h in headers) and not any(h.startswith("Compare") for h in headers)
    [rest] = [b for b in at.button if b.label == "Show the rest of the page"]
    rest.click().run()
    assert not at.exception, [e.value for e in at.exception]
    headers = [h.value for h in at.subheader]
    assert any(h.startswith("Targeted") for h in headers) and any(h.startswith("Compare") for h in headers)

    at.run()  # stays shown for this visitor
    assert any(h.value.startswith("Targeted") for h in at.subheader)
    assert not [b for b in at.button if b.label == "Show the rest of the page"]


def test_the_masking_path_opens_on_the_comparison_alone(two_models):
    """The gradient-masking path: the comparison first; the targeted section and AutoAttack after one click."""
    at = open_lecture_path(focus="comparison")
    headers = [h.value for h in at.subheader]
    assert any(h.startswith("Compare") for h in headers) and not any(h.startswith("Targeted") for h in headers)
    assert not any("AutoAttack on" in m.value for m in at.markdown)
    [rest] = [b for b in at.button if b.label == "Show the rest of the page"]
    rest.click().run()
    assert any(h.value.startswith("Targeted") for h in at.subheader)
    assert any("AutoAttack on" in m.value for m in at.markdown)


def test_the_eps_collapse_path_crafts_its_gallery_before_it_stops(two_models):
    """The path stops the page after its curves, but its gallery (part of the lesson) is still crafted there."""
    first, second = two_models
    at = open_lecture_path(focus="curves", models=f"{first},{second}", n="100")
    widget(at.number_input, "Steps").set_value(3).run()
    compute(at)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    fig = figure(at)
    assert sum(t["type"] == "image" for t in fig["data"]) == 4  # both models' rows of digits
    assert not any(h.value.startswith("Targeted") for h in at.subheader)
    # The path's room looks at the curves: their files wait behind the rest of the page.
    assert not at.get("download_button")
    [rest] = [b for b in at.button if b.label == "Show the rest of the page"]
    rest.click().run()
    assert "Download curves (CSV)" in [d.proto.label for d in at.get("download_button")]
