"""A browserless Streamlit client for load tests: it speaks the dashboard's own websocket protocol.

A student's laptop renders the page with its own CPU; on the 2-core machine that hosts the server, 30 Chromium
renderers would take the cores the server needs, and measure the laptops rather than the server. This client
does, per student, what a browser asks of the server and nothing else:

- downloads the page and its static scripts and style sheets (``GET /<page>``, then each ``static/...`` it names),
- opens the websocket ``/_stcore/stream`` and asks for a script run with the page's name and query string,
- reads every ForwardMsg (deltas, script-finished, auto-reruns of fragments) until the run finished,
- sends widget values back (a button click) and follows the fragment auto-reruns the server asks for (the
  job-status fragment every second) exactly as the browser's frontend does.

Its page-ready time is therefore the server's: from the first HTTP request until the last message of the
page's run arrived. It skips what only the browser does: layout, JavaScript, drawing.
"""
from __future__ import annotations

import asyncio
import gzip
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

# Downloads run in threads (urllib); enough of them that 60 students download at once, as 60 laptops would.
DOWNLOADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="download")


class ProtocolSession:
    """One browser tab's conversation with the server (one Streamlit session)."""

    def __init__(self, base: str):
        self.base = base
        self.ws = None
        self.page_hash = ""
        self.elements: list = []  # (type, element proto) of the deltas received in the current run
        self.fragment_timers: dict[str, asyncio.Task] = {}
        self.finished = asyncio.Event()
        self.last_status: int | None = None
        self.query = ""
        self.page_name = ""
        # Cookies the server set, sent back with every later request as a browser does: behind nginx's replicas
        # (robust_core.serve) the one that names the session's replica keeps the tab on it.
        self.cookies: dict[str, str] = {}

    def keep_cookies(self, headers) -> None:
        """Keep the cookies an HTTP answer's headers set (name and value; their attributes are the browser's)."""
        for cookie in headers.get_all("Set-Cookie") or ():
            name, _, value = cookie.split(";", 1)[0].partition("=")
            self.cookies[name.strip()] = value.strip()

    def _cookie_header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    async def download_page(self, page: str) -> int:
        """What a browser fetches before the websocket: the HTML and the static files it references. Returns bytes."""
        def fetch(path: str) -> bytes:
            request = urllib.request.Request(f"{self.base}/{path}",
                                             headers={"Accept-Encoding": "gzip", **self._cookie_header()})
            with urllib.request.urlopen(request, timeout=120) as response:
                self.keep_cookies(response.headers)
                body = response.read()
                return gzip.decompress(body) if response.headers.get("Content-Encoding") == "gzip" else body

        loop = asyncio.get_running_loop()
        html = (await loop.run_in_executor(DOWNLOADS, fetch, page)).decode()
        paths = dict.fromkeys(re.findall(r'(?:src|href)="\.?/?(static/[^"]+)"', html))
        # A browser fetches them over a few parallel connections.
        bodies = await asyncio.gather(*(loop.run_in_executor(DOWNLOADS, fetch, path) for path in paths))
        return len(html) + sum(map(len, bodies))

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        url = self.base.replace("http://", "ws://") + "/_stcore/stream"
        self.ws = await connect(url, subprotocols=["streamlit"], max_size=None, open_timeout=120,
                                additional_headers=self._cookie_header())
        self._reader = asyncio.ensure_future(self._read())

    async def close(self) -> None:
        for timer in self.fragment_timers.values():
            timer.cancel()
        if self.ws is not None:
            await self.ws.close()
        if getattr(self, "_reader", None):
            self._reader.cancel()

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "navigation":  # st.navigation names the page it ran: reruns of this page send its hash
                self.page_hash = msg.navigation.page_script_hash
            elif kind == "page_info_changed":
                self.query = msg.page_info_changed.query_string
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                self.elements.append((element.WhichOneof("type"), element))
            elif kind == "auto_rerun":  # a fragment with run_every: the browser reruns it on a timer
                fragment, interval = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
                if fragment not in self.fragment_timers:
                    self.fragment_timers[fragment] = asyncio.ensure_future(self._auto_rerun(fragment, interval))
            elif kind == "stop_auto_rerun":
                timer = self.fragment_timers.pop(msg.stop_auto_rerun.fragment_id, None)
                if timer:
                    timer.cancel()
            elif kind == "script_finished":
                self.last_status = msg.script_finished
                if msg.script_finished in (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR):
                    self.finished.set()

    async def _auto_rerun(self, fragment_id: str, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._send_rerun(fragment_id=fragment_id, auto=True)

    async def _send_rerun(self, *, widgets: list[WidgetState] = (), fragment_id: str = "", auto: bool = False) -> None:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        state.page_script_hash = self.page_hash
        state.page_name = self.page_name
        state.fragment_id = fragment_id
        state.is_auto_rerun = auto
        state.widget_states.widgets.extend(widgets)
        await self.ws.send(msg.SerializeToString())

    async def open(self, page: str, params: dict, *, timeout_s: float) -> None:
        """Run ``page`` with ``params`` in the query string and wait until its run finished."""
        self.page_name, self.query, self.page_hash = page, urlencode(params), ""
        await self.run(timeout_s=timeout_s)

    async def run(self, *, widgets: list[WidgetState] = (), timeout_s: float) -> None:
        # A whole run of the page: its fragments' timers start again from what this run sends (auto_rerun), as the
        # browser's do. Left running, the last page's job-status timers would rerun fragments of a page left behind.
        for timer in self.fragment_timers.values():
            timer.cancel()
        self.fragment_timers.clear()
        self.elements, self.finished = [], asyncio.Event()
        await self._send_rerun(widgets=widgets)
        await asyncio.wait_for(self.finished.wait(), timeout_s)

    async def wait_for(self, predicate, *, timeout_s: float) -> None:
        """Until ``predicate(elements)`` holds after a finished run (fragments and reruns the server starts
        included)."""
        deadline = time.monotonic() + timeout_s
        while not (self.finished.is_set() and predicate(self.elements)):
            if time.monotonic() > deadline:
                raise TimeoutError("the page never showed what was expected")
            await asyncio.sleep(0.05)

    def button_id(self, label: str) -> str:
        return next(e.button.id for kind, e in self.elements if kind == "button" and e.button.label == label)

    async def click(self, label: str, *, timeout_s: float) -> None:
        state = WidgetState(id=self.button_id(label), trigger_value=True)
        await self.run(widgets=[state], timeout_s=timeout_s)

    def texts(self) -> list[str]:
        return [e.markdown.body for kind, e in self.elements if kind == "markdown"]

    def exceptions(self) -> list[str]:
        return [e.exception.message for kind, e in self.elements if kind == "exception"]

    def has(self, kind: str) -> bool:
        return any(k == kind for k, _ in self.elements)
