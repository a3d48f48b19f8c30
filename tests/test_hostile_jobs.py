"""One visitor of a lecture room cannot exhaust the server through the normal UI.

Each test replays one way of trying (a giant network, a flooded queue, three tabs, one click of hours, an attack in
the visitor's own session, any torchvision name) and asserts the refusal where the work is queued, not only in the
widget; the lecturer can still queue, see every job, cancel any and pause visitors' training."""
import threading
import time
import uuid

import pytest
import torch
from streamlit.testing.v1 import AppTest

from robust_core.access import Work, visitor_id, work_error
from robust_core.data import dataset_info
from robust_core.jobs import JobRunner, QuotaExceeded
from robust_core.models import ARCHITECTURES, build_model, parameter_count
from robust_core.models.size import (
    estimate_parameters,
    estimate_training_bytes,
    network_size,
)
from robust_core.store import ModelStore
from robust_core.training import TrainConfig, train_model
from tests.test_pages import APP, widget

GIANT_MLP = {"hidden": [8192] * 40, "activation": "relu"}


def gate():
    release = threading.Event()

    def fn(ctx):
        while not release.wait(0.01):
            ctx.progress(0.5)
        return "released"
    return fn, release


# ---- the model-size cap, from the configuration alone ------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_the_size_estimates_count_what_the_builders_build(dataset):
    configs = [TrainConfig(dataset=dataset, arch=a) for a, spec in ARCHITECTURES.items() if spec.kind == "torch"]
    configs += [TrainConfig(dataset=dataset, arch="mlp", arch_kwargs={"hidden": [37, 5, 300], "activation": "tanh"}),
                TrainConfig(dataset=dataset, arch="cnn", arch_kwargs={"filters": (3, 7), "dense": 9})]
    for config in configs:
        built = build_model(config.arch, dataset, **config.arch_kwargs)
        assert estimate_parameters(config) == parameter_count(built), config.arch
        # Activation units: at least the input, every block's output and the logits of one image.
        logits, features = built.forward_with_features(torch.zeros(1, *dataset_info(dataset).shape))
        assert network_size(config).activations >= logits.numel() + sum(f.numel() for f in features), config.arch
    logreg = TrainConfig(dataset=dataset, arch="logreg")
    fitted = build_model("logreg", dataset)
    assert estimate_parameters(logreg) == (fitted.num_classes * (1 + 3 * 32 * 32 if dataset == "cifar10" else 1 + 784))
    assert estimate_parameters(TrainConfig(dataset=dataset, arch="knn")) is None  # as parameter_count says of a k-NN


def test_the_giant_mlp_is_refused_from_its_configuration_before_anything_is_built(monkeypatch):
    """MLP, hidden sizes 8192 x 40, 10,000 images, batch 1: 2.6 billion parameters. Counting them builds nothing."""
    import robust_core.models

    def never(*args, **kwargs):
        raise AssertionError("a network was built to check its size")
    monkeypatch.setattr(robust_core.models, "mlp", never)
    monkeypatch.setattr(robust_core.models, "build_model", never)
    config = TrainConfig(arch="mlp", arch_kwargs=GIANT_MLP, train_subset=10000, batch_size=1, epochs=1)
    widths = [784] + GIANT_MLP["hidden"] + [10]
    expected = sum(a * b + b for a, b in zip(widths, widths[1:]))
    assert estimate_parameters(config) == expected == 2_624_077_834
    assert estimate_training_bytes(config) >= 16 * expected  # float32 weights, gradients and Adam's two moments
    visitor = work_error(Work("training", config=config), lecture=True, lecturer=False, memory_bytes=2**40)
    assert "at most 5,000,000 parameters" in visitor and "2,624,077,834" in visitor
    # Everybody, single-user included, is held to half the machine's memory (a 23 GiB machine here).
    for lecture, lecturer in ((False, False), (True, True)):
        refused = work_error(Work("training", config=config), lecture=lecture, lecturer=lecturer,
                             memory_bytes=23 * 2**30)
        assert "more than half of this server's 23.0 GiB" in refused
        assert work_error(Work("training", config=config), lecture=lecture, lecturer=lecturer,
                          memory_bytes=2**40) is None
    # What a visitor may still train: the seed CNN and Madry's CNN within the epochs and images.
    for arch in ("cnn", "cnn_madry"):
        small = TrainConfig(arch=arch, train_subset=10000, epochs=3)
        assert work_error(Work("training", config=small), lecture=True, lecturer=False, memory_bytes=2**34) is None
    # Hours of PGD training on Madry's CNN are not a visitor's to queue; the lecturer's they are.
    long_pgd = TrainConfig(arch="cnn_madry", method="pgd_at", method_kwargs={"steps": 40}, train_subset=10000, epochs=3)
    assert "minutes" in work_error(Work("training", config=long_pgd), lecture=True, lecturer=False, memory_bytes=2**34)
    assert work_error(Work("training", config=long_pgd), lecture=True, lecturer=True, memory_bytes=2**34) is None


@pytest.fixture
def lecture(monkeypatch, isolated_store, tiny_result):
    monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    monkeypatch.setenv("ROBUST_LECTURER_KEY", "s3cret")
    store = ModelStore(isolated_store)
    return store, store.save(tiny_result, name="lecturer's CNN")


def session(page: str, token: str, *, lecturer: bool = False, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["_owner_token"] = token
    if lecturer:
        at.session_state["_lecturer"] = True
    for name, value in (query or {}).items():
        at.query_params[name] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def busy_server():
    """The server's long lane busy with a job of the lecturer's, so what visitors queue waits; afterwards every job
    is stopped and the pause lifted (the runner is the server's, shared by every test)."""
    from lab_pages._jobs import job_runner

    runner = job_runner()
    fn, release = gate()
    blocker = runner.submit(f"hostile-blocker-{uuid.uuid4().hex}", fn, owner="the test's lecturer", lane="long")
    yield runner
    for job in runner.jobs():
        if job is not blocker:
            runner.cancel_all(job, by="the test")
    release.set()
    for lane in runner.lanes:
        runner.pause_visitors(lane, False)
    deadline = time.monotonic() + 30
    while runner.jobs() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not runner.jobs()


def visitors_jobs(runner, token: str) -> list:
    return [j for j in runner.jobs() if visitor_id(token) in j.owners]


def giant_mlp_form(at: AppTest) -> AppTest:
    widget(at.selectbox, "Architecture").set_value("mlp").run()
    widget(at.selectbox, "Training images").select(10000)
    widget(at.number_input, "Epochs").set_value(1)
    widget(at.number_input, "Batch size").set_value(1).run()
    widget(at.text_input, "Hidden layer sizes").input(", ".join(["8192"] * 40))
    return at


@pytest.mark.parametrize("lecture_mode", [True, False])
def test_the_train_page_refuses_the_giant_mlp_before_the_click_and_after_it(lecture_mode, busy_server, monkeypatch,
                                                                             isolated_store):
    import robust_core.access
    import robust_core.models

    def never(*args, **kwargs):
        raise AssertionError("a network was built")
    monkeypatch.setattr(robust_core.models, "mlp", never)
    if lecture_mode:  # a server of 1 TiB: the visitors' cap refuses it, not the memory
        monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
        monkeypatch.setattr(robust_core.access, "machine_memory_bytes", lambda: 2**40)
        expected = "at most 5,000,000 parameters"
    else:  # single-user, on a 23 GiB machine
        monkeypatch.setattr(robust_core.access, "machine_memory_bytes", lambda: 23 * 2**30)
        expected = "more than half of this server's 23.0 GiB"
    at = giant_mlp_form(session("lab_pages/train.py", "student-giant"))
    # The sizes and the click in one message (a quick hand, or a forged request): the click is not a training.
    widget(at.button, "Train").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not visitors_jobs(busy_server, "student-giant")
    assert widget(at.button, "Train").disabled and any(expected in w.value and "2,624,077,834" in w.value
                                                       for w in at.warning), [w.value for w in at.warning]


def test_the_queueing_function_refuses_what_the_widgets_would_not_offer(lecture, busy_server):
    """lab_pages/_jobs.submit_job, where every page queues its work, checks the request itself: a page that forgot a
    check, or a click the widgets did not stop, still cannot queue it."""
    def script():
        import streamlit as st

        from lab_pages._jobs import submit_job
        from robust_core.access import Work
        from robust_core.training import TrainConfig

        giant = TrainConfig(arch="mlp", arch_kwargs={"hidden": [8192] * 40, "activation": "relu"}, train_subset=10000,
                            batch_size=1, epochs=1)
        for work in (Work("training", config=giant), Work("minimal_eps", images=10000, attack="pgd"),
                     Work("autoattack", images=10000, attack="autoattack_standard"),
                     Work("adversarial_inputs", images=10000, attack="pgd")):
            job = submit_job(f"forged-{work.kind}", lambda ctx: "ran", label="forged", work=work)
            st.text("refused" if job is None else "queued")

    at = AppTest.from_function(script, default_timeout=60)
    at.session_state["_owner_token"] = "forger"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.text] == ["refused"] * 4 and len(at.warning) == 4
    assert not visitors_jobs(busy_server, "forger")


def test_one_cookie_in_three_tabs_queues_two_trainings_not_three(lecture, busy_server):
    tabs = []
    for seed in (1, 2, 3):
        at = session("lab_pages/train.py", "student-tabs")
        widget(at.selectbox, "Training images").select(1000)
        widget(at.number_input, "Epochs").set_value(1)
        widget(at.number_input, "Seed").set_value(seed).run()
        widget(at.button, "Train").click().run()
        assert not at.exception, [e.value for e in at.exception]
        tabs.append(at)
    assert len(visitors_jobs(busy_server, "student-tabs")) == busy_server.visitor_jobs == 2
    assert any("You already have 2 jobs" in w.value for w in tabs[2].warning), [w.value for w in tabs[2].warning]
    # The lecturer, in another browser, still queues.
    lecturer = session("lab_pages/train.py", "lecturer-browser", lecturer=True)
    widget(lecturer.selectbox, "Training images").select(1000)
    widget(lecturer.number_input, "Seed").set_value(9).run()
    widget(lecturer.button, "Train").click().run()
    assert len(visitors_jobs(busy_server, "lecturer-browser")) == 1


# ---- the queue: per visitor, all visitors together, the lecturer exempt --------------------------------------------
def test_one_visitor_cannot_flood_a_lane_and_joining_an_identical_job_counts_too():
    runner = JobRunner(workers={"long": 1, "short": 1})
    blocker, release = gate()
    try:
        runner.submit("block", blocker, owner="lecturer", lane="long")
        mine = [runner.submit(f"attack-{seed}", lambda ctx: 0, owner="mallory", lane="long", limited=True)
                for seed in (1, 2)]
        with pytest.raises(QuotaExceeded, match="You already have 2 jobs"):
            runner.submit("attack-3", lambda ctx: 0, owner="mallory", lane="long", limited=True)
        other = runner.submit("someone's", lambda ctx: 0, owner="alice", lane="long", limited=True)
        with pytest.raises(QuotaExceeded):  # joining alice's job would keep a third one alive for mallory
            runner.submit("someone's", lambda ctx: 0, owner="mallory", lane="long", limited=True)
        assert other.owners == ["alice"]
        # Her own request again: the same job, no new place taken.
        assert runner.submit("attack-1", lambda ctx: 0, owner="mallory", lane="long", limited=True) is mine[0]
        # Four morphs in one session: two; the short lane's quota is its own.
        morphs = [runner.submit(f"morph-{i}", blocker, owner="mallory", lane="short", limited=True) for i in range(2)]
        with pytest.raises(QuotaExceeded):
            runner.submit("morph-2", blocker, owner="mallory", lane="short", limited=True)
        # Cancelling frees a place.
        assert runner.cancel(mine[1], "mallory")
        assert runner.submit("attack-3", lambda ctx: 0, owner="mallory", lane="long", limited=True).status == "queued"
        assert all(m.lane == "short" for m in morphs)
    finally:
        release.set()


def test_forged_cookies_cannot_flood_a_lane_and_the_lecturer_can_always_queue():
    runner = JobRunner(workers={"long": 1, "short": 1}, visitors_queued=10)
    blocker, release = gate()
    try:
        runner.submit("block", blocker, owner="lecturer", lane="long")
        for i in range(10):  # ten "visitors", one forged cookie each
            runner.submit(f"job-{i}", lambda ctx: 0, owner=f"forged-{i}", lane="long", limited=True)
        with pytest.raises(QuotaExceeded, match="10 visitors' jobs are waiting"):
            runner.submit("job-10", lambda ctx: 0, owner="forged-10", lane="long", limited=True)
        lecturers = runner.submit("lecture-demo", lambda ctx: "demo", owner="lecturer", lane="long")
        assert lecturers.status == "queued"
        # A visitor's job the lecturer joined is the lecturer's too: it no longer counts against the visitors' share.
        runner.submit("job-0", lambda ctx: 0, owner="lecturer", lane="long")
        assert runner.submit("job-11", lambda ctx: 0, owner="forged-11", lane="long", limited=True).status == "queued"
        assert runner.submit("short", lambda ctx: 1, owner="forged-12", lane="short", limited=True).wait(5)
    finally:
        release.set()
    assert lecturers.wait(5) and lecturers.result == "demo"


def test_the_lecturer_cancels_any_job_and_pauses_visitors_training():
    runner = JobRunner(workers={"long": 1, "short": 1})
    running_fn, release = gate()
    try:
        running = runner.submit("visitor-training", running_fn, owner="alice", lane="long", limited=True)
        queued = runner.submit("visitor-attack", lambda ctx: "never", owner="bob", lane="long", limited=True)
        while running.status != "running":
            time.sleep(0.01)
        assert not runner.cancel(running, "lecturer")  # a plain cancel is per requester
        assert (runner.cancel_all(queued) and queued.status == "cancelled"
                and queued.error == "cancelled by the lecturer")
        assert runner.cancel_all(running) and running.wait(5)
        assert running.status == "cancelled" and running.error == "cancelled by the lecturer"
        assert not runner.cancel_all(running)  # finished already
        again = runner.submit("visitor-training", lambda ctx: "anew", owner="alice", lane="long", limited=True)
        assert again is not running and again.wait(5) and again.result == "anew"
        runner.pause_visitors("long")
        with pytest.raises(QuotaExceeded, match="paused"):
            runner.submit("visitor-2", lambda ctx: 0, owner="alice", lane="long", limited=True)
        assert runner.submit("lecturer-2", lambda ctx: 2, owner="lecturer", lane="long").wait(5)
        assert runner.submit("morph", lambda ctx: 3, owner="alice", lane="short", limited=True).wait(5)
        runner.pause_visitors("long", False)
        assert runner.submit("visitor-2", lambda ctx: 4, owner="alice", lane="long", limited=True).wait(5)
    finally:
        release.set()


# ---- one click, hours: image caps at submit, not only in the widget -------------------------------------------------
def test_attack_work_is_capped_for_visitors_only():
    for kind in ("minimal_eps", "adversarial_inputs"):
        assert "at most 1,000 images" in work_error(Work(kind, images=10000, attack="pgd"), lecture=True,
                                                    lecturer=False)
        assert work_error(Work(kind, images=10000, attack="pgd"), lecture=True, lecturer=True) is None
        assert work_error(Work(kind, images=10000, attack="pgd"), lecture=False, lecturer=False) is None
    default_strength = Work("minimal_eps", images=500, attack="pgd", params={"steps": 40})
    assert work_error(default_strength, lecture=True, lecturer=False) is None
    assert "steps 1000 (at most 40)" in work_error(Work("minimal_eps", images=500, attack="pgd",
                                                        params={"steps": 1000}),
                                                   lecture=True, lecturer=False)
    assert "at most 200 images" in work_error(Work("autoattack", images=500, attack="autoattack_standard"),
                                              lecture=True, lecturer=False)
    assert work_error(Work("autoattack", images=200, attack="autoattack_standard"), lecture=True,
                      lecturer=False) is None


def test_a_visitor_s_morph_is_capped_at_the_page_s_heaviest_default():
    from robust_core.classviz import RECIPES

    smoothed = RECIPES["smoothed"]
    heaviest_default = Work("morph", params={"gradients": smoothed["steps"] * smoothed["noise_samples"] * 10})
    assert work_error(heaviest_default, lecture=True, lecturer=False) is None  # the lecture path's morph passes
    widgets_maximum = Work("morph", params={"gradients": 2000 * 64 * 10})
    assert "at most 32,000 image-gradients" in work_error(widgets_maximum, lecture=True, lecturer=False)
    assert work_error(widgets_maximum, lecture=True, lecturer=True) is None
    assert work_error(widgets_maximum, lecture=False, lecturer=False) is None


def test_the_attack_page_refuses_a_visitor_s_big_computations_at_submit(lecture, busy_server, mnist):
    store, lecturers = lecture
    more = [store.save(train_model(TrainConfig(train_subset=500, epochs=1, batch_size=64, seed=s), data=mnist),
                       name=f"model {s}").model_id for s in (3, 4)]
    models = ",".join([lecturers.model_id, *more])
    # 2,000 images of a curve, 500 of AutoAttack standard, chosen and clicked in one message: nothing queued, the
    # buttons disabled and saying why.
    at = session("lab_pages/attack.py", "student-big", query={"models": models, "n": "100"})
    widget(at.selectbox, "Test images").select(2000)
    [b for b in at.button if b.label.startswith("Compute (")][0].click().run()
    assert not at.exception and not visitors_jobs(busy_server, "student-big")
    assert [b for b in at.button if b.label.startswith("Compute (")][0].disabled
    assert any("at most 1,000 images" in c.value for c in at.caption)
    at = session("lab_pages/attack.py", "student-big", query={"models": lecturers.model_id, "n": "100"})
    widget(at.selectbox, "Test images").select(500)
    [b for b in at.button if b.label.startswith("Run AutoAttack standard")][0].click().run()
    assert not at.exception and not visitors_jobs(busy_server, "student-big")
    [run] = [b for b in at.button if b.label.startswith("Run AutoAttack standard")]
    assert run.disabled and "AutoAttack on at most 200 images" in run.proto.help
    # Within the caps, three models' curves: two are queued, the third is refused with what to do.
    at = session("lab_pages/attack.py", "student-big", query={"models": models, "n": "100"})
    [b for b in at.button if b.label.startswith("Compute (")][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(visitors_jobs(busy_server, "student-big")) == 2
    assert any("You already have 2 jobs" in w.value for w in at.warning)


# ---- the Confidence page's attacks run in the runner ----------------------------------------------------------------
def test_confidence_s_adversarial_inputs_are_a_job_of_the_runner_with_the_visitors_cap(lecture, busy_server):
    store, lecturers = lecture
    query = {"models": lecturers.model_id, "inputs": "adversarial", "attack": "pgd", "n": "500"}
    at = session("lab_pages/confidence.py", "student-conf", query=query)
    [job] = visitors_jobs(busy_server, "student-conf")
    assert job.key.startswith("confidence-adversarial:") and job.lane == "long" and job.status == "queued"
    assert any("in the server's queue" in c.value for c in at.caption) and not at.dataframe  # nothing in the session
    # A second visitor asking the same joins the same job.
    session("lab_pages/confidence.py", "student-conf-2", query=query)
    assert job.owners == [visitor_id("student-conf"), visitor_id("student-conf-2")]
    # 2,000 attacked images are beyond a visitor's cap: refused before anything is queued.
    at = session("lab_pages/confidence.py", "student-conf-3", query={**query, "n": "2000"})
    assert (any("at most 1,000 images" in w.value for w in at.warning)
            and not visitors_jobs(busy_server, "student-conf-3"))


# ---- the lecturer's view of the room ----------------------------------------------------------------------------
def test_the_lecturer_sees_every_job_cancels_a_visitor_s_and_pauses_visitors_training(lecture, busy_server):
    label = "![t](http://127.0.0.1:8699/track.png) **bold**"
    job = busy_server.submit(f"visitor-job-{uuid.uuid4().hex}", lambda ctx: 0, owner=visitor_id("student-room"),
                             label=label, lane="long", limited=True)
    visitor = session("lab_pages/models.py", "student-room")
    assert not [t for t in visitor.toggle if t.label == "Pause visitors' training"]  # the room is the lecturer's
    at = session("lab_pages/models.py", "lecturer-browser", lecturer=True)
    texts = [t.value for t in at.text]
    assert label in texts and f"visitor {visitor_id('student-room')[:6]}" in texts  # plain text, as typed
    at.button(key=f"room_cancel_{job.number}").click().run()
    assert job.status == "cancelled" and job.error == "cancelled by the lecturer"
    widget(at.toggle, "Pause visitors' training").set_value(True).run()
    assert busy_server.visitors_paused("long")
    student = session("lab_pages/train.py", "student-room")
    widget(student.selectbox, "Training images").select(1000)
    widget(student.number_input, "Epochs").set_value(1).run()
    widget(student.button, "Train").click().run()
    assert any("paused" in w.value for w in student.warning) and not visitors_jobs(busy_server, "student-room")
    at.run()
    assert widget(at.toggle, "Pause visitors' training").value  # the switch shows the server's state
    widget(at.toggle, "Pause visitors' training").set_value(False).run()
    assert not busy_server.visitors_paused("long")


# ---- free-form torchvision names ----------------------------------------------------------------------------------
def test_an_unknown_or_unavailable_torchvision_name_is_refused_before_anything_is_built(monkeypatch, tmp_path):
    import torchvision

    from robust_core.imagenet.models import (
        WeightsNotAvailable,
        is_torchvision_name,
        load_imagenet_model,
    )

    def never(*args, **kwargs):
        raise AssertionError("an architecture was built")
    monkeypatch.setattr(torchvision.models, "get_model", never)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights
    assert is_torchvision_name("vit_l_16") and not is_torchvision_name("__import__('os')")
    with pytest.raises(ValueError, match="unknown ImageNet model"):
        load_imagenet_model("vit_l_17", device="cpu")
    with pytest.raises(WeightsNotAvailable):  # offline, no weights: refused before the 1 GB architecture
        load_imagenet_model("vit_l_16", device="cpu")


@pytest.mark.parametrize("lecture_mode", [True, False])
def test_the_photo_pages_take_a_typed_network_name_only_from_whom_they_may(lecture_mode, monkeypatch, tmp_path):
    import torchvision

    def never(*args, **kwargs):
        raise AssertionError("an architecture was built")
    monkeypatch.setattr(torchvision.models, "get_model", never)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    if lecture_mode:
        monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["dataset"] = "imagenet"
    at.session_state["imagenet_model"] = "other"
    at.session_state["imagenet_other"] = "vit_l_16" if lecture_mode else "not_a_network"
    at.run()
    assert widget(at.sidebar.text_input, "torchvision model name").disabled is lecture_mode
    at.switch_page("lab_pages/saliency.py").run()
    assert not at.exception, [e.value for e in at.exception]
    if lecture_mode:
        assert any("the lecturer's choice" in i.value for i in at.info)
    else:
        assert any("not the name of a torchvision classification model" in e.value for e in at.error)


def test_a_deep_mlp_of_tiny_layers_is_refused_for_visitors():
    """A curious student's finding: 20,000 one-unit layers passed the size, memory and FLOP caps, and took 2.5 s a
    batch (a per-layer overhead that FLOPs do not count)."""
    deep = TrainConfig(dataset="mnist", arch="mlp", train_subset=1000, epochs=1,
                       arch_kwargs={"hidden": [1] * 20_000, "activation": "relu"})
    refusal = work_error(Work("training", config=deep), lecture=True, lecturer=False)
    assert refusal and "hidden layers" in refusal
    assert work_error(Work("training", config=deep), lecture=True, lecturer=True) is None
    two = TrainConfig(dataset="mnist", arch="mlp", train_subset=1000, epochs=1,
                      arch_kwargs={"hidden": [512, 256], "activation": "relu"})
    assert work_error(Work("training", config=two), lecture=True, lecturer=False) is None
