"""The Attack page's comparison of attacks on one model, and AutoAttack at one ε (not a page: lab_pages/attack.py runs
them)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from lab_pages._jobs import job_panel, job_runner, job_status, submit_job, visitor_work_error
from lab_pages._layout import (
    focus_section,
    folded_controls,
    lecture_focus,
    presenting,
    settings_box,
    show_chart,
)
from lab_pages._resources import get_store
from lab_pages._text import plain
from lab_pages._url import set_url, url_choice, url_choices
from lab_pages.attack_results import FRAMES, attack_label, comparison, sanity_of
from robust_core.access import Work
from robust_core.attacks import ATTACKS
from robust_core.device import get_device
from robust_core.evaluation import (
    COMPARISON_SEARCH,
    curve_eps_max,
    MASKING_EXPLANATION,
    MASKING_SECTION,
    AutoAttackKey,
    EvalKey,
    accuracy_at,
    attack_comparison_notes,
    attack_comparison_warnings,
    cached_autoattack,
    cached_minimal_eps,
    cached_transfer_eps,
    comparison_params,
    is_transfer,
    measured_eps_grid,
    read_autoattack,
    single_step_masking,
    training_method_of,
    transfer_key,
)

def transfer_params(dataset: str) -> dict:
    return {"eps_max": curve_eps_max("linf", dataset), "steps": 40}


def job_key(view, key: EvalKey) -> str:
    return f"minimal-eps:{view.store.root}:{key.digest()}"


def minimal_eps_request(view, model_id: str, attack: str, params: dict, key: EvalKey, *, label: str) -> dict:
    """A job request (lab_pages._jobs.job_panel) for one model's per-image minimal eps, cached beside the model when
    complete."""
    xs, ys = view.data.test_x[:view.n_images], view.data.test_y[:view.n_images]
    store, cache, seed = view.store, view.cache, view.seed

    def run(ctx):
        # ctx.progress raises JobCancelled once nobody wants the result: the search stops, nothing is cached.
        return cached_minimal_eps(store, cache, model_id, xs, ys, attack=attack, seed=seed,
                                  on_progress=ctx.progress, **params)
    return {"key": job_key(view, key), "fn": run, "label": label,
            "work": Work("minimal_eps", images=view.n_images, attack=attack, params=params)}


def transfer_request(view, source_id: str, target_id: str, key: EvalKey, *, label: str) -> dict:
    """A job request for the minimal eps of PGD examples crafted on ``source_id`` and replayed on ``target_id``."""
    xs, ys = view.data.test_x[:view.n_images], view.data.test_y[:view.n_images]
    store, cache, seed = view.store, view.cache, view.seed
    params = transfer_params(view.dataset)

    def run(ctx):
        return cached_transfer_eps(store, cache, source_id, target_id, xs, ys, attack="pgd", seed=seed,
                                   on_progress=ctx.progress, **params)
    return {"key": job_key(view, key), "fn": run, "label": label,
            "work": Work("minimal_eps", images=view.n_images, attack=key.attack, params=params)}


@dataclass
class Compared:
    """The comparison's model and its computed curves, which the AutoAttack section sets beside its number."""
    model_id: str
    ready: dict  # attack (or "transfer:<source>:pgd") -> per-image minimal eps
    titles: dict  # the same keys -> their titles (plain text)


def comparison_section(view) -> Compared:
    """Attacks side by side on one model, with the gradient-masking warnings: the weakest curve is the one to
    believe."""
    names, focus = view.names, lecture_focus()
    with focus_section("comparison", view.top):
        if focus != "comparison":
            st.divider()
        st.subheader("Compare attacks on one model")
        if focus != "comparison":  # (the path's card and its warning say it)
            st.caption("A defence that only masks gradients looks robust to gradient attacks and falls to the "
                       "gradient-free Square attack, or even to single-step FGSM: the weakest curve is the one to "
                       "believe.")
        linf_attacks = [a for a, sp in ATTACKS.items() if sp.norm == "linf" and sp.kind not in ("minimal", "ensemble")]
        controls = settings_box("Comparison: model and attacks")
        c1, c2 = controls.columns([2, 3])
        # Any network of the dataset, not only those picked above: the comparison is about one model.
        options = list(names)
        url_choice("attack_cmp", "cmp", options, view.model_ids[0])
        url_choices("attack_cmp_attacks", "cmp_attacks", linf_attacks, ["fgsm", "pgd", "apgd_ce", "square"])
        model_id = c1.selectbox("Model to compare on", options, key="attack_cmp", format_func=names.get)
        largest = curve_eps_max("linf", view.dataset)
        attacks = c2.multiselect(f"Attacks (L∞, default parameters, largest ε {largest:.3g})", linf_attacks,
                                 key="attack_cmp_attacks", format_func=attack_label, wrap=True)
        set_url(dataset=view.dataset, models=view.model_ids, attack=view.attack, n=view.n_images, cmp=model_id,
                cmp_attacks=attacks)
        others = [e.model_id for e in view.networks if e.model_id != model_id]
        source = controls.selectbox(
            "Also attack it with PGD examples crafted on another model (transfer, black-box)", [None] + others,
            format_func=lambda m: "no transfer" if m is None else names[m],
            help="Examples that fool the source model, replayed on this one at 8 values of ε. "
                 "A transfer attack that beats white-box PGD means this model masks its gradients.")
        params = {a: comparison_params(a, view.dataset) for a in attacks}
        if coarse := [a for a in attacks if a in COMPARISON_SEARCH]:
            step = measured_eps_grid(params[coarse[0]], [])[1]
            controls.caption(
                f"{', '.join(ATTACKS[a].title for a in coarse)}: measured at every {step:g} of ε (markers), the other "
                f"attacks to {curve_eps_max('linf', view.dataset) / 128:.3f}. Each step of its search costs every "
                "image that stays robust its whole query budget: the coarse grid makes it about 3× faster, and masked "
                "gradients still show. Warnings compare all attacks at these ε. For a fine curve, pick it in the "
                "curves above.")
        keys = {a: EvalKey(model_id, a, tuple(sorted(p.items())), view.n_images, view.seed) for a, p in params.items()}
        titles = {a: ATTACKS[a].label for a in attacks}
        if source is not None:
            transfer = transfer_key(source, "pgd")
            keys[transfer] = EvalKey(model_id, transfer, tuple(sorted(transfer_params(view.dataset).items())),
                                     view.n_images,
                                     view.seed)
            titles[transfer] = f"Transfer PGD from {names[source]}"
        missing = [a for a in keys if view.cache.get(keys[a]) is None]
        if missing:
            requests = [transfer_request(view, source, model_id, keys[a], label=f"{names[model_id]} · {titles[a]}")
                        if is_transfer(a) else
                        minimal_eps_request(view, model_id, a, params[a], keys[a],
                                            label=f"{names[model_id]} · {titles[a]}")
                        for a in missing]
            job_panel(st, requests, button=plain(f"Compute {', '.join(titles[a] for a in missing)} on "
                                                 f"{names[model_id]}"), section="comparison")
        ready = {a: v for a in keys if (v := view.cache.get(keys[a])) is not None}
        if ready:
            comparison_figure(view, model_id, ready, keys, titles, params)
            if len(ready) < len(keys):
                st.caption(f"Not computed yet: {', '.join(plain(titles[a]) for a in missing)}.")
        for w in sanity_of(model_id, view.dataset, min(200, view.n_images)):
            st.warning(w, icon=":material/report:")
    return Compared(model_id, ready, titles)


def comparison_figure(view, model_id: str, ready: dict, keys: dict, titles: dict, params: dict) -> None:
    """The computed attacks' curves, the masking warnings (above the figure on the masking path: they are its point)
    and what single-step masking means."""
    focus = lecture_focus()
    frames = np.linspace(0, curve_eps_max("linf", view.dataset), FRAMES).round(6).tolist()
    transfer = tuple(is_transfer(a) for a in ready)
    grids = tuple(tuple(frames if t else measured_eps_grid(params[a], frames)) for a, t in zip(ready, transfer))
    height = (270 if presenting() else 300) if focus == "comparison" else 380
    grid, curves, fig = comparison(tuple(keys[a].digest() for a in ready), tuple(titles[a] for a in ready),
                                   transfer, grids, tuple(ready.values()), height)
    by_attack = dict(zip(ready, curves))
    warning_slot = st.container() if focus == "comparison" else None
    show_chart(st, fig, key="attack_comparison")
    method = training_method_of(get_store().get(model_id).meta)
    for w in attack_comparison_warnings(by_attack, grid, training_method=method):
        (warning_slot or st).warning(w, icon=":material/report:")
    for note in attack_comparison_notes(by_attack, grid):
        st.caption(f":material/info: {note}")
    if single_step_masking(by_attack, grid):
        with st.expander(f"{MASKING_SECTION}: what it means (from reports/deepdefense.md)", icon=":material/school:",
                         expanded=not folded_controls()):
            st.markdown(MASKING_EXPLANATION)


def autoattack_section(view, compared: Compared) -> None:
    """AutoAttack on the compared model at one ε: the reference protocol's number, beside the best single attack."""
    names, model_id = view.names, compared.model_id
    st.markdown(f"**AutoAttack on {plain(names[model_id])}**: the field's reference protocol (APGD-CE, APGD-T, FAB-T, "
                "Square, each later attack only on the points still robust), at one ε. Its robust accuracy is the "
                "number to report; a curve above it overstates the model.")
    a1, a2, a3 = st.columns([2, 1, 3], vertical_alignment="bottom")
    attack = a1.selectbox("Version", ["autoattack_standard", "autoattack_fast"], format_func=attack_label,
                          key="attack_aa_version")
    eps = a2.number_input("ε (L∞)", 0.001, 0.5, 0.3 if view.dataset == "mnist" else 0.1, step=0.01, format="%.3f",
                          key="attack_aa_eps")
    aa_key = AutoAttackKey(model_id, attack, float(eps), view.n_images, view.seed)
    key = f"autoattack:{view.store.root}:{model_id}:{attack}:{float(eps)}:{view.n_images}:{view.seed}"
    result = read_autoattack(view.store, aa_key)
    if result is None:
        work = Work("autoattack", images=view.n_images, attack=attack)
        state = job_runner().get(key)
        if state is not None and state.status == "failed":
            st.error(f"AutoAttack failed: {plain(state.error)}. Nothing was cached.", icon=":material/error:")
        if state is not None and state.status in ("queued", "running"):
            job_status([key], section="autoattack")
        elif a3.button(f"Run {attack_label(attack)} on {view.n_images} images", icon=":material/bolt:",
                       disabled=(refusal := visitor_work_error(work)) is not None,
                       help=refusal or "On a CPU, the standard version takes about a second per robust image (a few "
                            "minutes for 200 images of an adversarially trained CNN); it runs in the server's queue "
                            "and is cached."):
            xs, ys, store = view.data.test_x[:view.n_images], view.data.test_y[:view.n_images], view.store

            def run(ctx, aa_key=aa_key):
                # Progress after each stage; a cancelled job stops at the next one and caches nothing.
                return cached_autoattack(store, aa_key, xs.to(get_device()), ys.to(get_device()),
                                         on_progress=ctx.progress)
            if submit_job(key, run, work=work,
                          label=f"{names[model_id]} · {attack_label(attack)} · ε {eps:g} · {view.n_images} images"):
                st.rerun()
        return
    m1, m2, m3 = st.columns(3)  # (the full width: in a third of it the labels were cut)
    m1.metric("Clean accuracy", f"{100 * result['clean_accuracy']:.1f}%")
    m2.metric("Robust accuracy", f"{100 * result['robust_accuracy']:.1f}%",
              help="Under the whole AutoAttack chain: the points no stage broke.")
    weakest = {compared.titles[a]: float(accuracy_at(v, [eps])[0]) for a, v in compared.ready.items()}
    if weakest:
        best_single, best_acc = min(weakest.items(), key=lambda kv: kv[1])
        m3.metric("Best single attack", f"{100 * best_acc:.1f}%",
                  help=f"{plain(best_single)}, from the curves above, at this ε.",
                  delta=f"{100 * (best_acc - result['robust_accuracy']):+.1f} pts vs AutoAttack", delta_color="off")
    stages = [{"Stage": attack_label(s["attack"]) if s["attack"] in ATTACKS else s["attack"].upper().replace("_", "-"),
               "Points attacked": s["attacked"], "Broken": s["broken"],
               "Robust accuracy after": s["robust_accuracy"], "Seconds": round(s["seconds"], 1)}
              for s in result["stages"]]
    st.dataframe(stages, hide_index=True, width="stretch",
                 column_config={"Robust accuracy after": st.column_config.NumberColumn(format="percent")})
    st.caption(f"{result['protocol']} · first {result['n_examples']} test images · cached beside the model "
               "(python -m robust_core.sweep computes the same).")
