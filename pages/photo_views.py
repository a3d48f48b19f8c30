"""The "ImageNet photos" source (seed 004): the Saliency, Attack and Class Visualization pages on real photos.

Each page calls its view here when the sidebar's source is ImageNet photos; the computations are the library's
(robust_core.saliency.attribute, robust_core.attacks, robust_core.evaluation.minimal_eps, robust_core.classviz),
the same calls the digit views make, on (1, 3, H, W) photos in [0, 1] and an ImageNet network that does its own
preprocessing. Work of more than a moment runs in the server's job runner, with progress and Cancel.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
import streamlit as st
import torch

from pages._audience import (
    current_visitor,
    job_or_retry,
    job_status,
    submit_job,
)
from pages._shared import in_lecture_mode, plain, show_chart
from robust_core.imagenet.models import (
    IMAGENET_MODELS,
    MAX_WEIGHTS_FILE_BYTES,
    WeightsNotAvailable,
    imagenet_class_names,
    is_torchvision_name,
    load_imagenet_model,
    save_weights_file,
    suggested_steps,
    top_k,
)
from robust_core.imagenet.photos import (
    MAX_UPLOAD_BYTES,
    PhotoError,
    centre_crop,
    load_photo,
    load_shipped_photo,
    shipped_photos,
)

MODEL_KEY = "imagenet_model"
MAX_WEIGHTS_BYTES = MAX_WEIGHTS_FILE_BYTES  # VGG16's weights are 528 MB; .streamlit/config.toml's maxUploadSize fits it
DEFAULT_TARGET = 6  # "stingray": the seed's "make the cat a stingray"


# ---- the network ---------------------------------------------------------------------------------------------
@st.cache_resource(show_spinner="Loading the ImageNet network…", max_entries=4)
def _network(name: str, weights_path: str | None):
    return load_imagenet_model(name, weights=weights_path)


def model_sidebar() -> None:
    """The sidebar's network picker for photos: the offline EfficientNet-Lite0, the seed's torchvision networks (any
    other by name), and a weights file of one's own (the lecturer's only, in lecture mode)."""
    choices = list(IMAGENET_MODELS) + ["other"]
    name = st.selectbox("Network", choices, key=MODEL_KEY,
                        format_func=lambda n: IMAGENET_MODELS[n].title if n in IMAGENET_MODELS else "Another torchvision model…",
                        help="EfficientNet-Lite0 works offline (its weights come with the lab). The others are downloaded "
                             "once by torchvision into the torch cache.")
    if name == "other":
        own = not in_lecture_mode() or current_visitor().lecturer
        st.text_input("torchvision model name", key="imagenet_other", placeholder="e.g. mobilenet_v3_small", disabled=not own,
                      help=None if own else "Lecture mode: another network is the lecturer's choice (it may mean a "
                                            "download of gigabytes); pick one of the list.")
    with st.expander("Your own weights file"):
        allowed = not in_lecture_mode() or current_visitor().lecturer
        upload = st.file_uploader("Weights (.safetensors or .pth)", type=["safetensors", "pth", "pt"], key="imagenet_weights",
                                  max_upload_size=MAX_WEIGHTS_BYTES // 2**20,  # the browser refuses more, before sending
                                  disabled=not allowed,
                                  help="For the architecture chosen above. A .pth file is read with weights_only=True: "
                                       "a file that would run code is refused." + ("" if allowed else
                                                                                  " Lecture mode: the lecturer's only."))
        if upload is not None and upload.size > MAX_WEIGHTS_BYTES:
            st.error(f"{plain(upload.name)} is {upload.size / 2**20:.0f} MB; the limit is {MAX_WEIGHTS_BYTES / 2**20:.0f} MB.")
        elif upload is not None:
            st.caption(f"Using {plain(upload.name)}.")


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
    name = st.session_state.get(MODEL_KEY, "efficientnet_lite0")
    if name == "other":
        # Checked here, not only by the disabled field: a typed name reaches no builder unless it may.
        if in_lecture_mode() and not current_visitor().lecturer:
            st.info("Lecture mode: another torchvision network is the lecturer's choice; pick one of the list in the "
                    "sidebar.", icon=":material/co_present:")
            st.stop()
        name = (st.session_state.get("imagenet_other") or "").strip()
        if not name:
            st.info("Type a torchvision model name in the sidebar (for example `mobilenet_v3_small`).", icon=":material/info:")
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
def _shipped(name: str) -> torch.Tensor:
    return load_shipped_photo(name)


def photo_picker(container, *, key: str) -> tuple[torch.Tensor | None, str, list[int]]:
    """A shipped photo (with its licence) or an upload. Returns (photo (1, 3, H, W) or None, its name, the ImageNet
    classes that count as right for it: none for an upload)."""
    photos = shipped_photos()
    c1, c2 = container.columns([2, 3])
    source = c1.radio("Photo", ["shipped", "upload"], key=f"{key}_source", horizontal=True,
                      format_func={"shipped": "A shipped photo", "upload": "Upload your own"}.get)
    if source == "shipped":
        name = c2.selectbox("Shipped photo", list(photos), key=f"{key}_photo", format_func=lambda n: photos[n].title)
        info = photos[name]
        c2.caption(f"{info.title}: {info.author}, {info.licence.split(':')[0]} (scikit-image sample data).")
        return _shipped(name), info.title, list(info.classes)
    upload = c2.file_uploader("JPEG, PNG or WebP", type=["jpg", "jpeg", "png", "webp"], key=f"{key}_upload",
                              max_upload_size=MAX_UPLOAD_BYTES // 2**20,
                              help=f"At most {MAX_UPLOAD_BYTES // 2**20} MB. The photo is resized so its shorter side is 256 px.")
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


def class_picker(container, label: str, *, key: str, default: int = DEFAULT_TARGET) -> int:
    """A searchable selectbox over the 1,000 ImageNet classes (type to filter)."""
    names = imagenet_class_names()
    return container.selectbox(label, range(len(names)), index=default, key=key, format_func=lambda c: f"{names[c]} ({c})")


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


def perturbation_x10(delta: torch.Tensor) -> np.ndarray:
    """The perturbation ×10 around grey (0.5 = unchanged), as the seed shows it."""
    return to_image((0.5 + 10 * delta).clamp(0, 1))


def adapted_steps(model, requested: int, *, what: str = "") -> int:
    """:func:`suggested_steps` for this model, saying so on the page when it chose fewer than ``requested``."""
    steps = suggested_steps(model, requested)
    if steps < requested:
        st.caption(f"{model.title} costs {model.gflops / IMAGENET_MODELS['efficientnet_lite0'].gflops:.0f}× EfficientNet-Lite0 "
                   f"per step on CPU: {what}{steps} steps instead of {requested}.")
    return steps


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.cpu().numpy().tobytes() if torch.is_tensor(part) else repr(part).encode())
    return h.hexdigest()[:24]


def run_job(key: str, fn, *, label: str, lane: str = "long", wait_s: float = 2.0):
    """Submit ``fn`` to the server's runner under ``key`` (or reuse its finished result); returns the job when done,
    else shows its progress with Cancel and stops the page (the status fragment reruns it when the job ends)."""
    job = job_or_retry(key, label=label, again="Run it again")
    if job is None:
        job = submit_job(key, fn, label=label, lane=lane)
        if job is None:  # refused (a quota, a full queue): submit_job said why
            st.stop()
        job.wait(wait_s)
    if job.status in ("queued", "running"):
        job_status([job.key], section="photo")
        st.stop()
    return job


# ---- Saliency ----------------------------------------------------------------------------------------------------
def saliency_view() -> None:
    from robust_core.attacks import get_attack
    from robust_core.saliency import (
        METHODS,
        attribute,
        available_methods,
        grid_png,
        heatmap,
    )

    st.title("Saliency · ImageNet photos")
    model = network()
    with st.container(border=True):
        x, photo_name, right = photo_picker(st, key="photo_saliency")
        usable = [m for m, why in available_methods(model).items() if not why]
        c1, c2, c3 = st.columns([3, 2, 2])
        methods = c1.multiselect("Methods (rows)", usable, default=usable, format_func=lambda m: METHODS[m].title, wrap=True)
        target_kind = c2.radio("Explain", ["predicted", "chosen"], horizontal=True,
                               format_func={"predicted": "the predicted class", "chosen": "a class I choose"}.get)
        chosen = class_picker(c2, "Class", key="photo_saliency_class", default=DEFAULT_TARGET) if target_kind == "chosen" else None
        eps255 = c3.slider("Attacked copy: PGD ε (/255)", 0, 16, 2, help="L∞ PGD-20, untargeted. 0: no attacked copy.")
    if x is None:
        st.info("Upload a photo or pick a shipped one.", icon=":material/photo:")
        st.stop()
    if not methods:
        st.info("Pick at least one method.")
        st.stop()
    clean_top = top_k(model, x)[0]
    target = chosen if chosen is not None else clean_top[0][0]
    # On a photo the digit settings would be slow: Integrated Gradients with 20 path steps, SmoothGrad with 10
    # samples, occlusion with a 48-px patch every 24 px (about 7 s for all methods on EfficientNet-Lite0, 2 cores).
    settings = dict(n_steps=20, nt_samples=10, window=48, stride=24)
    key = f"photo-saliency:{model.name}:{model.source}:{_digest(x, target, tuple(methods), eps255)}"

    def run(ctx):
        variants = [("clean", x)]
        if eps255:
            y = torch.tensor([clean_top[0][0]])
            x_adv = get_attack("pgd").fn(model, x, y, eps=eps255 / 255, steps=20)
            variants.append(("attacked", x_adv))
        out = {"variants": {}, "maps": {}}
        total = len(variants) * len(methods)
        for v, (variant, image) in enumerate(variants):
            out["variants"][variant] = (image, top_k(model, image)[0])
            for i, method in enumerate(methods):
                ctx.progress((v * len(methods) + i) / total, f"{METHODS[method].title} ({variant})")
                out["maps"][(variant, method)] = attribute(model, image, target, method, **settings)
        return out

    job = run_job(key, run, label=f"Saliency on {photo_name}")
    names = imagenet_class_names()
    result = job.result
    columns = list(result["variants"])
    cols = st.columns(len(columns))
    for col, variant in zip(cols, columns):
        image, top = result["variants"][variant]
        col.markdown(f"**{variant}** · top 5: " + top5_text(top, right=right, mark=target))
    st.caption(f"Maps of **{names[target]}** on {model.title}" + (f"; attacked copy: PGD-20, ε = {eps255}/255." if eps255 else "."))
    cells = [[heatmap(result["maps"][(v, m)], signed=False)[0] for v in columns] for m in methods]
    images = [to_image(result["variants"][v][0]) for v in columns]
    png = grid_png(cells, row_labels=[METHODS[m].title.split(" (")[0] for m in methods], col_labels=columns, images=images,
                   scale=1)
    st.image(png, caption="|attribution| over the photo (99th percentile = brightest)")
    st.download_button("Download the grid (PNG)", png, file_name="saliency_photo.png", mime="image/png",
                       icon=":material/download:", on_click="ignore")


# ---- Attack --------------------------------------------------------------------------------------------------------
def attack_view() -> None:
    from robust_core.attacks import get_attack
    from robust_core.evaluation import minimal_eps

    st.title("Attack · ImageNet photos")
    model = network()
    names = imagenet_class_names()
    with st.container(border=True):
        x, photo_name, right = photo_picker(st, key="photo_attack")
        c1, c2, c3 = st.columns([2, 3, 2])
        mode = c1.radio("Goal", ["targeted", "untargeted"], format_func={
            "targeted": "Make it read as a class I choose (smallest ε)", "untargeted": "Any wrong class (PGD / APGD)"}.get)
        if mode == "targeted":
            target = class_picker(c2, "Target class", key="photo_attack_target")
            eps_max255 = c3.slider("Largest ε searched (/255)", 1, 32, 16)
        else:
            attack = c2.radio("Attack", ["pgd", "apgd_ce"], horizontal=True, format_func=lambda a: get_attack(a).title)
            eps255 = c3.slider("ε (L∞, /255)", 1, 16, 2)
    if x is None:
        st.info("Upload a photo or pick a shipped one.", icon=":material/photo:")
        st.stop()
    clean_top = top_k(model, x)[0]
    y = torch.tensor([clean_top[0][0]])
    steps = adapted_steps(model, 40, what="PGD runs ")
    if mode == "targeted":
        key = f"photo-fool:{model.name}:{model.source}:{_digest(x, target, eps_max255, steps)}"

        def run(ctx):
            # The smallest ε (bisection, 7 halvings of [0, largest]) at which targeted PGD makes the network read the
            # target; then the adversarial photo at that ε.
            eps = float(minimal_eps(model, x, y, attack="pgd", target=target, eps_max=eps_max255 / 255, steps=steps,
                                    on_progress=lambda f: ctx.progress(0.95 * f, "searching the smallest ε"))[0])
            x_adv = None
            if np.isfinite(eps):
                x_adv = get_attack("pgd").fn(model, x, y, eps=eps, targeted=True, target=torch.tensor([target]), steps=steps)
            return {"eps": eps, "x_adv": x_adv}

        job = run_job(key, run, label=f"Fooling {photo_name} into {names[target]}")
    else:
        key = f"photo-attack:{model.name}:{model.source}:{_digest(x, attack, eps255, steps)}"

        def run(ctx):
            kwargs = {"steps": steps} if attack == "pgd" else {"steps": max(steps, 20)}
            return {"eps": eps255 / 255, "x_adv": get_attack(attack).fn(model, x, y, eps=eps255 / 255, **kwargs)}

        job = run_job(key, run, label=f"{attack.upper()} on {photo_name}")
    eps, x_adv = job.result["eps"], job.result["x_adv"]
    if x_adv is None:
        st.warning(f"Targeted PGD could not make {model.title} read **{names[target]}** within ε = {eps_max255}/255. "
                   "Raise the largest ε, or pick a class closer to the photo.", icon=":material/shield:")
        st.stop()
    adv_top = top_k(model, x_adv)[0]
    delta = x_adv - x
    c1, c2, c3 = st.columns(3)
    c1.image(to_image(x), caption=plain(photo_name), width="stretch")
    c2.image(to_image(x_adv), caption=f"attacked, ε = {255 * eps:.2f}/255 (L∞ {float(delta.abs().max()):.4f})",
             width="stretch")
    c3.image(perturbation_x10(delta), caption="the change ×10 (grey = none)", width="stretch")
    c1.markdown("**Before** · " + top5_text(clean_top, right=right))
    c2.markdown("**After** · " + top5_text(adv_top, right=right, mark=target if mode == "targeted" else None))
    fooled = adv_top[0][0] == target if mode == "targeted" else adv_top[0][0] != clean_top[0][0]
    verdict = (f"reads **{adv_top[0][1]}**" + (" as asked" if mode == "targeted" else "") if fooled
               else f"still reads **{adv_top[0][1]}**")
    c3.markdown(f"{model.title} {verdict}. Largest pixel change: {255 * float(delta.abs().max()):.1f} of 255 levels.")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, clean=x.numpy(), adversarial=x_adv.numpy(), eps=np.array(eps))
    st.download_button("Download the photos (.npz)", buffer.getvalue(), file_name="fooled_photo.npz",
                       icon=":material/download:", on_click="ignore")

    st.subheader("Every shipped photo")
    st.caption("Robust accuracy over four photos would mean little: per photo, the smallest untargeted PGD ε that changes "
               "the top-1 class.")
    if st.button("Measure the four shipped photos", icon=":material/bolt:"):
        st.session_state["photo_attack_all"] = True
    if st.session_state.get("photo_attack_all"):
        photos = shipped_photos()
        key_all = f"photo-attack-all:{model.name}:{model.source}:{steps}"

        def run_all(ctx):
            rows = []
            for i, (name, info) in enumerate(photos.items()):
                px = _shipped(name)
                top = top_k(model, px)[0]
                eps = float(minimal_eps(model, px, torch.tensor([top[0][0]]), attack="pgd", eps_max=16 / 255, steps=steps,
                                        on_progress=lambda f, i=i: ctx.progress((i + f) / len(photos), info.title))[0])
                rows.append({"Photo": info.title, "Top-1": f"{top[0][1]} ({100 * top[0][2]:.0f}%)",
                             "Right class in top 5": any(c in info.classes for c, _, _ in top) if info.classes else None,
                             "Smallest PGD ε (/255)": round(255 * eps, 2) if np.isfinite(eps) else None})
            return rows

        st.dataframe(run_job(key_all, run_all, label="The four shipped photos").result, hide_index=True)


# ---- Class visualization ----------------------------------------------------------------------------------------------
def classviz_view() -> None:
    from robust_core.classviz import RECIPES, visualize
    from robust_core.classviz.export import gif, strip_png
    from robust_core.plots import morph_figure

    st.title("Class visualization · ImageNet photos")
    model = network()
    names = imagenet_class_names()
    with st.container(border=True):
        c1, c2, c3 = st.columns([2, 3, 2])
        start = c1.radio("Start from", ["noise", "photo"], format_func={"noise": "Noise", "photo": "A photo"}.get)
        target = class_picker(c2, "Target class (type to search)", key="photo_classviz_target", default=76)  # tarantula
        recipe = dict(RECIPES["photo"])
        requested = c3.number_input("Steps", 8, 1024, int(recipe["steps"]))
        x = None
        if start == "photo":
            x, photo_name, _ = photo_picker(st, key="photo_classviz")
        with st.expander("Regularisers (Lucent-style; the defaults make 224×224 colour images readable)"):
            r1, r2, r3, r4 = st.columns(4)
            recipe["parametrisation"] = r1.selectbox("Parametrisation", ["fft", "pixel"],
                                                     format_func={"fft": "FFT, decorrelated colours", "pixel": "pixels"}.get)
            recipe["jitter_pixels"] = r2.number_input("Jitter (px)", 0, 32, int(recipe["jitter_pixels"]))
            recipe["scale_jitter"] = r3.number_input("Random scale (±)", 0.0, 0.5, float(recipe["scale_jitter"]), step=0.01)
            recipe["rotate_degrees"] = r4.number_input("Random rotation (±°)", 0.0, 45.0, float(recipe["rotate_degrees"]))
            r1, r2, r3, r4 = st.columns(4)
            recipe["tv"] = r1.number_input("Total variation", 0.0, 10.0, float(recipe["tv"]), step=0.01)
            recipe["l2"] = r2.number_input("L2", 0.0, 10.0, 0.0, step=0.01)
            recipe["blur_every"] = r3.number_input("Blur every k steps (0: never)", 0, 100, 0)
            recipe["lr"] = r4.number_input("Step size", 0.001, 100.0, float(recipe["lr"]))
            seed = st.number_input("Seed", 0, 2**31 - 1, 0)
    if start == "photo" and x is None:
        st.info("Upload a photo or pick a shipped one.", icon=":material/photo:")
        st.stop()
    steps = adapted_steps(model, int(requested))
    recipe["steps"] = steps
    canvas = centre_crop(x) if x is not None else None  # the 224×224 the network sees
    key = f"photo-classviz:{model.name}:{model.source}:{_digest(canvas if canvas is not None else 0, target, sorted(recipe.items()), seed)}"
    if st.button("Visualize", type="primary", icon=":material/auto_fix_high:"):
        st.session_state["photo_classviz_key"] = key
    if st.session_state.get("photo_classviz_key") != key:
        st.caption(f"Press **Visualize** to ascend toward **{names[target]}** from {start} ({steps} steps).")
        st.stop()

    def run(ctx):
        def on_step(step, image, p):
            if step % 4 == 0:
                ctx.progress(step / steps, f"step {step}: p({names[target]}) = {100 * float(p[0, target]):.1f}%")

        kwargs = dict(start="image", image=canvas) if canvas is not None else dict(start="uniform", shape=(3, 224, 224))
        return visualize(model, int(target), threshold=None, seed=int(seed), record_every=max(1, steps // 40),
                         on_step=on_step, **kwargs, **recipe)

    job = run_job(key, run, label=f"Class visualization of {names[target]}")
    result = job.result
    probabilities = result.probabilities[:, 0].cpu().numpy()
    shown = list(dict.fromkeys([target, *np.argsort(-probabilities[-1])[:4].tolist(), *np.argsort(-probabilities[0])[:2].tolist()]))
    fig = morph_figure(result.frames[:, 0].permute(0, 2, 3, 1).cpu().numpy(), probabilities[:, shown], result.recorded_steps,
                       target=0, class_names=[names[c] for c in shown], title=f"→ {names[target]}")
    fig.update_layout(height=420)
    show_chart(st, fig, key="photo_morph", config={"displayModeBar": False})
    final_p = float(result.final_probabilities[0, target])
    st.markdown(f"p(**{names[target]}**) = {100 * final_p:.1f}% after {int(result.steps_run[0])} steps on {model.title}. "
                "Top 5 of the final image: " + top5_text(top_k(model, result.final.cpu())[0], mark=target))
    d1, d2 = st.columns(2)
    d1.download_button("Frames (PNG strip)", strip_png(result), file_name=f"visualization_{target}.png", mime="image/png",
                       icon=":material/download:", on_click="ignore")
    d2.download_button("Frames (GIF)", gif(result), file_name=f"visualization_{target}.gif", mime="image/gif",
                       icon=":material/download:", on_click="ignore")
