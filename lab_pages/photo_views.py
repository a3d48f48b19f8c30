"""The "ImageNet photos" source: the Saliency, Attack and Class Visualization pages on real photos.

Each page calls its view here when the sidebar's source is ImageNet photos; the computations are the library's
(robust_core.saliency.attribute, robust_core.attacks, robust_core.imagenet.fool, robust_core.classviz), the same
calls the digit views make, on (1, 3, H, W) photos in [0, 1] and an ImageNet network that does its own preprocessing.
Opening a view shows the photo and the network's top 5 (one forward pass); the work waits for the view's button and
runs in the server's job runner, with progress and Cancel (a link to a view already computed opens on its result).
Each view keeps its state in the address (``?dataset=imagenet&net=…&photo=…`` and its own settings): a reload or a
copied link lands on the same photo view.
"""
from __future__ import annotations

import io

import numpy as np
import streamlit as st
import torch

from lab_pages._jobs import run_job
from lab_pages._photo import (
    DEFAULT_METHODS,
    DEFAULT_TARGET,
    adapted_steps,
    asked_for,
    class_picker,
    digest,
    model_sidebar,
    network,
    perturbation_scaled,
    photo_param,
    photo_picker,
    shipped_photo,
    show_photo,
    to_image,
    top5_text,
    write_url,
)
from lab_pages._layout import show_chart, title_with_link
from lab_pages._url import url_choice, url_choices, url_number
from robust_core.imagenet.fool import fool_photo
from robust_core.imagenet.models import imagenet_class_names, top_k
from robust_core.imagenet.photos import centre_crop, shipped_photos

# The untargeted attacks a photo view offers, each with its fewest steps: APGD halves its step size at checkpoints
# (a fifth of the run and later), which need a few tens of steps to mean anything.
PHOTO_ATTACKS = {"pgd": 1, "apgd_ce": 20}

__all__ = ["attack_view", "classviz_view", "model_sidebar", "saliency_view"]


# ---- Saliency --------------------------------------------------------------------------------------------------------
def saliency_view() -> None:
    from robust_core.attacks import get_attack
    from robust_core.saliency import (
        METHODS,
        attribute,
        available_methods,
        grid_png,
        heatmap,
    )

    title_with_link("Saliency · ImageNet photos")
    model = network()
    with st.container(border=True):
        x, photo_name, right = photo_picker(st, key="photo_saliency")
        usable = [m for m, why in available_methods(model).items() if not why]
        c1, c2, c3 = st.columns([3, 2, 2])
        url_choices("photo_saliency_methods", "methods", usable, [m for m in DEFAULT_METHODS if m in usable])
        methods = c1.multiselect("Methods (rows)", usable, key="photo_saliency_methods",
                                 format_func=lambda m: METHODS[m].title, wrap=True)
        url_choice("photo_saliency_explain", "explain", ["predicted", "chosen"], "predicted")
        target_kind = c2.radio("Explain", ["predicted", "chosen"], horizontal=True, key="photo_saliency_explain",
                               format_func={"predicted": "the predicted class", "chosen": "a class I choose"}.get)
        chosen = (class_picker(c2, "Class", key="photo_saliency_class", default=DEFAULT_TARGET, url="target")
                  if target_kind == "chosen" else None)
        url_number("photo_saliency_eps", "eps", 0, 16, 2)
        eps255 = c3.slider("Attacked copy: PGD ε (/255)", 0, 16, key="photo_saliency_eps",
                           help="L∞ PGD-20, untargeted. 0: no attacked copy.")
    write_url(photo=photo_param("photo_saliency"), methods=methods, explain=target_kind, eps=eps255,
              **({"target": chosen} if chosen is not None else {}))
    if x is None:
        st.info("Upload a photo or pick a shipped one.", icon=":material/photo:")
        st.stop()
    clean_top = top_k(model, x)[0]
    target = chosen if chosen is not None else clean_top[0][0]
    show_photo(x, clean_top, right=right, mark=chosen, what=model.title)
    if not methods:
        st.info("Pick at least one method.")
        st.stop()
    # On a photo the digit settings would be slow: Integrated Gradients with 20 path steps, SmoothGrad with 10
    # samples, occlusion with a 48-px patch every 24 px (about 7 s for all methods on EfficientNet-Lite0, 2 cores).
    settings = dict(n_steps=20, nt_samples=10, window=48, stride=24)
    key = f"photo-saliency:{model.name}:{model.source}:{digest(x, target, tuple(methods), eps255)}"
    rows = f"{len(methods)} method{'s' * (len(methods) > 1)}"
    if not asked_for(key, view="photo_saliency", button="Compute the maps", icon=":material/visibility:",
                     what=f"explain **{imagenet_class_names()[target]}** with {rows}"
                          + (" on the clean and the attacked photo" if eps255 else "")):
        st.stop()

    def run(ctx):
        variants = [("clean", x)]
        if eps255:
            y = torch.tensor([clean_top[0][0]])
            x_adv = get_attack("pgd")(model, x, y, eps=eps255 / 255, steps=20)
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
    st.caption(f"Maps of **{names[target]}** on {model.title}"
               + (f"; attacked copy: PGD-20, ε = {eps255}/255." if eps255 else "."))
    cells = [[heatmap(result["maps"][(v, m)], signed=False)[0] for v in columns] for m in methods]
    images = [to_image(result["variants"][v][0]) for v in columns]
    png = grid_png(cells, row_labels=[METHODS[m].title.split(" (")[0] for m in methods], col_labels=columns,
                   images=images, scale=1)
    st.image(png, caption="|attribution| over the photo (99th percentile = brightest)")
    st.download_button("Download the grid (PNG)", png, file_name="saliency_photo.png", mime="image/png",
                       icon=":material/download:", on_click="ignore")


# ---- Attack ----------------------------------------------------------------------------------------------------------
def _attack_controls(names):
    """The attack's settings, keyed and bound to the address; returns (x, photo name, right classes, settings)."""
    from robust_core.attacks import get_attack

    x, photo_name, right = photo_picker(st, key="photo_attack")
    c1, c2, c3 = st.columns([2, 3, 2])
    url_choice("photo_attack_goal", "goal", ["targeted", "untargeted"], "targeted")
    mode = c1.radio("Goal", ["targeted", "untargeted"], key="photo_attack_goal", format_func={
        "targeted": "Make it read as a class I choose (smallest ε)", "untargeted": "Any wrong class (PGD / APGD)"}.get)
    if mode == "targeted":
        target = class_picker(c2, "Target class", key="photo_attack_target", url="target")
        url_number("photo_attack_epsmax", "epsmax", 1, 32, 16)
        eps_max255 = c3.slider("Largest ε searched (/255)", 1, 32, key="photo_attack_epsmax")
        settings = {"goal": mode, "target": target, "epsmax": eps_max255}
    else:
        url_choice("photo_attack_attack", "attack", list(PHOTO_ATTACKS), "pgd")
        attack = c2.radio("Attack", list(PHOTO_ATTACKS), horizontal=True, key="photo_attack_attack",
                          format_func=lambda a: get_attack(a).title)
        url_number("photo_attack_eps", "eps", 1, 16, 2)
        eps255 = c3.slider("ε (L∞, /255)", 1, 16, key="photo_attack_eps")
        settings = {"goal": mode, "attack": attack, "eps": eps255}
    return x, photo_name, right, settings


def attack_view() -> None:
    from robust_core.attacks import get_attack

    title_with_link("Attack · ImageNet photos")
    model = network()
    names = imagenet_class_names()
    with st.container(border=True):
        x, photo_name, right, settings = _attack_controls(names)
    write_url(photo=photo_param("photo_attack"), **settings)
    mode = settings["goal"]
    target = settings.get("target")
    if x is None:
        st.info("Upload a photo or pick a shipped one.", icon=":material/photo:")
        st.stop()
    clean_top = top_k(model, x)[0]
    show_photo(x, clean_top, right=right, mark=target, what=model.title)
    y = torch.tensor([clean_top[0][0]])
    steps = adapted_steps(model, 40, what="PGD runs ")
    if mode == "targeted":
        eps_max255 = settings["epsmax"]
        key = f"photo-fool:{model.name}:{model.source}:{digest(x, target, eps_max255, steps)}"
        what = f"search the smallest ε (up to {eps_max255}/255) that makes {model.title} read **{names[target]}**"

        def run(ctx):
            return fool_photo(model, x, target=target, eps_max=eps_max255 / 255, steps=steps, on_progress=ctx.progress)
    else:
        attack, eps255 = settings["attack"], settings["eps"]
        key = f"photo-attack:{model.name}:{model.source}:{digest(x, attack, eps255, steps)}"
        what = f"run {get_attack(attack).title} at ε = {eps255}/255"

        def run(ctx):
            kwargs = {"steps": max(steps, PHOTO_ATTACKS[attack])}
            return {"eps": eps255 / 255, "x_adv": get_attack(attack)(model, x, y, eps=eps255 / 255, **kwargs)}

    button = "Fool it" if mode == "targeted" else "Attack"
    if not asked_for(key, view="photo_attack", button=button, what=what, icon=":material/bolt:"):
        st.stop()
    label = (f"Fooling {photo_name} into {names[target]}" if mode == "targeted"
             else f"{settings['attack'].upper()} on {photo_name}")
    result = run_job(key, run, label=label).result
    if mode == "targeted":
        result = {"eps": result.eps, "x_adv": result.at_boundary, "strong_eps": result.strong_eps,
                  "strong": result.strong}
    if result["x_adv"] is None:
        st.warning(f"Targeted PGD could not make {model.title} read **{names[target]}** within ε = {eps_max255}/255. "
                   "Raise the largest ε, or pick a class closer to the photo.", icon=":material/shield:")
        st.stop()
    _show_attack(model, x, clean_top, result, right=right, target=target, names=names, steps=steps)
    _every_shipped_photo(model, steps)


def _show_attack(model, x, clean_top, result, *, right, target, names, steps) -> None:
    eps, x_adv = result["eps"], result["x_adv"]
    if target is not None and eps == 0:
        st.success(f"{model.title} already reads **{names[target]}** in this photo: nothing to change.")
        return
    shown = [(f"at the smallest ε, {255 * eps:.2f}/255", x_adv)]
    if "strong" in result:
        shown.append((f"at {255 * result['strong_eps']:.2f}/255, all {steps} steps", result["strong"]))
    delta = shown[-1][1] - x
    change, factor = perturbation_scaled(delta)
    cols = st.columns(len(shown) + 1)
    for col, (caption, image) in zip(cols, shown):
        top = top_k(model, image)[0]
        col.image(to_image(image), caption=f"attacked, {caption}", width="stretch")
        col.markdown("**After** · " + top5_text(top, right=right, mark=target))
    cols[-1].image(change, caption=f"the change, scaled ×{factor:.0f} (grey = none)", width="stretch")
    cols[-1].markdown(f"Largest pixel change: {255 * float(delta.abs().max()):.2f} of 255 levels.")
    first = top_k(model, x_adv)[0]
    if target is None:
        fooled = first[0][0] != clean_top[0][0]
        st.markdown(f"{model.title} " + (f"reads **{first[0][1]}**." if fooled else f"still reads **{first[0][1]}**."))
    else:
        p = dict((c, q) for c, _, q in first)
        line = (f"At the smallest ε the search stops as soon as **{names[target]}** is the top class: "
                f"{100 * p.get(target, 0):.1f}%, just ahead of {first[1][1]} ({100 * first[1][2]:.1f}%).")
        if "strong" in result:
            strong = top_k(model, result["strong"])[0]
            reached = strong[0][0] == target
            line += (f" At {255 * result['strong_eps']:.2f}/255 with every step run, " +
                     (f"{model.title} reads **{names[target]}** at {100 * strong[0][2]:.1f}%." if reached else
                      f"it reads **{strong[0][1]}** ({100 * strong[0][2]:.1f}%), not {names[target]}: raise the "
                      "largest ε."))
        st.markdown(line)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, clean=x.numpy(), adversarial=x_adv.numpy(), eps=np.array(eps),
                        **({"strong": result["strong"].numpy(), "strong_eps": np.array(result["strong_eps"])}
                           if "strong" in result else {}))
    st.download_button("Download the photos (.npz)", buffer.getvalue(), file_name="fooled_photo.npz",
                       icon=":material/download:", on_click="ignore")


def _every_shipped_photo(model, steps) -> None:
    from robust_core.evaluation import minimal_eps

    st.subheader("Every shipped photo")
    st.caption("Robust accuracy over four photos would mean little: per photo, the smallest untargeted PGD ε that "
               "changes the top-1 class.")
    if st.button("Measure the four shipped photos", icon=":material/bolt:"):
        st.session_state["photo_attack_all"] = True
    if st.session_state.get("photo_attack_all"):
        photos = shipped_photos()
        key_all = f"photo-attack-all:{model.name}:{model.source}:{steps}"

        def run_all(ctx):
            rows = []
            for i, (name, info) in enumerate(photos.items()):
                px = shipped_photo(name)
                top = top_k(model, px)[0]
                eps = float(minimal_eps(model, px, torch.tensor([top[0][0]]), attack="pgd", eps_max=16 / 255,
                                        steps=steps,
                                        on_progress=lambda f, i=i: ctx.progress((i + f) / len(photos), info.title))[0])
                rows.append({"Photo": info.title, "Top-1": f"{top[0][1]} ({100 * top[0][2]:.0f}%)",
                             "Right class in top 5": (any(c in info.classes for c, _, _ in top) if info.classes
                                                      else None),
                             "Smallest PGD ε (/255)": round(255 * eps, 2) if np.isfinite(eps) else None})
            return rows

        st.dataframe(run_job(key_all, run_all, label="The four shipped photos").result, hide_index=True)


# ---- Class visualization ---------------------------------------------------------------------------------------------
def classviz_view() -> None:
    from robust_core.classviz import RECIPES, visualize
    from robust_core.classviz.export import gif, strip_png
    from robust_core.plots import morph_figure

    title_with_link("Class visualization · ImageNet photos")
    model = network()
    names = imagenet_class_names()
    with st.container(border=True):
        c1, c2, c3 = st.columns([2, 3, 2])
        url_choice("photo_classviz_start", "start", ["noise", "photo"], "noise")
        start = c1.radio("Start from", ["noise", "photo"], key="photo_classviz_start",
                         format_func={"noise": "Noise", "photo": "A photo"}.get)
        target = class_picker(c2, "Target class (type to search)", key="photo_classviz_target", default=76,  # tarantula
                              url="target")
        recipe = dict(RECIPES["photo"])
        url_number("photo_classviz_steps", "steps", 8, 1024, int(recipe["steps"]))
        requested = c3.number_input("Steps", 8, 1024, key="photo_classviz_steps")
        x = None
        if start == "photo":
            x, photo_name, _ = photo_picker(st, key="photo_classviz")
        with st.expander("Regularisers (Lucent-style; the defaults make 224×224 colour images readable)"):
            r1, r2, r3, r4 = st.columns(4)
            recipe["parametrisation"] = r1.selectbox("Parametrisation", ["fft", "pixel"],
                                                     format_func={"fft": "FFT, decorrelated colours",
                                                                  "pixel": "pixels"}.get)
            recipe["jitter_pixels"] = r2.number_input("Jitter (px)", 0, 32, int(recipe["jitter_pixels"]))
            recipe["scale_jitter"] = r3.number_input("Random scale (±)", 0.0, 0.5, float(recipe["scale_jitter"]),
                                                     step=0.01)
            recipe["rotate_degrees"] = r4.number_input("Random rotation (±°)", 0.0, 45.0,
                                                       float(recipe["rotate_degrees"]))
            r1, r2, r3, r4 = st.columns(4)
            recipe["tv"] = r1.number_input("Total variation", 0.0, 10.0, float(recipe["tv"]), step=0.01)
            recipe["l2"] = r2.number_input("L2", 0.0, 10.0, 0.0, step=0.01)
            recipe["blur_every"] = r3.number_input("Blur every k steps (0: never)", 0, 100, 0)
            recipe["lr"] = r4.number_input("Step size", 0.001, 100.0, float(recipe["lr"]))
            seed = st.number_input("Seed", 0, 2**31 - 1, 0)
    write_url(start=start, target=target, steps=int(requested),
              **({"photo": photo_param("photo_classviz")} if start == "photo" else {}))
    if start == "photo" and x is None:
        st.info("Upload a photo or pick a shipped one.", icon=":material/photo:")
        st.stop()
    steps = adapted_steps(model, int(requested))
    recipe["steps"] = steps
    canvas = centre_crop(x) if x is not None else None  # the 224×224 the network sees
    key = (f"photo-classviz:{model.name}:{model.source}:"
           f"{digest(canvas if canvas is not None else 0, target, sorted(recipe.items()), seed)}")
    if not asked_for(key, view="photo_classviz", button="Visualize", icon=":material/auto_fix_high:",
                     what=f"ascend toward **{names[target]}** from {start} ({steps} steps)"):
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
    shown = list(dict.fromkeys([target, *np.argsort(-probabilities[-1])[:4].tolist(),
                                *np.argsort(-probabilities[0])[:2].tolist()]))
    fig = morph_figure(result.frames[:, 0].permute(0, 2, 3, 1).cpu().numpy(), probabilities[:, shown],
                       result.recorded_steps, target=0, class_names=[names[c] for c in shown],
                       title=f"→ {names[target]}")
    fig.update_layout(height=420)
    show_chart(st, fig, key="photo_morph", config={"displayModeBar": False})
    final_p = float(result.final_probabilities[0, target])
    st.markdown(f"p(**{names[target]}**) = {100 * final_p:.1f}% after {int(result.steps_run[0])} steps on "
                f"{model.title}. "
                "Top 5 of the final image: " + top5_text(top_k(model, result.final.cpu())[0], mark=target))
    d1, d2 = st.columns(2)
    d1.download_button("Frames (PNG strip)", strip_png(result), file_name=f"visualization_{target}.png",
                       mime="image/png", icon=":material/download:", on_click="ignore")
    d2.download_button("Frames (GIF)", gif(result), file_name=f"visualization_{target}.gif", mime="image/gif",
                       icon=":material/download:", on_click="ignore")
