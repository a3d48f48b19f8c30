"""The DeepDefense report's side-by-side protocols: which images, which ε and which model each row of the attribution
reads (benchmarks/deepdefense_report.py computes its tables from cached per-image outcomes; no attack runs here)."""
import pytest

from benchmarks import deepdefense_report as report  # a broken import fails these tests (no skip)


def model(method, robust, clean_ok, aa=None, **kwargs):
    """A row as the report builds it: ``robust`` is {eps: {attack: per-image survival}} over 8 images."""
    meta = {"name": f"{method} {kwargs}", "config": {"dataset": "mnist", "method": method,
                                                     "method_kwargs": {"lam": 1.0, **kwargs}}}
    # PGD-40 is in the paper-protocol table but not in the attribution: here it survives wherever FGSM does.
    fixed = {"clean_ok": clean_ok, "eps": {},
             "robust": {str(e): {"PGD-40": r["FGSM"], **r} for e, r in robust.items()}}
    aa = aa or {}
    return {"meta": meta, "fixed": fixed, "minimal": None,
            "aa": {e: {"robust": [int(c) for c in bits], "robust_accuracy": bits.count("1") / len(bits)}
                   for e, bits in aa.items()}}


def test_the_attribution_reads_each_protocol_where_it_should(monkeypatch):
    monkeypatch.setattr(report, "AA_EPS", {"mnist": [0.2]})
    monkeypatch.setattr(report, "EPS", {"mnist": [0.1, 0.2]})
    # 8 images; the AT model gets image 7 wrong, so the common subset is images 0-6.
    at = model("pgd_at", {0.2: {"FGSM": "11110000", "APGD-CE": "11100000"},
                          0.1: {"FGSM": "11111100", "APGD-CE": "11111000"}},
               "11111110", aa={0.2: "11000000"})
    gfa = model("gfa", {0.2: {"FGSM": "11111111", "APGD-CE": "11000000"},
                        0.1: {"FGSM": "11111111", "APGD-CE": "11111110"}},
                "11111111", aa={0.2: "10000001"}, layers="deep", loss="ce")
    gfa_mse = model("gfa", {0.2: {"FGSM": "00000000", "APGD-CE": "00000000"},
                            0.1: {"FGSM": "11100000", "APGD-CE": "11000000"}},
                    "11111111", layers="deep", loss="mse")
    rows = {"at": at, "gfa": gfa, "mse": gfa_mse}
    lines, attribution = report.paper_protocol(list(rows), rows, "mnist")
    assert "**7** of the first 8" in lines[0]
    gaps = [gap for _, gap in attribution[("at", "FGSM", 0.2)]]
    expected = [
        2 / 8 - 2 / 8,  # AutoAttack at 0.2 on all 8 images: GFA 2/8, AT 2/8
        1 / 7 - 2 / 7,  # the same on the 7 common images (GFA's image 7 drops out)
        7 / 7 - 4 / 7,  # FGSM alone at 0.2 on the common images
        7 / 7 - 6 / 7,  # FGSM at 0.1: the paper's ε = 0.2 on [-1, 1]
        3 / 7 - 6 / 7,  # the MSE-trained GFA instead
    ]
    assert gaps == pytest.approx(expected)
    apgd = [gap for _, gap in attribution[("at", "APGD-CE", 0.2)]]
    assert apgd[2:] == pytest.approx([2 / 7 - 3 / 7, 7 / 7 - 5 / 7, 2 / 7 - 5 / 7])
    # The shares (row-to-row changes) add up to the whole move from our protocol to the paper's.
    findings = report.attribution_findings(attribution, rows)
    assert any("-42.9 under the paper's" in f for f in findings)
    assert "| + ε read on [-1, 1] inputs (half the perturbation) | +14.3 (-28.6) |" in lines


def test_the_common_subset_is_the_images_every_model_gets_right():
    rows = {"a": model("standard", {}, "1101"), "b": model("gfa", {}, "0111")}
    assert report.common_subset(list(rows), rows).tolist() == [False, True, False, True]
    assert report.unbits(report.bits(report.common_subset(list(rows), rows))).tolist() == [False, True, False, True]


def test_a_cache_write_that_dies_before_reaching_the_disk_leaves_no_cache_behind(tmp_path, monkeypatch):
    """The resumable caches are written whole or not at all: a run killed mid-write must not resume from half a file."""
    import os

    runs = []

    class Result:
        def summary(self):
            return {"best_of": {"median": 1.0, "success": 1.0}}

    def search(*args, **kwargs):
        runs.append(1)
        return Result()

    def dies(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(report, "best_minimal_perturbation", search)
    cache = tmp_path / "model-8-minimal-l2.json"
    with monkeypatch.context() as crashing:
        crashing.setattr(os, "fsync", dies)
        with pytest.raises(OSError, match="disk gone"):
            report.minimal_l2(None, None, None, cache, log=lambda s: None)
    assert list(tmp_path.iterdir()) == []  # neither a cache nor a temporary file
    assert report.minimal_l2(None, None, None, cache, log=lambda s: None)["best_of"]["median"] == 1.0
    assert report.minimal_l2(None, None, None, cache)["best_of"] == {"median": 1.0, "success": 1.0}
    assert len(runs) == 2  # the third call read the cache the second wrote
