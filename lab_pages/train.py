"""Train page: configure, train with live curves, stop, and compare stored models."""
import streamlit as st

from lab_pages._audience import current_visitor
from lab_pages._jobs import job_runner, submit_job, visitor_work_error
from lab_pages._analysis import default_candidates, model_labels
from lab_pages._audience import in_lecture_mode
from lab_pages._layout import photos_not_here, show_chart
from lab_pages._resources import current_dataset, get_dataset, get_store
from lab_pages._text import format_duration, format_percent, plain
from robust_core.access import Work, model_owner
from robust_core.data import DATASETS
from robust_core.models import ACTIVATIONS, ARCHITECTURES
from robust_core.plots import training_curves_figure
from robust_core.store import StoreError, record_training_request
from robust_core.training import (
    METHOD_TITLES,
    METHODS,
    OPTIMIZERS,
    SCHEDULES,
    TRAINING_METHODS,
    TrainConfig,
)

# Seconds between two redraws of the progress and live chart (a fragment of the page): a redraw costs a few ms of
# CPU that training wants.
CHART_REFRESH_S = 1.0

photos_not_here("Train")
st.title("Train a model")
dataset = current_dataset()
store = get_store()
defaults = TrainConfig()

with st.container(border=True):
    col_arch, col_method, col_opt = st.columns(3)
    arch = col_arch.selectbox("Architecture", list(ARCHITECTURES), format_func=lambda a: ARCHITECTURES[a].title)
    col_arch.caption(ARCHITECTURES[arch].description)
    is_network = ARCHITECTURES[arch].kind == "torch"
    method = col_method.selectbox("Training method", list(TRAINING_METHODS),
                                  format_func=lambda m: METHOD_TITLES.get(m, m), disabled=not is_network)
    optimizer = col_opt.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(defaults.optimizer),
                                  disabled=not is_network,
                                  format_func={"adam": "Adam", "sgd": "SGD",
                                               "sgd_momentum": "SGD + Nesterov momentum"}.get)

    arch_kwargs: dict = {}
    if arch == "mlp":
        c1, c2 = st.columns(2)
        hidden_text = c1.text_input("Hidden layer sizes", "512, 256", max_chars=1000,
                                    help="Comma-separated widths, e.g. 256 or 512, 256")
        hidden_text = hidden_text[:1000]  # (max_chars is the browser's; a forged message is cut here)
        activation = c2.selectbox("Activation", list(ACTIVATIONS))
        try:
            arch_kwargs = {"hidden": [int(v) for v in hidden_text.replace(" ", "").split(",") if v],
                           "activation": activation}
            if not arch_kwargs["hidden"] or min(arch_kwargs["hidden"]) < 1 or max(arch_kwargs["hidden"]) > 8192:
                raise ValueError
        except ValueError:
            st.error("Hidden layer sizes must be whole numbers between 1 and 8192, separated by commas.")
            st.stop()
    elif arch in ("wrn_16_4", "wrn_28_10"):
        # The registry's defaults give an empty arch_kwargs: the same configuration, hence id, as the command line's.
        fixed = ARCHITECTURES[arch].fixed_kwargs
        c1, c2 = st.columns(2)
        depths = [10, 16, 22, 28, 34, 40]
        depth = c1.selectbox("Depth (6n + 4 layers)", depths, index=depths.index(fixed["depth"]))
        widen = int(c2.number_input("Widening factor", 1, 20, fixed["widen"],
                                    help="Channels of the three stages: 16, 32 and 64 times this."))
        arch_kwargs = {} if (depth, widen) == (fixed["depth"], fixed["widen"]) else {"depth": depth, "widen": widen}
    elif arch == "preact_resnet18":
        width = st.selectbox("Width (channels of the first stage)", [16, 32, 64], index=2,
                             help="64 is He et al.'s network (11.2 M parameters); 16 has 16 times fewer.")
        arch_kwargs = {} if width == 64 else {"width": width}
    elif arch == "knn":
        arch_kwargs = {"k": st.number_input("k (neighbours)", 1, 50, 3)}
    elif arch == "logreg":
        arch_kwargs = {"C": st.number_input("C (inverse regularisation)", 1e-4, 1e4, 1.0, format="%.4f"),
                       "max_iter": st.number_input("Max iterations", 10, 5000, 100)}

    method_kwargs: dict = {}
    if is_network and method != "standard":
        spec = METHODS[method]
        st.caption(f"**{spec.title}** ({spec.paper}). "
                   + (spec.fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "))
        defaults_m = spec.defaults
        cols = st.columns(4)
        slot = iter(cols * 3)
        if "eps" in defaults_m:
            # The usual budgets: 0.3 on MNIST, 0.1 on Fashion-MNIST, 8/255 on CIFAR-10.
            usual_eps = {"mnist": 0.3, "fashion_mnist": 0.1,
                         "cifar10": round(8 / 255, 4)}.get(dataset, defaults_m["eps"])
            method_kwargs["eps"] = next(slot).number_input("ε (L∞, pixel scale 0–1)", 0.0, 1.0, usual_eps, step=0.01,
                                                            format="%.3f", help="0.3 on MNIST, 0.1 on Fashion-MNIST")
            method_kwargs["eps_ramp"] = next(slot).number_input(
                "ε ramp (share of training)", 0.0, 1.0, defaults_m["eps_ramp"], step=0.05,
                help="ε grows linearly from 0 over this share of the training steps; lets a small network learn "
                     "first.")
        if "steps" in defaults_m:
            method_kwargs["steps"] = next(slot).number_input("Attack steps", 1, 100, defaults_m["steps"])
        if "clean_weight" in defaults_m:
            method_kwargs["clean_weight"] = next(slot).number_input("Clean-loss weight", 0.0, 1.0,
                                                                    defaults_m["clean_weight"], step=0.1)
        if "beta" in defaults_m:
            method_kwargs["beta"] = next(slot).number_input("β (robustness weight)", 0.0, 100.0, defaults_m["beta"],
                                                             step=0.5)
        if "alpha" in defaults_m:
            method_kwargs["alpha"] = next(slot).number_input("Step (× ε)", 0.1, 4.0, defaults_m["alpha"], step=0.05)
        if "noise" in defaults_m:
            method_kwargs["noise"] = next(slot).number_input("Noise (× ε)", 0.0, 8.0, defaults_m["noise"], step=0.5)
        if "lam" in defaults_m:
            method_kwargs["lam"] = next(slot).number_input("λ (regulariser weight)", 0.0, 1e4, defaults_m["lam"],
                                                            step=0.5, format="%.3f")
        if "layers" in defaults_m:
            method_kwargs["layers"] = next(slot).selectbox("Aligned layers", ["deep", "first"],
                                                           help="first: the input only (FIRST); deep: the input and "
                                                                "every hidden block (DEEP)")
            method_kwargs["loss"] = next(slot).selectbox("Task loss", ["ce", "mse"],
                                                         format_func={"ce": "cross-entropy",
                                                                      "mse": "MSE on one-hot"}.get)
            method_kwargs["input_centre"] = next(slot).selectbox(
                "Input centre", ["model", "pm1"], format_func={"model": "dataset mean (model's normalisation)",
                                                               "pm1": "0.5 (inputs rescaled to [-1, 1])"}.get)
            method_kwargs["warmup_epochs"] = next(slot).number_input("Warm-up epochs (λ = 0)", 0, 100,
                                                                     defaults_m["warmup_epochs"])

    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", 1, 200, defaults.epochs, disabled=not is_network)
    batch_size = c2.number_input("Batch size", 1, 8192, defaults.batch_size, disabled=not is_network)
    lr = c3.number_input("Learning rate (peak)", 1e-6, 10.0, defaults.lr, format="%.5f", disabled=not is_network)
    schedule = c4.selectbox("LR schedule", SCHEDULES, index=SCHEDULES.index(defaults.schedule), disabled=not is_network,
                            help="onecycle: warm-up then cosine decay; step: ÷10 at 50% and 75%")
    c1, c2, c3, c4 = st.columns(4)
    weight_decay = c1.number_input("Weight decay", 0.0, 1.0, 0.0, format="%.5f", disabled=not is_network)
    dropout = c2.number_input("Dropout", 0.0, 0.95, 0.0, step=0.05, disabled=not is_network)
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0)
    subset_choice = c4.selectbox("Training images", ["all", 1000, 2000, 5000, 10000, 20000],
                                 help="A subset trains faster; the validation and test splits are always complete.")
    name = st.text_input("Name in the store (optional)", placeholder="e.g. my first CNN")

fields = dict(
    dataset=dataset, arch=arch, arch_kwargs=arch_kwargs, method=method, method_kwargs=method_kwargs,
    optimizer=optimizer, lr=float(lr),
    weight_decay=float(weight_decay), schedule=schedule, epochs=int(epochs), batch_size=int(batch_size),
    dropout=float(dropout), seed=int(seed), train_subset=None if subset_choice == "all" else int(subset_choice),
)
if not is_network:  # gradient-descent settings mean nothing to a fitted baseline: keep them out of its hash
    fields.update({k: getattr(defaults, k) for k in ("method", "method_kwargs", "optimizer", "lr", "weight_decay",
                                                      "schedule", "epochs", "batch_size", "dropout")})
try:
    config = TrainConfig(**fields)
except ValueError as exc:
    st.error(str(exc))
    st.stop()

model_id = config.config_hash()
already = model_id in store
if already:
    st.info(f"This exact configuration is already in the store as **{plain(store.get(model_id).name)}**: "
            "Train loads it instantly instead of training again.", icon=":material/save:")


visitor = current_visitor()
runner = job_runner()
# Lecture mode's limits and the machine's memory, from the configuration alone (nothing is built): said before the
# button is pressed, and checked again where the training is queued.
limits_error = None if already else visitor_work_error(Work("training", config=config))
if limits_error:
    st.warning(limits_error, icon=":material/co_present:")
name_error = None
if name.strip() and not already:  # a name that reads as another model's (a shipped one's look-alike): before training
    try:
        store.check_name(dataset, name)
    except StoreError as exc:
        name_error = str(exc)
        st.error(plain(name_error), icon=":material/badge:")
# This session's training request: a key of the server's job runner (the training runs there, not in this page).
mine = runner.get(st.session_state["train_job"]) if st.session_state.get("train_job") else None
busy = mine is not None and mine.status in ("queued", "running") and visitor.owner in mine.owners
train_clicked = st.button("Load" if already else "Train", type="primary", icon=":material/play_arrow:",
                          disabled=limits_error is not None or name_error is not None or busy,
                          help=("Your training is in the queue or running: stop it first to start another."
                                if busy else None))

if train_clicked and name_error is None:  # checked again here: a click can be forged past a disabled button
    data = get_dataset(dataset)
    if data is None:
        st.stop()
    if already:  # in the store: a load, instant, no queue
        entry = store.get(model_id)
        st.session_state["select_model_id"] = entry.model_id
        st.success(f"Loaded **{plain(entry.name)}** from the store (not retrained): test accuracy "
                   f"{format_percent(entry.meta['metrics']['test_acc'])}.", icon=":material/save:")
    else:
        # Into the server's one queue of long jobs: students training at once train one after the other (each at
        # full speed), two who ask for the same configuration share one training. The session's token marks the
        # model as this visitor's (lecture mode lets them rename or delete it).
        # The lecturer's models are recorded as the lecturer's, not this browser's (model_owner). Who shares the
        # training records their own name and owner: the model is saved with those of one still waiting for it.
        request = {"name": name or None, "extra_meta": {"owner": model_owner(visitor, lecture=in_lecture_mode())}}
        mine = submit_job(f"train:{store.root}:{model_id}", store.training_job(config, data=data, **request),
                          label=f"Training {ARCHITECTURES[arch].title}", lane="long",
                          work=Work("training", config=config))
        if mine is None:  # refused: submit_job said why
            st.stop()
        record_training_request(mine, visitor.owner, **request)
        st.session_state["train_job"], st.session_state["train_job_shown"] = mine.key, False
        st.rerun()  # redraw the form with Train disabled while this training is queued or running
busy = mine is not None and mine.status in ("queued", "running") and visitor.owner in mine.owners


def _progress_text(job) -> str:
    last = job.details.get("last")
    if job.status == "queued":
        ahead = runner.position(job)
        return f"Waiting for the server: {ahead - 1} training(s) ahead of yours." if ahead and ahead > 1 else \
            "Waiting for the server: the training in progress ends first."
    if not last:
        return "Starting…"
    return (f"Epoch {last['epoch']}/{last['epochs']} · batch {last['batch']}/{last['batches']} · "
            f"loss {last['loss']:.4f} · acc {format_percent(last['acc'])} · "
            f"elapsed {format_duration(last['elapsed_s'])} · ETA {format_duration(last['eta_s'])}")


@st.fragment(run_every=CHART_REFRESH_S)
def training_progress(job_key: str) -> None:
    """The running (or queued) training: progress, live curves, Stop; redrawn on its own, the page reruns at the end."""
    job = runner.get(job_key)
    if job is None or job.status not in ("queued", "running") or visitor.owner not in job.owners:
        st.rerun(scope="app")  # finished, or withdrawn: the page shows the outcome
    line, stop = st.columns([5, 1], vertical_alignment="center")
    line.progress(job.progress, text=_progress_text(job))
    stop.button("Stop", icon=":material/stop:", on_click=runner.cancel, args=(job, visitor.owner),
                help="Stops training between two batches; nothing is saved (unless another visitor asked for the "
                     "same model: then it goes on for them).")
    live = job.details.get("live")
    if live and live["batches"]:
        snapshot = {k: list(v) for k, v in live.items()}  # the worker thread appends while we draw
        show_chart(st, training_curves_figure({"live": snapshot}), key="live_curves")


if busy:
    training_progress(mine.key)
elif mine is not None and mine.status in ("queued", "running"):  # withdrawn by us, still wanted by another visitor
    st.info("You stopped your request; another visitor asked for the same model, so its training goes on for them. "
            "Nothing of yours is saved.", icon=":material/stop:")
elif mine is not None and (not st.session_state.get("train_job_shown") or mine.key.endswith(model_id)):
    # The outcome, shown once, and again while the form still describes that model.
    first_view = not st.session_state.get("train_job_shown")
    st.session_state["train_job_shown"] = True
    if mine.status == "done":
        entry = mine.result
        if first_view:
            st.session_state["select_model_id"] = entry.model_id  # the sidebar selects it on its next run
        st.success(f"Trained **{plain(entry.name)}** in {format_duration(entry.meta['wall_time_s'])}: test accuracy "
                   f"**{format_percent(entry.meta['metrics']['test_acc'])}**, saved to the store as "
                   f"`{entry.model_id}`.",
                   icon=":material/check_circle:")
        if entry.meta.get("history", {}).get("epoch"):
            show_chart(st, training_curves_figure({entry.name: entry.meta["history"]}), key="final_curves")
    elif mine.status == "cancelled" or visitor.owner not in mine.owners:
        last = mine.details.get("last")
        where = (f" at epoch {last['epoch']}/{last['epochs']}, batch {last['batch']}/{last['batches']}" if last
                 else " before it started")
        st.warning(f"Training stopped{where}. Nothing was saved.", icon=":material/stop:")
    else:  # failed: a NaN loss, bad settings, out of memory... The store is unchanged.
        st.error(f"Training failed: {plain(mine.error)}. Nothing was saved.", icon=":material/error:")

st.divider()
st.subheader("Compare training curves")
entries = [e for e in store.list(dataset) if e.meta.get("history", {}).get("epoch")]
if not entries:
    st.caption(f"No trained network for {DATASETS[dataset].title} yet.")
else:
    labels = model_labels(entries)
    names = {e.model_id: f"{labels[e.model_id]} ({format_percent(e.meta['metrics'].get('test_acc'))})" for e in entries}
    # The newest three, never another visitor's in lecture mode (a default is not the visitor's choice).
    chosen = st.multiselect("Models", list(names), default=[e.model_id for e in default_candidates(entries)][:3],
                            format_func=names.get)
    if chosen:
        show_chart(st, training_curves_figure({names[i]: store.get(i).meta["history"] for i in chosen}), key="compare")
        with st.expander("Configurations"):
            st.json({names[i]: store.get(i).meta["config"] for i in chosen}, expanded=False)
