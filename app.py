"""Robustness Lab: the dashboard's entry point. Run with `streamlit run app.py`."""
import streamlit as st

from lab_pages._audience import (
    accept_only_issued_uploads,
    error_details_for_the_audience,
    lecturer_sidebar,
    no_external_ip_lookup,
    only_offered_choices,
    remember_visitor,
)
from lab_pages._analysis import default_candidates, keep_model_choice, model_labels
from lab_pages._heap import count_run
from lab_pages._layout import presentation_sidebar, sidebar_state
from lab_pages._resources import IMAGENET, current_dataset, get_store, photo_source
from lab_pages._text import plain
from lab_pages.photo_views import model_sidebar
from robust_core.data import DATASETS
from robust_core.device import describe_device, get_device
from robust_core.store import InvalidCheckpointError

# An emoji, not ":material/shield:": a Material icon as favicon is fetched from fonts.gstatic.com (no internet in a
# lecture room).
st.set_page_config(page_title="Robustness Lab", page_icon="🛡️", layout="wide",
                   initial_sidebar_state=sidebar_state())
error_details_for_the_audience()
no_external_ip_lookup()
only_offered_choices()
accept_only_issued_uploads()

PAGES = [
    st.Page("lab_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("lab_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("lab_pages/attack.py", title="Attack", icon=":material/bolt:"),
    st.Page("lab_pages/saliency.py", title="Saliency", icon=":material/visibility:"),
    st.Page("lab_pages/classviz.py", title="Class Visualization", icon=":material/auto_fix_high:"),
    st.Page("lab_pages/confidence.py", title="Confidence", icon=":material/speed:"),
    st.Page("lab_pages/models.py", title="Models", icon=":material/inventory_2:"),
    st.Page("lab_pages/challenges.py", title="Challenges", icon=":material/emoji_events:"),
]
navigation = st.navigation(PAGES)

with st.sidebar:
    st.markdown("### :material/shield: Robustness Lab")
    names = [*DATASETS, IMAGENET]  # the digit datasets, then real photos on ImageNet networks
    # A link's ?dataset= (a lecture path, a shared view) switches the dataset once per new value; the page then
    # writes the dataset in use back into the address, so choosing another one here is not undone.
    linked = st.query_params.get("dataset")
    if linked in names and linked != st.session_state.get("_linked_dataset"):
        st.session_state["_linked_dataset"] = st.session_state["dataset"] = linked
    st.selectbox(
        "Dataset", names, key="dataset",
        **({} if "dataset" in st.session_state else {"index": names.index(current_dataset())}),
        format_func=lambda n: DATASETS[n].title if n in DATASETS else "ImageNet photos",
        help="Every page works on this dataset. CIFAR-10 is downloaded by torchvision on first use. ImageNet photos: "
             "real photos on pretrained ImageNet networks (Saliency, Attack, Class Visualization).",
    )
    entries = [] if photo_source() else get_store(report=False).list(st.session_state["dataset"])
    if photo_source():
        model_sidebar()
    elif entries:
        ids = [e.model_id for e in entries]
        labels = model_labels(entries)  # distinct labels: the browser sends the choice back as its label
        keep_model_choice("model_id", labels)  # after a rename, show the new name and keep the model
        # A page that just trained or imported a model asks for it here: a widget's key cannot be
        # set once the widget is drawn, so the request waits for the next run of this sidebar.
        requested = st.session_state.pop("select_model_id", None)
        if requested in ids:
            st.session_state["model_id"] = requested
        if st.session_state.get("model_id") not in ids:
            # First visit: start from the newest standard network (the shipped one on a fresh install),
            # the baseline every comparison is made against; the newest model of any kind otherwise. In lecture
            # mode never another visitor's: a student's newest model must not become the room's baseline.
            candidates = default_candidates(entries)
            standard = [e.model_id for e in candidates if e.meta["config"]["method"] == "standard"
                        and e.meta["config"]["arch"] not in ("logreg", "knn")]
            st.session_state["model_id"] = (standard or [e.model_id for e in candidates])[0]
        st.selectbox("Model", ids, key="model_id", format_func=labels.get,
                     help="The model the analysis pages start from.")
    else:
        st.caption("No trained model for this dataset yet: train one on the Train page.")
    presentation_sidebar()
    lecturer_sidebar()
    try:
        device_label = describe_device(get_device())
    except RuntimeError as exc:
        device_label = f":material/warning: {exc}"
    st.caption(f"Device: **{device_label}**")
    remember_visitor()  # the visitor's models stay theirs after a reload (lecture mode)

count_run()  # (lab_pages._heap: the shared heap kept out of full collections once the server is warm)
try:
    navigation.run()
except InvalidCheckpointError as exc:
    # A stored model passed the listing's checks but its tensors do not load: the store sets it aside from now on (it
    # joins the damaged entries), and the page says so instead of showing a traceback.
    st.error(f"{plain(exc)} The pages no longer offer it: open the page again to go on with the other models.",
             icon=":material/broken_image:")
