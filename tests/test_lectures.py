"""Lecture paths as data: the shipped ones are valid; a bad file is reported, never fatal."""
from robust_core.lectures import PAGE_PARAMS, lecture_paths
from tests.test_pages import finish_jobs


def test_shipped_lecture_paths_name_real_pages_parameters_and_shipped_models():
    from robust_core.shipped import shipped_models

    paths, errors = lecture_paths()
    assert errors == [] and len(paths) >= 5
    assert [p.order for p in paths] == sorted(p.order for p in paths)
    shipped = {s.model_id for s in shipped_models()}
    for path in paths:
        assert set(path.params) <= set(PAGE_PARAMS[path.page])
        assert set(filter(None, path.params.get("models", "").split(","))) <= shipped, path.name
    assert {p.page for p in paths} >= {"attack", "classviz", "saliency", "confidence"}


def test_a_bad_lecture_file_is_reported_and_the_others_still_load(tmp_path):
    (tmp_path / "good.toml").write_text('title = "T"\nsummary = "S"\npage = "attack"\n[params]\nattack = "pgd"\n')
    (tmp_path / "broken.toml").write_text('title = "unclosed\n')
    (tmp_path / "page.toml").write_text('title = "T"\nsummary = "S"\npage = "nowhere"\n')
    (tmp_path / "param.toml").write_text('title = "T"\nsummary = "S"\npage = "saliency"\n[params]\neps = "0.3"\n')
    (tmp_path / "empty.toml").write_text('title = ""\nsummary = "S"\npage = "attack"\n')
    paths, errors = lecture_paths(tmp_path)
    assert [p.name for p in paths] == ["good"] and paths[0].params == {"attack": "pgd"}
    text = "\n".join(errors)
    assert len(errors) == 4 and "broken.toml" in text and "nowhere" in text and "no parameter eps" in text
    assert "needs text for title" in text


def test_every_lecture_path_opens_on_a_fresh_store_with_its_figures_and_no_compute(monkeypatch, isolated_store):
    """The shipped models and their shipped evaluation results make every path's first view instant."""
    import json

    from streamlit.testing.v1 import AppTest

    from robust_core import evaluation
    from tests.test_pages import APP

    one_image_search = evaluation.minimal_eps

    def no_curve_search(model, x, y, **kwargs):
        # The Targeted section searches one image per model on every view, the gallery at most 8: allowed. A curve
        # (100 images or more) must come from the shipped results.
        if len(x) > 8:
            raise AssertionError("a lecture path's first view ran a minimal-eps search for a curve")
        return one_image_search(model, x, y, **kwargs)

    monkeypatch.setattr(evaluation.cache, "minimal_eps", no_curve_search)  # the search behind every cached curve
    monkeypatch.setenv("ROBUST_SHIPPED_MODELS", "1")
    paths, _ = lecture_paths()
    for path in paths:
        at = AppTest.from_file(APP, default_timeout=240)
        at.query_params.update(path.params)
        at.run()
        at.switch_page(f"lab_pages/{path.page}.py").run()
        assert not at.exception, (path.name, [e.value for e in at.exception])
        # The path's own figure needs no Compute click (the comparison further down may offer attacks not shipped,
        # except on the masking path, whose comparison is the point).
        assert not [b for b in at.button
                    if b.label.startswith("Compute" if "cmp" in path.params else "Compute (")], path.name
        if path.page == "attack":
            if "cmp" in path.params:  # the masking path: the comparison and its finding are on screen
                assert any("catastrophic overfitting" in w.value for w in at.warning), path.name
                # Its curves wait with the rest of the page, and come from the shipped results too.
                [b for b in at.button if b.label == "Show the rest of the page"][0].click().run()
                assert not at.exception, (path.name, [e.value for e in at.exception])
            charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
            slider = next(c for c in charts if c.get("frames"))
            curves = [t["name"] for t in slider["data"] if t.get("mode") == "lines"]
            assert len(curves) == len(path.params["models"].split(",")), (path.name, curves)
        elif path.page == "classviz":
            [b for b in at.button if b.label == "Morph"][0].click().run()
            finish_jobs(at)
            assert not at.exception and any("looks like a 9" in m.value for m in at.markdown), path.name
            # The room looks at the morph; its files are one click away.
            assert not at.get("download_button"), path.name
            [b for b in at.button if b.label == "Show the rest of the page"][0].click().run()
            assert "Frames (GIF)" in [d.proto.label for d in at.get("download_button")], path.name
        elif path.page in ("saliency", "confidence"):
            assert at.get("plotly_chart") or at.get("image"), path.name
