"""Home page: what the lab is, and the lecture paths (assets/lectures/*.toml), each opening a page in a prepared
state."""
import streamlit as st

from lab_pages._resources import get_store
from robust_core.lectures import lecture_paths

# The page file each lecture path's "page" names (its URL path in app.py's navigation).
PAGE_FILES = {"attack": "lab_pages/attack.py", "classviz": "lab_pages/classviz.py", "saliency": "lab_pages/saliency.py",
              "confidence": "lab_pages/confidence.py", "train": "lab_pages/train.py", "models": "lab_pages/models.py"}

st.title("Robustness Lab")
st.markdown(
    "How easily is a classifier fooled, and what does it look at? **Attack** shipped MNIST networks (standard, "
    "adversarially trained, DeepDefense/GFA), see **where they look**, **morph** a digit, and check whether a defence "
    "is robust or only **masks its gradients**. Nothing to train before a lecture:")

paths, errors = lecture_paths()
store_ids = {e.model_id for e in get_store().list()}
# Six cards on the first screen of a 1280x720 projector: three a row, the title (the link) above the promise.
st.html("<style>.st-key-lecture_cards [data-testid='stCaptionContainer'] { font-size: 0.8rem; line-height: 1.35; }"
        ".st-key-lecture_cards [data-testid='stPageLink-NavLink'] p "
        "{ font-weight: 600; white-space: normal; line-height: 1.3; }"
        "</style>")
with st.container(key="lecture_cards"):
    columns = st.columns(3)
    for i, path in enumerate(paths):
        with columns[i % 3].container(border=True, height="stretch", key=f"lecture_card_{i}"):
            # The title is the link: a separate "Open" beside it would get a quarter of a card, and be cut to "Ope".
            st.page_link(PAGE_FILES[path.page], label=path.title, icon=path.icon, query_params=path.params)
            st.caption(path.summary)
            wanted = [m for m in path.params.get("models", "").split(",") if m]
            missing = [m for m in wanted if m not in store_ids]
            if missing:
                st.caption(f":material/warning: {len(missing)} of its models are not in the store (deleted?): the page "
                           "opens with the models it has.")
for message in errors:
    st.warning(f"A lecture path could not be read: {message}", icon=":material/warning:")
st.caption("Each path is a file in `assets/lectures/` (a title, a summary, a page and its URL parameters): add one "
           "for your own lecture. Every page keeps its main settings in its address, so any view is a link to share.")
st.page_link("lab_pages/challenges.py", icon=":material/emoji_events:",
             label="Live class challenges: fool a network by hand, guess a measured ε, draw a digit that splits two "
                   "networks; the room plays on its laptops, the projector shows the board")
