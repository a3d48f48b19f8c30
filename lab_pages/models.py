"""Models page: the store as a table; rename, delete, download and upload checkpoints."""
import re

import streamlit as st

from lab_pages._audience import current_visitor
from lab_pages._room import room_view
from lab_pages._analysis import keep_model_choice, model_labels
from lab_pages._audience import in_lecture_mode
from lab_pages._layout import photos_not_here, show_chart
from lab_pages._resources import get_store
from lab_pages._text import format_duration, format_percent, plain
from robust_core.access import can_modify
from robust_core.checkpoints import (
    MAX_CHECKPOINT_BYTES,
    REGISTRY_FACTORY,
    InvalidCheckpointError,
    StoreError,
)
from robust_core.data import DATASETS
from robust_core.models import ARCHITECTURES
from robust_core.plots import training_curves_figure

# Uploads larger than this are refused before parsing (the store's own cap): the biggest registry model is a few MB.
MAX_UPLOAD_MB = MAX_CHECKPOINT_BYTES // 2**20
MANAGED = "models_managed_id"  # the model "Manage a model" works on
CONFIRM = "models_confirm_delete"  # the delete confirmation's tick
CONFIRMED = "models_delete_confirmed_id"  # the model that tick confirmed


def architecture_of(config: dict) -> str:
    """The table's architecture: the registry's name, or for a network the lab did not train the code that builds it
    (a cell of a dataframe: plain text)."""
    if config["arch"] != "external":
        return config["arch"]
    factory = config["arch_kwargs"]["factory"]
    return config["arch_kwargs"]["kwargs"].get("arch", factory) if factory == REGISTRY_FACTORY else factory


def import_weights(store, upload, dataset: str, arch: str, kwargs_text: str):
    """(entry, was_new) for weights of a registry architecture, or InvalidCheckpointError saying what is wrong. The
    import checks run the network on 64 test images (a WRN-28-10 on a CPU: seconds), so it runs in the server's job
    runner, as all heavy work does; the page shows its progress and reruns when it is done."""
    import hashlib
    import json

    from lab_pages._jobs import run_job

    try:
        arch_kwargs = json.loads(kwargs_text or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidCheckpointError(f"The architecture arguments are not JSON ({exc.msg}).") from None
    if not isinstance(arch_kwargs, dict):
        raise InvalidCheckpointError("The architecture arguments are a JSON object, e.g. {\"widen\": 4}.")
    payload, file_name = upload.getvalue(), upload.name[:120]
    digest = hashlib.sha256(payload).hexdigest()[:16]
    key = f"import-weights:{digest}:{dataset}:{arch}:{json.dumps(arch_kwargs, sort_keys=True)}"

    def run(ctx):
        known = {e.model_id for e in store.list(dataset)}
        entry = store.import_weights(payload, arch=arch, dataset=dataset, arch_kwargs=arch_kwargs,
                                     file_name=file_name)
        return entry, entry.model_id not in known

    job = run_job(key, run, label=f"Checking and importing {file_name}")  # (stops the page until it is done)
    return job.result


def _record_confirmation(model_id: str) -> None:
    # Runs when the box is ticked or unticked, with the id of the model shown beside it.
    st.session_state[CONFIRMED] = model_id if st.session_state.get(CONFIRM) else None


def _delete(model_id: str, name: str) -> None:
    """The Delete button's action, with the id of the model it was drawn for. A callback runs before
    the next script run, so the sidebar of that run no longer lists the model."""
    confirmed = st.session_state.pop(CONFIRMED, None)
    st.session_state[CONFIRM] = False
    if not (confirmed == model_id == st.session_state.get(MANAGED)):
        st.session_state["models_flash"] = (
            "warning", "The selected model changed after the confirmation, so nothing was deleted. "
                       "Check the model and confirm again.")
        return
    try:
        # Checked again here, not only by the disabled button: the rule must hold whatever the browser sends.
        if not can_modify(get_store(report=False).get(model_id).meta, current_visitor(), lecture=in_lecture_mode())[0]:
            st.session_state["models_flash"] = ("error",
                                                "Lecture mode: this model cannot be deleted from this browser.")
            return
        get_store(report=False).delete(model_id)
    except KeyError:
        st.session_state["models_flash"] = ("warning",
                                            f"Model `{model_id}` is no longer in the store; nothing was deleted.")
    except StoreError as exc:  # damaged since the page was drawn
        st.session_state["models_flash"] = ("warning", f"{plain(exc)} Nothing was deleted.")
    else:
        st.session_state["models_flash"] = ("success", f"Deleted **{plain(name)}** (id `{model_id}`).")


def _remove_damaged(dataset: str, folder: str) -> None:
    """The Remove action of a damaged entry, checked again here: in lecture mode it is the lecturer's."""
    if in_lecture_mode() and not current_visitor().lecturer:
        st.session_state["models_flash"] = ("error", "Lecture mode: only the lecturer can remove a damaged entry.")
        return
    try:
        get_store(report=False).remove_damaged(dataset, folder)
    except StoreError as exc:
        st.session_state["models_flash"] = ("warning", plain(exc))
    else:
        st.session_state["models_flash"] = ("success", f"Removed the damaged entry {plain(dataset)} / {plain(folder)}.")


photos_not_here("Models")
st.title("Models")
room_view()  # lecture mode, the lecturer only: every job of the room, Cancel, pause visitors' training
store = get_store()
if not in_lecture_mode() or current_visitor().lecturer:  # a room's visitors see no path of the server's disk
    st.caption(f"Store folder: `{store.root}` (set `ROBUST_STORE_DIR` to move it)")

flash = st.session_state.pop("models_flash", None)
if flash:
    getattr(st, flash[0])(flash[1])

entries = store.list()
if not entries:
    st.info("The store is empty: train a model on the Train page, or upload a checkpoint below.",
            icon=":material/inventory_2:")
else:
    rows = [{
        "Name": e.name,
        "Dataset": (DATASETS[e.meta["config"]["dataset"]].title if e.meta["config"]["dataset"] in DATASETS
                    else e.meta["config"]["dataset"]),
        "Architecture": architecture_of(e.meta["config"]),
        "Method": ("not trained by the lab" if e.meta["config"]["method"] == "external"
                   else e.meta["config"]["method"]),
        "Clean test accuracy": e.meta.get("metrics", {}).get("test_acc"),
        "Input alignment": e.meta.get("metrics", {}).get("alignment_input"),
        "Parameters": e.meta.get("parameters"),
        "Training time": format_duration(e.meta.get("wall_time_s")),
        "Created": e.meta.get("created", "").replace("T", " ")[:16],
        "Id": e.model_id,
    } for e in entries]
    st.dataframe(
        rows, hide_index=True, width="stretch",
        column_config={
            "Clean test accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
            "Parameters": st.column_config.NumberColumn(format="localized"),
            "Input alignment": st.column_config.NumberColumn(
                format="%.2f",
                help="Mean |cos| between the loss gradient and the (centred) input on 2,000 test images: "
                     "what Gradient-Feature Alignment raises. 0 = tangential, 1 = radial."),
        },
    )

    st.subheader("Manage a model")
    ids = [e.model_id for e in entries]
    by_id = {e.model_id: e for e in entries}
    labels = model_labels(entries)
    # A keyed picker: it changes only when the user picks another model (an unkeyed one whose default
    # followed the sidebar became a new widget, showing another model, whenever the sidebar changed).
    keep_model_choice(MANAGED, labels)
    if st.session_state.get(MANAGED) not in ids:  # first visit, or the model was deleted
        st.session_state[MANAGED] = st.session_state["model_id"] if st.session_state.get("model_id") in ids else ids[0]
    chosen = st.selectbox("Model", ids, key=MANAGED, format_func=labels.get)
    entry = by_id[chosen]
    meta = entry.meta
    dataset = meta["config"]["dataset"]
    st.caption(f"Id `{chosen}` · {DATASETS[dataset].title if dataset in DATASETS else plain(dataset)} · "
               f"{plain(meta['config']['arch'])} · {plain(meta['config']['method'])}")

    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Clean test accuracy", format_percent(meta.get("metrics", {}).get("test_acc")))
    c2.metric("Validation accuracy", format_percent(meta.get("metrics", {}).get("val_acc")))
    c3.metric("Parameters", "—" if meta.get("parameters") is None else f"{meta['parameters']:,}",
              help="k-NN is non-parametric: it memorises the training images.")
    c4.metric("Training time", format_duration(meta.get("wall_time_s")))

    allowed, why = can_modify(meta, current_visitor(), lecture=in_lecture_mode())
    if not allowed:
        st.info(f"{why[0].upper()}{why[1:]}.", icon=":material/lock:")
    col_rename, col_download, col_delete = st.columns(3)
    with col_rename.form("rename", border=True):
        new_name = st.text_input("New name", value=entry.name, max_chars=120, disabled=not allowed)
        if st.form_submit_button("Rename", disabled=not allowed):
            try:
                if not can_modify(store.get(chosen).meta, current_visitor(), lecture=in_lecture_mode())[0]:
                    raise StoreError("In lecture mode this model cannot be renamed from this browser.")
                renamed = store.rename(chosen, new_name)
                st.session_state["models_flash"] = ("success", f"Renamed `{chosen}` to **{plain(renamed.name)}**.")
                st.rerun()  # the sidebar, drawn before this page, shows the new name on the rerun
            except StoreError as exc:
                st.error(plain(exc))
    with col_download.container(border=True):
        st.markdown("**Download**")
        st.caption("One .safetensors file with the weights and all metadata; upload it into any Robustness Lab.")
        filename = re.sub(r"[^A-Za-z0-9._-]+", "_", entry.name).strip("_") or chosen
        st.download_button("Download checkpoint", data=lambda: store.export_bytes(chosen),
                           file_name=f"{filename}.safetensors", mime="application/octet-stream",
                           icon=":material/download:", on_click="ignore")
    with col_delete.container(border=True):
        st.markdown("**Delete**")
        # The tick confirms the model shown beside it, by id: another selection withdraws it, and the
        # button deletes only that model, and only while it is still the one selected.
        if st.session_state.get(CONFIRM) and st.session_state.get(CONFIRMED) != chosen:
            st.session_state[CONFIRM] = False
        confirm = st.checkbox(f"Yes, delete “{plain(entry.name)}” from the store (id `{chosen}`)", key=CONFIRM,
                              on_change=_record_confirmation, args=(chosen,), disabled=not allowed)
        st.button("Delete", type="primary", disabled=not (confirm and allowed), icon=":material/delete:",
                  on_click=_delete, args=(chosen, entry.name))

    with st.expander("Training configuration and curves"):
        st.json(meta["config"], expanded=True)
        if meta.get("history", {}).get("epoch"):
            show_chart(st, training_curves_figure({entry.name: meta["history"]}), key="model_curves")
        st.caption("Library versions: "
                   + ", ".join(f"{plain(k)} {plain(v)}" for k, v in meta.get("versions", {}).items()))

damaged = store.damaged()
if damaged:
    st.subheader("Damaged entries")
    st.caption("These folders of the store hold no usable model, so the pages leave them out. Their files stay as "
               "they are until they are removed here (or repaired by hand).")
    may_remove = not in_lecture_mode() or current_visitor().lecturer
    for d in damaged:
        text, action = st.columns([5, 1], vertical_alignment="center")
        named = f" “{d.name}”" if d.name else ""
        text.text(f"{d.dataset} / {d.folder}{named}: {d.reason}")  # st.text: plain text, never Markdown
        with action.popover("Remove", icon=":material/delete:", disabled=not may_remove,
                            key=f"remove_damaged_popover:{d.dataset}/{d.folder}",
                            help=None if may_remove else "Lecture mode: the lecturer removes damaged entries."):
            st.caption("Delete this entry's folder and every file in it, for good.")
            st.button("Delete for good", key=f"remove_damaged:{d.dataset}/{d.folder}", type="primary",
                      on_click=_remove_damaged, args=(d.dataset, d.folder))

st.subheader("Upload a checkpoint")
uploads_allowed = not in_lecture_mode() or current_visitor().lecturer
if not uploads_allowed:
    st.caption(":material/lock: Lecture mode: uploads are the lecturer's.")
kind = st.radio("The file is", ["checkpoint", "weights"], horizontal=True, disabled=not uploads_allowed,
                format_func={"checkpoint": "a Robustness Lab checkpoint",
                             "weights": "weights trained elsewhere for an architecture of the lab"}.get,
                help="Weights: a .safetensors state dict of one of the lab's architectures (PreAct ResNet-18, the "
                     "WideResNets, the CNNs, the MLP), trained with other code. A network of your own code is "
                     "imported on the command line (python -m robust_core.evaluate --model-factory …), where that "
                     "code is: the dashboard never runs code a file names.")
weights_choice = None
if kind == "weights":
    networks_of_lab = [a for a, spec in ARCHITECTURES.items() if spec.kind == "torch"]
    c1, c2, c3 = st.columns([2, 2, 3])
    weights_dataset = c1.selectbox("Dataset", list(DATASETS), format_func=lambda d: DATASETS[d].title,
                                   disabled=not uploads_allowed)
    weights_arch = c2.selectbox("Architecture", networks_of_lab, format_func=lambda a: ARCHITECTURES[a].title,
                                disabled=not uploads_allowed)
    weights_kwargs = c3.text_input("Architecture arguments (JSON)", "{}", max_chars=500, disabled=not uploads_allowed,
                                   help='e.g. {"depth": 16, "widen": 8} for a WideResNet, {"hidden": [256]} for '
                                        "the MLP")
    weights_choice = (weights_dataset, weights_arch, weights_kwargs)
upload = st.file_uploader("A .safetensors file exported from Robustness Lab" if kind == "checkpoint"
                          else "A .safetensors state dict", type=["safetensors"], disabled=not uploads_allowed,
                          max_upload_size=MAX_UPLOAD_MB,  # the browser refuses more, before sending
                          help=f"At most {MAX_UPLOAD_MB} MB. The file is validated before anything is written.",
                          key=f"upload_{kind}")
if upload is not None and uploads_allowed:
    # Checked here, not only by the widget: the server holds whatever a client sends.
    if upload.size > MAX_UPLOAD_MB * 2**20:
        st.error(f"The file is {upload.size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB. Nothing was changed.")
    else:
        try:
            if weights_choice is None:
                imported, was_new = store.import_bytes(upload.getvalue())
            else:
                imported, was_new = import_weights(store, upload, *weights_choice)
        except InvalidCheckpointError as exc:
            st.error(f"**{plain(upload.name)} was not imported.** {plain(exc)} Nothing in the store was changed.")
        else:
            st.session_state["select_model_id"] = imported.model_id
            if was_new:
                st.success(f"Imported **{plain(imported.name)}** into the store.")
                for note in imported.meta.get("external", {}).get("checks", {}).get("warnings", []):
                    st.warning(f"Import check: {plain(note)}", icon=":material/fact_check:")
            else:
                st.info(f"This model is already in the store as **{plain(imported.name)}**; nothing was changed.")
