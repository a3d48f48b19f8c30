"""Sweeps (robust_core.sweep): the same numbers locally and on Ray, resuming after a SIGKILL, the table's content,
AutoAttack and training jobs cached, and clear errors. Tiny models, at most 40 images, few attack steps, one torch
thread per job (two threads fight over a loaded 2-core machine)."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robust_core.store import ModelStore
from robust_core.sweep import (
    EvalGrid,
    SweepError,
    TrainGrid,
    function_job,
    main,
    run_jobs,
    run_sweep,
)

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) jobs: (\d+) reused from the caches, (\d+) computed")


@pytest.fixture(scope="module")
def stored_models(tmp_path_factory, tiny_result, mnist):
    """A store holding two small networks, "first" and "second", made once for the module: (folder, ids)."""
    from robust_core.training import TrainConfig, train_model

    root = tmp_path_factory.mktemp("sweep-models")
    store = ModelStore(root)
    first = store.save(tiny_result, name="first")
    second = store.save(train_model(TrainConfig(train_subset=500, epochs=1, batch_size=64, seed=3), data=mnist),
                        name="second")
    return root, (first.model_id, second.model_id)


@pytest.fixture
def two_models(stored_models, isolated_store):
    """This test's store ($ROBUST_STORE_DIR), a copy of the module's two models: (id of first, id of second)."""
    root, ids = stored_models
    shutil.copytree(root, isolated_store)
    return ids


def copy_store(src: Path, dst: Path) -> ModelStore:
    shutil.copytree(src, dst)
    return ModelStore(dst)


def summary(text: str) -> tuple[int, int, int]:
    total, reused, computed = map(int, SUMMARY.search(text).groups())
    return total, reused, computed


def test_a_tiny_grid_gives_the_same_numbers_locally_and_on_ray(two_models, isolated_store, tmp_path):
    ray = pytest.importorskip("ray")
    first, second = two_models
    grid = EvalGrid(models=[first[:6], second], attacks=["pgd", "autoattack_fast"], eps=[0, 0.05, 0.15], n=24, seed=1,
                    attack_params={"pgd": {"steps": 5}})
    local_store = copy_store(isolated_store, tmp_path / "local")
    ray_store = copy_store(isolated_store, tmp_path / "ray")
    local = run_sweep(grid, store=local_store, progress=False, threads=1)
    assert (local.reused, local.computed) == (0, 2 + 2 * 3)  # one PGD job per model, one AutoAttack job per (model, ε)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_sweep(grid, store=ray_store, backend="ray", progress=False, threads=1)
        # A function job (the DeepDefense report's per-model tables) runs as a Ray task too, in a worker process.
        [on_worker], _ = run_jobs([function_job(report_like, label="on ray", model_id=first, n=3)], store=ray_store,
                                  backend="ray", progress=False, threads=1)
    finally:
        ray.shutdown()
    assert (on_ray.reused, on_ray.computed) == (0, 8)
    assert list(on_ray) == list(local) and len(local) == 2 * 2 * 3
    # The Ray tasks wrote into the store like the local backend: a local rerun on it computes nothing.
    assert run_sweep(grid, store=ray_store, progress=False).computed == 0
    assert on_worker["pid"] != os.getpid() and on_worker["labels"] == report_like(
        store_root=str(ray_store.root), device="cpu", model_id=first, n=3)["labels"]


def report_like(*, store_root: str, device, model_id: str, n: int) -> dict:
    """A function job's body: reads the store it is given and returns plain data."""
    import torch

    from robust_core.data import load_dataset

    model = ModelStore(store_root).load(model_id).eval()
    with torch.no_grad():
        labels = model(load_dataset("mnist").test_x[:n].to(device)).argmax(1).tolist()
    return {"labels": labels, "device": str(device), "pid": os.getpid()}


def test_function_jobs_run_in_order_report_each_result_and_refuse_what_a_worker_cannot_import(two_models, store,
                                                                                               tmp_path):
    from robust_core.sweep import _resolve_function

    first, second = two_models
    seen = []
    jobs = [function_job(report_like, label=f"model {m[:6]}", model_id=m, n=4) for m in (first, second)]
    assert [j.label for j in jobs] == [f"model {first[:6]}", f"model {second[:6]}"]
    results, info = run_jobs(jobs, store=store, progress=False, on_result=lambda i, r: seen.append((i, r["labels"])))
    assert [s[0] for s in seen] == [0, 1] and [s[1] for s in seen] == [r["labels"] for r in results]
    assert all(i["status"] == "computed" for i in info) and len(results[0]["labels"]) == 4
    with pytest.raises(SweepError, match="not a module-level function"):
        function_job(lambda **kw: {}, model_id=first)
    # A script's function (the report runs as a script, its module is __main__) is found by the script's path.
    script = tmp_path / "script.py"
    script.write_text("def double(*, store_root, device, value):\n    return {'value': 2 * value}\n")
    assert _resolve_function(f"file:{script}:double")(store_root="", device="cpu", value=21) == {"value": 42}
    with pytest.raises(SweepError, match="every node"):
        _resolve_function(f"file:{tmp_path / 'missing.py'}:double")


SWEEP_ARGS = ["--attacks", "pgd,fgsm", "--eps", "0.05,0.1,0.2", "--n", "40", "--seed", "0", "--threads", "1",
              "--attack-params", '{"pgd": {"steps": 20}}', "--quiet"]


def test_the_sweep_resumes_after_being_killed_halfway(two_models, isolated_store, tmp_path, capsys):
    first, second = two_models
    args = ["--models", f"{first},{second}", *SWEEP_ARGS]
    killed_store = tmp_path / "killed"
    shutil.copytree(isolated_store, killed_store)
    clean_store = copy_store(isolated_store, tmp_path / "clean")
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROBUST_STORE_DIR": str(killed_store)}
    child = subprocess.Popen([sys.executable, "-m", "robust_core.sweep", *args, "--out", str(tmp_path / "out_killed")],
                             env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not list(killed_store.glob("*/*/evaluations/*.json")):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no job finished in 90 s"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not (tmp_path / "out_killed" / "results.csv").exists()  # killed before the end: jobs were left
    assert main([*args, "--store", str(killed_store), "--out", str(tmp_path / "resumed")]) == 0
    total, reused, computed = summary(capsys.readouterr().out)
    assert total == 4 and reused >= 1 and computed >= 1 and reused + computed == 4
    assert main([*args, "--store", str(clean_store.root), "--out", str(tmp_path / "uninterrupted")]) == 0
    assert summary(capsys.readouterr().out) == (4, 0, 4)
    resumed, uninterrupted = (tmp_path / d / "results.csv" for d in ("resumed", "uninterrupted"))
    assert resumed.read_text() == uninterrupted.read_text()
    rows = lambda d: json.loads((tmp_path / d / "results.json").read_text())["rows"]  # noqa: E731
    assert rows("resumed") == rows("uninterrupted")
    # And a third run of the same command reuses everything.
    assert main([*args, "--store", str(clean_store.root), "--out", str(tmp_path / "again")]) == 0
    assert summary(capsys.readouterr().out) == (4, 4, 0)


def test_the_table_and_the_figures(two_models, tmp_path, capsys):
    first, second = two_models
    out = tmp_path / "out"
    assert main(["--models", first[:8], "--models", second, "--attacks", "fgsm,deepfool,pgd", "--eps", "0,0.1,0.3,1",
                 "--n", "30", "--seed", "2", "--attack-params", '{"pgd": {"steps": 3}}', "--threads", "1", "--quiet",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "FGSM · L∞, first 30 test images" in printed and "written to" in printed
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model_id", "model", "dataset", "attack", "norm", "eps", "robust_accuracy", "n", "seed",
                             "params", "protocol"]
    assert len(rows) == 2 * 3 * 4
    first_rows = [(r["model"], r["attack"], float(r["eps"])) for r in rows[:4]]
    assert first_rows == [("first", "fgsm", e) for e in (0, 0.1, 0.3, 1)]
    assert {r["n"] for r in rows} == {"30"} and {r["seed"] for r in rows} == {"2"}
    assert {r["model_id"] for r in rows} == {first, second} and {r["dataset"] for r in rows} == {"mnist"}
    for model in ("first", "second"):
        for attack in ("fgsm", "deepfool", "pgd"):
            accs = [float(r["robust_accuracy"]) for r in rows if r["model"] == model and r["attack"] == attack]
            assert accs == sorted(accs, reverse=True) and 0.2 < accs[0] <= 1  # eps = 0: the clean accuracy
    # FGSM's parameters are the Attack page's (its cache entries are shared): the largest ε the page uses, or the
    # grid's.
    assert json.loads(rows[0]["params"]) == {"eps_max": 1.0}
    report = json.loads((out / "results.json").read_text())
    assert report["kind"] == "evaluate" and report["grid"]["n"] == 30 and report["grid"]["eps"] == [0, 0.1, 0.3, 1]
    assert report["jobs"] == {"total": 6, "reused": 0, "computed": 6}
    run = report["runs"][0]
    assert run["attack"] == "fgsm" and run["params"] == {"eps_max": 1.0} and run["seed"] == 2 and run["n"] == 30
    assert run["search"]["grid_points"] == 100 and run["status"] == "computed"
    deepfool = next(r for r in report["runs"] if r["attack"] == "deepfool")
    assert deepfool["attack_defaults"] == {"norm": "l2"} and deepfool["minimal_perturbation"]["median"] > 0
    pgd = next(r for r in report["runs"] if r["attack"] == "pgd")
    assert pgd["params"] == {"eps_max": 1.0, "steps": 3, "restarts": 1}
    for name in ("accuracy_mnist_fgsm.html", "accuracy_mnist_deepfool.html", "comparison_first.html"):
        html = (out / name).read_text()
        assert "cdn.plot.ly" not in html and 'src="plotly.min.js"' in html and "first" in html
    assert (out / "plotly.min.js").is_file()
    assert "comparison_first.html" in printed


def test_autoattack_runs_at_each_eps_and_is_cached_on_disk(two_models, store, tmp_path):
    first, _ = two_models
    grid = EvalGrid(models=[first], attacks=["autoattack_fast"], eps=[0, 0.1], n=20)
    result = run_sweep(grid, store=store, progress=False, threads=1)
    assert (result.reused, result.computed) == (0, 2)
    clean, attacked = result
    assert clean["eps"] == 0 and attacked["eps"] == 0.1 and attacked["robust_accuracy"] <= clean["robust_accuracy"]
    assert "apgd_t(steps=100, n_target_classes=3" in attacked["protocol"]
    files = list((store.get(first).path / "evaluations" / "autoattack").glob("*.json"))
    assert len(files) == 2
    again = run_sweep(grid, store=ModelStore(store.root), progress=False)
    assert (again.reused, again.computed) == (2, 0) and list(again) == list(result)
    run = next(r for r in again.runs if r["eps"] == 0.1)
    assert [s["attack"] for s in run["stages"]] == ["apgd_ce", "apgd_t"] and run["version"] == "fast"
    assert run["clean_accuracy"] == clean["robust_accuracy"]


def test_a_training_grid_trains_once_then_skips_and_can_evaluate(tmp_path, capsys):
    args = ["train", "--method", "gfa,standard", "--lam", "0.1,1", "--seed", "0", "--epochs", "1", "--n-train", "200",
            "--batch-size", "64", "--arch", "mlp", "--arch-kwargs", '{"hidden": [32]}', "--threads", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert summary(capsys.readouterr().out) == (3, 0, 3)  # gfa at two λ, standard once (λ is not its argument)
    with open(tmp_path / "a" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["method"], r["lam"]) for r in rows) == [("gfa", "0.1"), ("gfa", "1.0"), ("standard", "")]
    assert all(float(r["test_acc"]) > 0.2 and r["n_train"] == "200" and r["epochs"] == "1" for r in rows)
    assert (tmp_path / "a" / "training_curves.html").is_file()
    entry = ModelStore().get(rows[0]["model_id"])
    assert entry.meta["command"].startswith("python -m robust_core.train ")
    assert "--train-subset 200" in entry.meta["command"]
    # The same configurations again, now evaluated too: nothing is retrained.
    assert main([*args, "--attacks", "fgsm", "--eval-eps", "0.1", "--n", "20", "--out", str(tmp_path / "b")]) == 0
    assert summary(capsys.readouterr().out) == (6, 3, 3)
    with open(tmp_path / "b" / "results.csv") as f:
        evaluated = list(csv.DictReader(f))
    assert len(evaluated) == 3 and {r["attack"] for r in evaluated} == {"fgsm"}
    assert {(r["method"], r["lam"]) for r in evaluated} == {(r["method"], r["lam"]) for r in rows}
    assert main(["train", "--method", "gfa", "--eps", "0.1", "--quiet", "--out", str(tmp_path / "c")]) == 2
    assert "--eps applies to none of the methods" in capsys.readouterr().err


def test_clear_errors(two_models, tmp_path, capsys, monkeypatch):
    first, _ = two_models
    out = str(tmp_path / "out")
    cases = [
        (["--models", "ffff"], "error: unknown model 'ffff'"),
        (["--models", first, "--attacks", "pgd,nope"], "error: unknown attack 'nope'"),
        (["--models", first, "--eps", "0.1,2"], "ε = 2 is out of range for pgd"),
        (["--models", first, "--n", "0"], "between 1 and 10,000"),
        (["--models", first, "--n", "20000"], "between 1 and 10,000"),
        (["--models", first, "--eps", "a,b"], "is not 'start:stop:step'"),
        (["--models", "shipped"], "no shipped model is installed"),
        (["--models", first, "--attacks", "autoattack_fast", "--attack-params", '{"autoattack_fast": {"steps": 3}}'],
         "fixed protocol"),
        (["--models", first, "--attack-params", '{"pgd": {"stepz": 3}}'], "pgd takes no parameter ['stepz']"),
    ]
    for args, message in cases:
        assert main([*args, "--quiet", "--out", out]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (args, err)
    assert not Path(out).exists()
    with pytest.raises(SweepError, match="unknown attack"):
        run_sweep(EvalGrid(models=[first], attacks=["pgdd"], eps=[0.1], n=10), progress=False)
    with pytest.raises(SweepError, match="unknown training method"):
        run_sweep(TrainGrid(methods=["nope"]), progress=False)
    # Without Ray, --ray says what to install.
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["--models", first, "--ray", "--quiet", "--out", out]) == 2
    assert "pip install -r requirements-ray.txt" in capsys.readouterr().err
    # Missing data: a clear error, nothing computed.
    monkeypatch.setenv("ROBUST_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("ROBUST_OFFLINE", "1")
    assert main(["--models", first, "--quiet", "--out", out]) == 2
    assert "the mnist data is missing" in capsys.readouterr().err


def test_an_autoattack_job_reports_each_stage_and_a_cancellation_caches_nothing(two_models, store):
    """The Attack page runs AutoAttack through execute_job in the server's queue: progress after each stage, and a
    cancelled job (the runner raises from the progress callback) stops there and leaves no cached result."""
    from robust_core.sweep import AutoAttackJob, execute_job, read_autoattack

    first, _ = two_models
    job = AutoAttackJob(model_id=first, attack="autoattack_fast", eps=0.1, n=12, seed=0, dataset="mnist")
    reports = []
    result = execute_job(job, str(store.root), threads=1, on_progress=lambda f, m: reports.append((f, m)))
    # Progress follows the stages' work, not their count: APGD-T tries 3 targets, so APGD-CE is a quarter of the chain.
    assert [f for f, _ in reports] == [pytest.approx(0.25, abs=0.01), 1.0] and reports[0][1].startswith("APGD-CE done")
    assert read_autoattack(store, job) == result

    class Cancelled(Exception):
        pass

    def cancel(fraction, message):
        raise Cancelled

    other = AutoAttackJob(model_id=first, attack="autoattack_fast", eps=0.2, n=12, seed=0, dataset="mnist")
    with pytest.raises(Cancelled):
        execute_job(other, str(store.root), threads=1, on_progress=cancel)
    assert read_autoattack(store, other) is None


def test_each_job_kind_is_a_class_of_its_own_fields_that_travels_to_a_worker():
    """A job holds what its kind needs and nothing else; ``Job(kind, ...)`` builds the same job from the kind's name."""
    import pickle

    from robust_core.sweep import AutoAttackJob, CallJob, Job, MinimalEpsJob, TrainJob
    from robust_core.training import TrainConfig

    config = TrainConfig(method="fgsm_at", seed=3).to_dict()
    jobs = [MinimalEpsJob("abc123456", "mnist", "pgd", (("steps", 40),), 100, 0),
            AutoAttackJob("abc123456", "autoattack_fast", 0.3, 100, 0, "mnist"), TrainJob(config),
            CallJob("benchmarks.deepdefense_report:fixed_job", {"model_id": "abc"}, "fixed ε")]
    built = [Job("minimal_eps", "abc123456", "mnist", "pgd", (("steps", 40),), 100, 0),
             Job("autoattack", "abc123456", "mnist", "autoattack_fast", (), 100, 0, 0.3), Job("train", config=config),
             Job("call", config={"fn": "benchmarks.deepdefense_report:fixed_job", "kwargs": {"model_id": "abc"}},
                 name="fixed ε")]
    assert built == jobs and [pickle.loads(pickle.dumps(j)) for j in jobs] == jobs
    assert [j.kind for j in jobs] == ["minimal_eps", "autoattack", "train", "call"]
    assert [j.label for j in jobs] == ["abc12345 pgd", "abc12345 autoattack_fast ε=0.3", "train fgsm_at seed 3",
                                       "fixed ε"]
    assert (jobs[2].dataset, jobs[2].seed) == ("mnist", 3) and not hasattr(jobs[0], "config")
    with pytest.raises(SweepError, match="unknown job kind"):
        Job("evaluate")
