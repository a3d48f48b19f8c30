"""A student's view of a challenge run (not a page): the nickname, the task's widget (a brush on the test image, an
answer, a drawing) with the networks' live reading as the server will score it, Submit, and their own entry's rank."""
from __future__ import annotations

import numpy as np
import streamlit as st

from lab_pages._audience import client_address, current_visitor
from lab_pages._challenges import THUMBNAIL_PX, board_view, challenge_room, model_title
from lab_pages._outputs import png_bytes
from lab_pages._text import plain



def nickname_form() -> str | None:
    """This browser's nickname, or the form to choose one (kept for the whole lecture, unique up to look-alikes)."""
    from robust_core.challenges import ChallengeError

    room, owner = challenge_room(), current_visitor().owner
    name = room.nickname(owner)
    if name is not None:
        st.caption(f":material/badge: You play as **{plain(name)}**")
        return name
    with st.form("nickname_form", border=True):
        typed = st.text_input("Your nickname", max_chars=24, placeholder="shown on the projector",
                              help="Plain text, at most 24 characters; kept for the whole lecture on this browser.")
        if st.form_submit_button("Join", icon=":material/login:", type="primary"):
            try:
                name = room.claim_nickname(owner, typed, address=client_address())
            except ChallengeError as exc:
                st.error(plain(exc))
                return None
            st.rerun()
    return None


def _reading_lines(scores: dict, models, *, label: int | None = None, names=None) -> list[str]:
    lines = []
    for model in models:
        read = scores["readings"][model]
        name = names[read["class"]] if names else read["class"]
        verdict = "" if label is None else (" · :red[**fooled**]" if read["class"] != label else " · not fooled")
        lines.append(f"**{plain(model_title(model))}** reads **{plain(name)}** ({100 * read['p']:.0f}%){verdict}")
    return lines


def fool_widget(run):
    """The brush on the test image; returns the payload to submit (or None) after showing the live reading."""
    from robust_core.challenges import BadSubmission
    from robust_core.challenges.scoring import CANVAS_SCALE
    from robust_core.data import dataset_info

    room = challenge_room()
    challenge = run.challenge
    info = dataset_info(challenge.dataset)
    x, label = room.test_image(challenge)
    side = CANVAS_SCALE * info.shape[1]  # 280 CSS pixels for a digit, 320 for a CIFAR-10 image
    # At 1280x720 the canvas, the controls and the networks' reading share the first screen: the reading is what the
    # student paints for.
    left, right = st.columns([3, 4])
    with right:
        brush, size = st.columns(2)
        mode = brush.segmented_control("Brush", ["Brighten", "Darken"], default="Brighten", key="fool_mode")
        width = size.slider("Brush width", 4, 40, 14, key="fool_width", help="Canvas pixels: 10 make one image pixel.")
        strength = st.slider("Strength (share of the budget)", 0, 100, 100, 5, key="fool_strength", format="%d%%")
    injected = st.session_state.get("fool_paint")  # (tests: an RGBA array instead of the browser's canvas)
    paint = injected
    with left:
        if injected is None:
            import io

            from PIL import Image

            from lab_pages._canvas import drawn_canvas

            background = Image.open(io.BytesIO(png_bytes(_image_array(x), size=side)))
            st.html('<div style="height: 2.4rem"></div>')  # (room for the canvas's toolbar, as on the morph's)
            paint = drawn_canvas(stroke_width=width, stroke_color="#000000" if mode == "Darken" else "#FFFFFF",
                                 background_image=background, height=side, width=side, drawing_mode="freedraw",
                                 key=f"fool_canvas_{run.id}")
    if paint is None:
        right.info("Paint on the image: what you paint moves the pixels within the budget.", icon=":material/brush:")
        return None
    payload = {"paint": paint, "strength": strength / 100.0}
    try:
        x_adv, scores = room.preview(run, payload)
    except BadSubmission as exc:
        right.error(plain(exc))
        return None
    with right:
        st.markdown("  \n".join(_reading_lines(scores, challenge.models, label=label, names=info.short_class_names)))
        picture, numbers = st.columns([1, 2], vertical_alignment="center")
        picture.image(png_bytes(_image_array(x_adv), size=THUMBNAIL_PX), output_format="PNG", width=THUMBNAIL_PX,
                      caption="what they see")
        numbers.markdown(f"Change: **L∞ {scores['linf']:.3f}** · L2 {scores['l2']:.2f}  \n"
                         f"(budget {challenge.norm.upper().replace('LINF', 'L∞')} {run.settings['budget']:g})")
    return payload


def _image_array(x):
    array = x[0].detach().cpu().numpy()
    return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)


def guess_widget(run):
    answer = run.challenge.answer
    # Empty until the student types: an untouched field (or a forged value Streamlit resets) submits nothing, never a
    # default that would pile up in the room's histogram.
    value = st.number_input("Your answer", min_value=answer.low, max_value=answer.high, value=None, step=0.005,
                            format="%.3f", key=f"guess_{run.id}", placeholder=f"{answer.low:g} to {answer.high:g}")
    return None if value is None else {"answer": float(value)}


def split_widget(run):
    from lab_pages._canvas import digit_canvas
    from robust_core.challenges import BadSubmission
    from robust_core.data import dataset_info

    challenge = run.challenge
    info = dataset_info(challenge.dataset)
    x = digit_canvas(st.container(), key="split")
    if x is None:
        return None
    payload = {"image": x[0].numpy()}
    try:
        _, scores = challenge_room().preview(run, payload)
    except BadSubmission as exc:
        st.error(plain(exc))
        return None
    a, b = challenge.models
    lines = _reading_lines(scores, (a, b), names=info.short_class_names)
    knn = scores["readings"].get("k-NN")
    if knn:
        lines.append(f"**k-NN** (what the drawing looks like) reads **{plain(info.short_class_names[knn['class']])}**")
    st.markdown("  \n".join(lines))
    if scores["success"]:
        st.success(f"It splits them: A reads {plain(info.short_class_names[challenge.target])}, B does not.",
                   icon=":material/call_split:")
    return payload


def _submit(run_id: int, payload: dict) -> None:
    """Submit, and say how it went."""
    from robust_core.challenges import BadSubmission, ChallengeError

    try:
        challenge_room().submit(run_id, current_visitor().owner, payload)
    except (ChallengeError, BadSubmission) as exc:
        st.error(plain(exc))
    else:
        st.success("Submitted: your entry is on the board.")


def own_entry(run) -> None:
    """This student's live entry and its rank(s), from the shared board."""
    view = board_view(run.id)
    owner = current_visitor().owner
    mine = next((e for e in view.board.entries if e.owner == owner), None)
    if mine is None:
        st.caption("You have no entry on the board yet.")
        return
    challenge = view.board.run.challenge
    if mine.id in view.thumbnails:  # (an answer has no picture: no empty column before it)
        columns = st.columns([1, 4], vertical_alignment="center")
        columns[0].image(view.thumbnails[mine.id], width=THUMBNAIL_PX, output_format="PNG")
    else:
        columns = [None, st.container()]
    if challenge.kind == "fool":
        ranks = [f"{plain(model_title(m))}: rank **{r}** of {len(view.board.ranks[m])}" if (r := view.board.rank_of(
            mine.id, m)) else f"{plain(model_title(m))}: not fooled" for m in challenge.models]
        columns[1].markdown(f"**Your entry** · {challenge.norm.upper().replace('LINF', 'L∞')} "
                            f"{mine.scores['norm']:.3f}  \n" + "  \n".join(ranks))
    elif challenge.kind == "split":
        rank = view.board.rank_of(mine.id, "split")
        columns[1].markdown("**Your entry** · " + (f"rank **{rank}** of {len(view.board.ranks['split'])}" if rank
                                                    else "does not split the models"))
    else:
        rank = view.board.rank_of(mine.id, "guess")
        columns[1].markdown(f"**Your answer** · {mine.answer:.3f}" + (f" · rank **{rank}**" if rank else ""))


def student_view(run) -> None:
    st.markdown(f"### {plain(run.challenge.title)}")
    st.markdown(plain(run.challenge.task))
    if run.challenge.kind == "fool":
        st.caption(f"Budget: {run.challenge.norm.upper().replace('LINF', 'L∞')} ≤ {run.settings['budget']:g} "
                   "(pixel scale 0–1). The server scores what you submit.")
    if nickname_form() is None:
        return
    widget = {"fool": fool_widget, "guess": guess_widget, "split": split_widget}[run.challenge.kind]
    from robust_core.challenges import ChallengeError
    from robust_core.data import DataNotFoundError

    try:
        payload = widget(run)
    except (ChallengeError, DataNotFoundError) as exc:  # a challenge's model removed, its dataset missing
        st.error(f"This challenge cannot be played on this server now: {plain(exc)}", icon=":material/error:")
        return
    open_now = run.state == "open"
    # Submitted from this run's widget values, not a callback's: a number typed and Submit clicked at once reach the
    # server in one rerun, and a callback bound to the previous run's payload would submit the previous number.
    # Enabled while the run is open even before anything is entered: a number typed and Submit clicked at once arrive
    # together, and a button disabled until the number's own rerun would swallow that first click.
    if st.button("Submit", type="primary", icon=":material/send:", disabled=not open_now, key=f"submit_{run.id}",
                 help=None if open_now else "The challenge is not open."):
        if payload is None:
            st.error("Nothing to submit yet: " + {"guess": "type your answer.", "fool": "paint on the image.",
                                                  "split": "draw a digit."}[run.challenge.kind])
        else:
            _submit(run.id, payload)
    own_entry(run)


__all__ = ["nickname_form", "student_view"]
