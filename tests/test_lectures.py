"""Lecture paths as data: the shipped ones are valid; a bad file is reported, never fatal."""
from robust_core.lectures import PAGE_PARAMS, lecture_paths


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
