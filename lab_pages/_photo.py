"""The parts the "ImageNet photos" views share (lab_pages/photo_views.py): the network and its sidebar picker, the photo
and class pickers, the top-5 and perturbation displays, the "run on click" gate (asked_for), and the view's state in
the address."""
from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st
import torch

from lab_pages._audience import current_visitor
from lab_pages._jobs import job_runner
from lab_pages._audience import in_lecture_mode
from lab_pages._resources import IMAGENET
from lab_pages._text import plain
from lab_pages._url import drop_params, set_url, url_choice, url_number, url_state
from robust_core.imagenet.fool import scaled_change
from robust_core.imagenet.models import (
    IMAGENET_MODELS,
    MAX_WEIGHTS_FILE_BYTES,
    WeightsNotAvailable,
    imagenet_class_names,
    is_torchvision_name,
    load_imagenet_model,
    save_weights_file,
    suggested_steps,
)
from robust_core.imagenet.photos import (
    MAX_UPLOAD_BYTES,
    PhotoError,
    load_photo,
    load_shipped_photo,
    shipped_photos,
)

MODEL_KEY = "imagenet_model"
MAX_WEIGHTS_BYTES = MAX_WEIGHTS_FILE_BYTES  # VGG16's weights are 528 MB; .streamlit/config.toml's maxUploadSize fits it
DEFAULT_TARGET = 6  # "stingray": the cat photo's default target ("make the cat a stingray")
DEFAULT_NETWORK = "efficientnet_lite0"
# The digit page's default rows: the four a lecture compares first, about a second on EfficientNet-Lite0.
DEFAULT_METHODS = ("saliency", "integrated_gradients", "smoothgrad", "grad_cam")


# ---- the network ---------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the ImageNet network…", max_entries=4)
def _network(name: str, weights_path: str | None):
    return load_imagenet_model(name, weights=weights_path)


def model_sidebar() -> None:
    """The sidebar's network picker for photos: the offline EfficientNet-Lite0, the listed torchvision networks (any
    other by name), and a weights file of one's own (the lecturer's only, in lecture mode)."""
    choices = list(IMAGENET_MODELS) + ["other"]
    url_choice(MODEL_KEY, "net", choices, DEFAULT_NETWORK)
    # A typed name from a link only when it names a torchvision model (a lookup, nothing built); network() still
    # refuses it to a lecture's visitor.
    url_state("imagenet_other", "other", _linked_other_name, lambda v: True)
    name = st.selectbox("Network", choices, key=MODEL_KEY,
                        format_func=lambda n: (IMAGENET_MODELS[n].title if n in IMAGENET_MODELS
                                               else "Another torchvision model…"),
                        help="EfficientNet-Lite0 works offline (its weights come with the lab). The others are "
                             "downloaded once by torchvision into the torch cache.")
    if name == "other":
        own = not in_lecture_mode() or current_visitor().lecturer
        st.text_input("torchvision model name", key="imagenet_other", placeholder="e.g. mobilenet_v3_small",
                      disabled=not own,
                      help=None if own else "Lecture mode: another network is the lecturer's choice (it may mean a "
                                            "download of gigabytes); pick one of the list.")
    with st.expander("Your own weights file"):
        allowed = not in_lecture_mode() or current_visitor().lecturer
        upload = st.file_uploader("Weights (.safetensors or .pth)", type=["safetensors", "pth", "pt"],
                                  key="imagenet_weights",
                                  # the browser refuses more, before sending
                                  max_upload_size=MAX_WEIGHTS_BYTES // 2**20,
                                  disabled=not allowed,
                                  help="For the architecture chosen above. A .pth file is read with weights_only=True: "
                                       "a file that would run code is refused."
                                       + ("" if allowed else " Lecture mode: the lecturer's only."))
        if upload is not None and upload.size > MAX_WEIGHTS_BYTES:
            st.error(f"{plain(upload.name)} is {upload.size / 2**20:.0f} MB; the limit is "
                     f"{MAX_WEIGHTS_BYTES / 2**20:.0f} MB.")
        elif upload is not None:
            st.caption(f"Using {plain(upload.name)}.")


def _linked_other_name() -> str:
    name = st.query_params.get("other", "").strip()
    return name if is_torchvision_name(name) else ""


def _weights_file() -> str | None:
    """The uploaded weights, saved once under the store by content hash (the loader reads files, never pickles)."""
    upload = st.session_state.get("imagenet_weights")
    # Checked here, not only by the widget: a disabled uploader is the browser's, and the server holds what it is sent.
    if upload is None or upload.size > MAX_WEIGHTS_BYTES or (in_lecture_mode() and not current_visitor().lecturer):
        return None
    saved = st.session_state.get("_imagenet_weights_saved")
    if saved and saved[0] == upload.file_id:  # hashed and checked already: not again at every rerun (VGG16: 528 MB)
        return saved[1]
    from robust_core.store import resolve_store_dir

    path = save_weights_file(upload.getvalue(), file_name=upload.name, folder=resolve_store_dir() / "imagenet_weights")
    st.session_state["_imagenet_weights_saved"] = (upload.file_id, str(path))
    return str(path)


def network():
    """The chosen ImageNet network, or a clear message in the page (and the page stops) when it cannot be loaded."""
    name = st.session_state.get(MODEL_KEY, DEFAULT_NETWORK)
    if name == "other":
        # Checked here, not only by the disabled field: a typed name reaches no builder unless it may.
        if in_lecture_mode() and not current_visitor().lecturer:
            st.info("Lecture mode: another torchvision network is the lecturer's choice; pick one of the list in the "
                    "sidebar.", icon=":material/co_present:")
            st.stop()
        name = (st.session_state.get("imagenet_other") or "").strip()
        if not name:
            st.info("Type a torchvision model name in the sidebar (for example `mobilenet_v3_small`).",
                    icon=":material/info:")
            st.stop()
        if name not in IMAGENET_MODELS and not is_torchvision_name(name):  # a registry lookup: nothing built yet
            st.error("This is not the name of a torchvision classification model (for example `mobilenet_v3_small` or "
                     "`resnet50`): nothing was loaded.", icon=":material/error:")
            st.stop()
    try:
        return _network(name, _weights_file())
    except WeightsNotAvailable as exc:
        st.error(f"**The {plain(name)} weights are not available.**\n\n{exc}", icon=":material/cloud_off:")
    except ValueError as exc:
        st.error(f"**This network cannot be loaded.** {plain(exc)}", icon=":material/error:")
    st.stop()


# ---- the photo -----------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=8)
def shipped_photo(name: str) -> torch.Tensor:
    return load_shipped_photo(name)


def _bind_photo(key: str) -> None:
    """The picker's two widgets from one parameter: ``?photo=<shipped name>`` or ``?photo=upload``."""
    photos = shipped_photos()
    source_key, name_key = f"{key}_source", f"{key}_photo"

    def read_source() -> str:
        raw = st.query_params.get("photo")
        if raw in photos:
            st.session_state[name_key] = raw  # its selectbox is drawn after this, so it may be set here
            return "shipped"
        return "upload" if raw == "upload" else "shipped"

    url_state(source_key, "photo", read_source, lambda v: v in ("shipped", "upload"))
    if st.session_state.get(name_key) not in photos:
        st.session_state[name_key] = next(iter(photos))


def photo_param(key: str) -> str:
    """The picker's state as the address holds it: the shipped photo's name, or "upload" (an upload has no link)."""
    if st.session_state.get(f"{key}_source") == "upload":
        return "upload"
    return st.session_state.get(f"{key}_photo", "")


def photo_picker(container, *, key: str) -> tuple[torch.Tensor | None, str, list[int]]:
    """A shipped photo (with its licence) or an upload. Returns (photo (1, 3, H, W) or None, its name, the ImageNet
    classes that count as right for it: none for an upload)."""
    photos = shipped_photos()
    _bind_photo(key)
    c1, c2 = container.columns([2, 3])
    source = c1.radio("Photo", ["shipped", "upload"], key=f"{key}_source", horizontal=True,
                      format_func={"shipped": "A shipped photo", "upload": "Upload your own"}.get)
    if source == "shipped":
        name = c2.selectbox("Shipped photo", list(photos), key=f"{key}_photo", format_func=lambda n: photos[n].title)
        info = photos[name]
        c2.caption(f"{info.title}: {info.author}, {info.licence.split(':')[0]} (scikit-image sample data).")
        return shipped_photo(name), info.title, list(info.classes)
    upload = c2.file_uploader("JPEG, PNG or WebP", type=["jpg", "jpeg", "png", "webp"], key=f"{key}_upload",
                              max_upload_size=MAX_UPLOAD_BYTES // 2**20,
                              help=f"At most {MAX_UPLOAD_BYTES // 2**20} MB. The photo is resized so its shorter side "
                                   "is 256 px.")
    if upload is None:
        return None, "", []
    if upload.size > MAX_UPLOAD_BYTES:
        c2.error(f"{plain(upload.name)} is {upload.size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB.")
        return None, "", []
    try:
        return load_photo(upload.getvalue()), upload.name, []
    except PhotoError as exc:
        c2.error(f"{plain(upload.name)}: {plain(exc)}")
        return None, "", []


def class_picker(container, label: str, *, key: str, default: int = DEFAULT_TARGET, url: str | None = None) -> int:
    """A searchable selectbox over the 1,000 ImageNet classes (type to filter); its value from ``?<url>=`` if given."""
    names = imagenet_class_names()
    if url:
        url_number(key, url, 0, len(names) - 1, default)
    elif key not in st.session_state:
        st.session_state[key] = default
    return container.selectbox(label, range(len(names)), key=key, format_func=lambda c: f"{names[c]} ({c})")


def top5_text(rows: list[tuple[int, str, float]], *, right: list[int] = (), mark: int | None = None) -> str:
    """Markdown of a top-5: the classes that count as right in green, ``mark`` (a target) in bold."""
    out = []
    for index, name, p in rows:
        text = f"{name} {100 * p:.1f}%"
        if index in right:
            text = f":green[{text}]"
        if index == mark:
            text = f"**{text}**"
        out.append(text)
    return " · ".join(out)


def to_image(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) tensor in [0, 1] -> (H, W, 3) array for st.image."""
    x = x[0] if x.dim() == 4 else x
    return x.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()


def perturbation_scaled(delta: torch.Tensor) -> tuple[np.ndarray, float]:
    """The perturbation around grey, its largest |change| at full contrast (:func:`scaled_change`), and the factor."""
    image, factor = scaled_change(delta)
    return to_image(image), factor


def adapted_steps(model, requested: int, *, what: str = "") -> int:
    """:func:`suggested_steps` for this model, saying so on the page when it chose fewer than ``requested``."""
    steps = suggested_steps(model, requested)
    if steps < requested:
        cost = model.gflops / IMAGENET_MODELS["efficientnet_lite0"].gflops
        st.caption(f"{model.title} costs {cost:.0f}× EfficientNet-Lite0 "
                   f"per step on CPU: {what}{steps} steps instead of {requested}.")
    return steps


def digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.cpu().numpy().tobytes() if torch.is_tensor(part) else repr(part).encode())
    return h.hexdigest()[:24]



def asked_for(key: str, *, view: str, button: str, what: str, icon: str) -> bool:
    """Whether the heavy part of ``view`` runs for ``key``: its button was pressed for these settings, or the runner
    already holds this key's job (a link to a computed view opens on its result). Else a caption says what the
    button would do. Opening a view costs one forward pass; the work waits for the visitor."""
    pressed = st.button(button, type="primary", icon=icon, key=f"{view}_run")
    if pressed:
        st.session_state[f"{view}_key"] = key
    if st.session_state.get(f"{view}_key") == key or job_runner().get(key) is not None:
        return True
    st.caption(f"Press **{button}** to {what}.")
    return False


def write_url(**view) -> None:
    """The view's state into the address, with the source and the network (a reload lands on this photo view) and
    nothing left of another view's state."""
    name = st.session_state.get(MODEL_KEY, DEFAULT_NETWORK)
    state = {"dataset": IMAGENET, "net": name, **view}
    other = (st.session_state.get("imagenet_other") or "").strip()
    if name == "other" and other:
        state["other"] = other
    set_url(**state)
    drop_params(keep=state)


def show_photo(x: torch.Tensor, top: list, *, right: list[int], mark: int | None = None, what: str) -> None:
    """The photo and the network's top 5 at once: what the page shows before any work is asked for."""
    left, right_col = st.columns([1, 3], vertical_alignment="center")
    left.image(to_image(x), width=200)
    right_col.markdown(f"**{plain(what)}** reads · " + top5_text(top, right=right, mark=mark))
    if right:
        right_col.caption("Green: a class that counts as right for this photo.")
