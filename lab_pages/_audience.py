"""Who is using the server and what they may send it: lecture mode, the visitor behind a browser, the lecturer's
throttled key, uploads and widget values (the work they may queue: lab_pages._jobs)."""
from __future__ import annotations

import streamlit as st


_ERROR_DETAILS = st.get_option("client.showErrorDetails")  # as configured, read once per server process


def in_lecture_mode() -> bool:
    from robust_core.access import lecture_mode

    return lecture_mode()


def error_details_for_the_audience() -> None:
    """In lecture mode an uncaught error shows the room a generic message: no traceback, no file path, no code."""
    st.set_option("client.showErrorDetails", "none" if in_lecture_mode() else _ERROR_DETAILS)


# A lecture visitor's uploads (digit pictures, photos: the uploaders' own caps are 10 MB), held in the server's memory
# per session: one file at most, ids issued ahead of a PUT at most, and everything held together. The lecturer
# (weights files of up to 600 MB, server.maxUploadSize) and single-user mode have only Streamlit's cap.
VISITOR_UPLOAD_BYTES = 10 * 2**20
VISITOR_HELD_BYTES = 24 * 2**20
UNUSED_IDS_PER_SESSION = 4
_lecturer_sessions: set[str] = set()  # session ids in which the lecturer key was accepted (see current_visitor)


def accept_only_issued_uploads(manager=None, *, lecture=None) -> None:
    """Make the server keep only uploads it asked for, and in lecture mode only small ones from visitors.

    Streamlit's upload endpoint stores, in the session's memory, any file PUT under any made-up id of the sender's own
    session, each up to ``server.maxUploadSize`` (600 MB: the ImageNet weights), and it hands out ids to any session
    that asks, for as many file names as it names, whether or not its page shows an uploader: a short script in a
    visitor's tab could fill the server's memory. Wrapping the server's one upload manager (``manager``, default the
    running Streamlit's) once per process:
    - a file is kept only under an id issued to that session, once;
    - a session holds at most :data:`UNUSED_IDS_PER_SESSION` ids not yet used (older ones are forgotten);
    - in lecture mode (``lecture``: a function, default :func:`in_lecture_mode`), a visitor's session keeps no file
      over :data:`VISITOR_UPLOAD_BYTES` and no more than :data:`VISITOR_HELD_BYTES` in all."""
    if manager is None:
        from streamlit.runtime import Runtime

        if not Runtime.exists():  # (AppTest: no server, no upload endpoint)
            return
        manager = Runtime.instance().uploaded_file_mgr
    if getattr(manager, "_robust_lab_issued", None) is not None:
        return
    import threading
    from collections import deque

    lecture = lecture or in_lecture_mode
    issued: dict[str, deque] = {}
    lock = threading.Lock()
    get_upload_urls, add_file = manager.get_upload_urls, manager.add_file

    def recording_get_upload_urls(session_id, file_names):
        infos = get_upload_urls(session_id, list(file_names)[:UNUSED_IDS_PER_SESSION])
        with lock:
            unused = issued.setdefault(session_id, deque(maxlen=UNUSED_IDS_PER_SESSION))
            unused.extend(info.file_id for info in infos)
        return infos

    def checked_add_file(session_id, file):
        with lock:
            unused = issued.get(session_id, ())
            if file.file_id not in unused:
                raise PermissionError("an upload under a file id this server did not issue to this session")
            unused.remove(file.file_id)
            if not unused:
                issued.pop(session_id, None)
        if lecture() and session_id not in _lecturer_sessions:
            held = sum(len(f.data) for f in getattr(manager, "file_storage", {}).get(session_id, {}).values())
            if len(file.data) > VISITOR_UPLOAD_BYTES or held + len(file.data) > VISITOR_HELD_BYTES:
                raise PermissionError("a visitor's upload over the lecture room's size limits")
        add_file(session_id, file)

    manager.get_upload_urls, manager.add_file = recording_get_upload_urls, checked_add_file
    manager._robust_lab_issued = issued


def no_external_ip_lookup() -> None:
    """Never let the server ask the internet for its own address.

    Streamlit checks a cross-origin WebSocket's Origin against the machine's external IP, which it fetches from
    checkip.amazonaws.com (a blocking request, retried after every failure): any client sending a made-up Origin
    header would make the lecture server call out, and wait, again and again. An empty cached answer ends that; the
    same-origin connections of the room's browsers never needed it. (.streamlit/config.toml's server.address
    already stops the lookup of the headless start.)"""
    from streamlit import net_util

    if getattr(net_util, "_external_ip", "") is None:
        net_util._external_ip = ""


def only_offered_choices() -> None:
    """Make selectboxes, radios and multiselects return only options they offered.

    Streamlit (1.67) turns a choice the browser sent that is none of the options into that very string (it exists
    for ``accept_new_options``, which the lab never uses): a forged WebSocket message could hand a page
    ``n = "1000000"`` or a made-up model id where the widget only offers a list. Once per process, unknown values
    become the widget's default (a selectbox, a radio) or are dropped (a multiselect), and so does a value of the wrong
    type. A number input's NaN or infinity becomes its default too; Streamlit already resets a value outside a number
    input's or a slider's range."""
    from streamlit.elements.widgets.multiselect import MultiSelectSerde
    from streamlit.elements.widgets.radio import RadioSerde
    from streamlit.elements.widgets.selectbox import SelectboxSerde

    def single(serde_class):
        if getattr(serde_class, "_robust_lab_strict", False):
            return
        deserialize = serde_class.deserialize

        def offered_or_default(self, ui_value):
            if not isinstance(ui_value, str) or ui_value not in self.formatted_option_to_option_index:
                ui_value = None  # (None: the widget's default)
            return deserialize(self, ui_value)

        serde_class.deserialize, serde_class._robust_lab_strict = offered_or_default, True

    single(SelectboxSerde)
    single(RadioSerde)
    if not getattr(MultiSelectSerde, "_robust_lab_strict", False):
        deserialize = MultiSelectSerde.deserialize

        def offered_only(self, ui_value):
            if ui_value is not None:
                # (a list, or the protobuf's repeated field, iterable without __iter__; a lone string is no list)
                try:
                    items = [] if isinstance(ui_value, (str, bytes)) else list(ui_value)
                except TypeError:
                    items = []
                ui_value = [v for v in items if isinstance(v, str) and v in self.formatted_option_to_option_index]
            return deserialize(self, ui_value)

        MultiSelectSerde.deserialize, MultiSelectSerde._robust_lab_strict = offered_only, True
    from streamlit.elements.widgets.number_input import NumberInputSerde

    if not getattr(NumberInputSerde, "_robust_lab_strict", False):
        deserialize_number = NumberInputSerde.deserialize

        def finite_or_default(self, ui_value):
            # NaN or ±inf for an integer input made Streamlit's own int() raise in the page run.
            import math

            if ui_value is not None and (isinstance(ui_value, bool) or not isinstance(ui_value, (int, float))
                                         or not math.isfinite(ui_value)):
                ui_value = None
            return deserialize_number(self, ui_value)

        NumberInputSerde.deserialize, NumberInputSerde._robust_lab_strict = finite_or_default, True


# ---- lecture (audience) mode: see robust_core.access --------------------------------------------------------------
VISITOR_COOKIE = "robust_lab_visitor"


def current_visitor():
    """This browser as a :class:`robust_core.access.Visitor`: the public id of its secret token, and whether it
    entered the lecturer key. The secret is made once and kept in a cookie (see :func:`remember_visitor`), so a
    student who reloads the page, or opens a second tab, is still the owner of the models they trained."""
    import re
    import uuid

    from robust_core.access import Visitor, visitor_id

    secret = st.session_state.get("_owner_token")
    if secret is None:
        from_cookie = st.context.cookies.get(VISITOR_COOKIE)
        from_cookie = from_cookie if isinstance(from_cookie, str) else ""  # (AppTest has no real cookies)
        secret = from_cookie if re.fullmatch(r"[0-9a-f]{32}", from_cookie) else uuid.uuid4().hex
        st.session_state["_owner_token"] = secret
        st.session_state["_owner_cookie_saved"] = secret == from_cookie
    owner = visitor_id(secret)
    guard = lecturer_key_guard()
    if st.session_state.get("_lecturer") and guard.has_left(owner):
        st.session_state["_lecturer"] = False  # another tab of this browser left lecturer mode
    lecturer = bool(st.session_state.get("_lecturer")) or guard.is_lecturer(owner)
    if lecturer:  # (its uploads may be large: accept_only_issued_uploads)
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        if ctx is not None:
            _lecturer_sessions.add(ctx.session_id)
    return Visitor(owner=owner, lecturer=lecturer)


def remember_visitor() -> None:
    """Once per new browser: store the visitor's secret token in a cookie of this site (30 days, this site only), from a
    tiny embedded script: Streamlit reads cookies but cannot set them."""
    current_visitor()
    if st.session_state.get("_owner_cookie_saved"):
        return
    st.session_state["_owner_cookie_saved"] = True
    secret = st.session_state["_owner_token"]  # 32 hex digits (made above), nothing a visitor typed
    embed = getattr(st, "iframe", None) or __import__("streamlit.components.v1", fromlist=["html"]).html
    # Secure once served over HTTPS (a lecture room's reverse proxy): the browser then never sends the token in clear,
    # not even in the plain-HTTP request that the proxy answers with a redirect.
    cookie = f"{VISITOR_COOKIE}={secret}; path=/; max-age=2592000; SameSite=Strict"
    embed(f"""<script>window.parent.document.cookie = "{cookie}"
          + (window.parent.location.protocol === "https:" ? "; Secure" : "");
          </script>""", height=1)


@st.cache_resource(show_spinner=False)
def lecturer_key_guard():
    """The server's one count of wrong lecturer keys (robust_core.lecturer_key): shared by every session, so a
    visitor cannot reset it with a new tab or a new cookie."""
    from robust_core.lecturer_key import LecturerKeyGuard
    from robust_core.room_ledger import replica_ledger
    from robust_core.store import resolve_store_dir

    return LecturerKeyGuard(ledger=replica_ledger(resolve_store_dir()))  # replicas: one count for the room


def client_address() -> str | None:
    """The visitor's network address, or None when it is unknown: the WebSocket's peer; for a loopback peer (the lecture
    room's nginx on this host, for which Streamlit reports no address), the address nginx saw, the last X-Forwarded-For
    entry (nginx appends it to whatever the client sent). A header from any other peer is ignored: a client that
    reaches Streamlit directly could write anything there. Behind another proxy every visitor shares its address."""
    peer = st.context.ip_address
    if isinstance(peer, str) and peer:  # (AppTest has no real connection: not a string there)
        return peer
    forwarded = st.context.headers.get("X-Forwarded-For")
    return (forwarded.split(",")[-1].strip() or None) if isinstance(forwarded, str) else None


def _from_server_machine() -> bool:
    """Whether this browser runs on the server's own machine: a loopback WebSocket (Streamlit reports no address for
    it) that carries a Host header, as every real one does (AppTest has none), and that no proxy forwarded (the lecture
    room's nginx always adds X-Forwarded-For, to whatever the client sent)."""
    headers = st.context.headers
    forwarded = any(headers.get(name) for name in ("X-Forwarded-For", "X-Real-IP", "Forwarded"))
    return st.context.ip_address is None and bool(headers.get("Host")) and not forwarded


def _try_lecturer_key() -> None:
    """One attempt per entered value, made before the key field is drawn: the value is then cleared, so a rerun
    does not try it again (and count it again) and the typed key does not stay in the page."""
    key = st.session_state.get("_lecturer_key_input") or ""
    st.session_state["_lecturer_key_input"] = ""
    if not key:
        return
    verdict = lecturer_key_guard().attempt(key, visitor=current_visitor().owner,
                                           from_server_machine=_from_server_machine())
    st.session_state["_lecturer"] = verdict.accepted
    st.session_state["_lecturer_key_message"] = verdict.message


def lecturer_sidebar() -> None:
    """In lecture mode: the mode's badge and the lecturer's key field (in the sidebar), throttled."""
    if not in_lecture_mode():
        return
    if current_visitor().lecturer:
        st.caption(":material/co_present: **Lecture mode** · you are the lecturer (this browser stays it)")
        if st.button("Leave lecturer mode", key="_leave_lecturer", icon=":material/logout:",
                     help="This browser becomes a visitor again, e.g. before handing the laptop to a student."):
            lecturer_key_guard().leave(current_visitor().owner)
            st.session_state["_lecturer"] = False
            st.rerun()
        return
    st.caption(":material/co_present: **Lecture mode**: shipped and the lecturer's models are read-only; "
               "you can train small models of your own.")
    _try_lecturer_key()
    if st.session_state.get("_lecturer"):
        st.rerun()
    with st.expander("Lecturer", expanded=bool(st.session_state.get("_lecturer_key_message"))):
        st.text_input("Lecturer key", type="password", key="_lecturer_key_input")
        if message := st.session_state.pop("_lecturer_key_message", None):
            st.error(message)
