"""Every core: two replicas of the dashboard behind nginx (``python -m robust_core.serve``), a room of five through it.

The students speak Streamlit's own protocol (benchmarks/streamlit_client.py) and keep the cookie a browser keeps:
each opens the home page and a lecture path. nginx's access log names the replica that served each request, so the
test sees the affinity at work: both replicas get sessions, and each student's page, websocket and media requests
all reach one replica. Static files come from nginx itself, compressed and cached for a year. Skipped where nginx is
not installed (.ci/run installs it from Debian's packages).
"""
from __future__ import annotations

import asyncio
import gzip
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from email.message import Message
from pathlib import Path

import pytest

from robust_core import serve

from .browser import REPO, free_port

from benchmarks.streamlit_client import ProtocolSession

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")
LONG_CACHE = "public, max-age=31536000, immutable"
TIMEOUT_S = 120
LOG_LINE = re.compile(r'"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) \d+ replica=(?P<replica>\S+) '
                      r'cookie=(?P<cookie>\S+) ')


def _two_free_ports() -> int:
    """A port p with p + 1 free too: the replicas listen on consecutive ports."""
    for _ in range(50):
        port = free_port()
        try:
            serve.check_port_free("127.0.0.1", port + 1, "test")
            return port
        except serve.ServeError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _port_free(port: int) -> bool:
    try:
        serve.check_port_free("127.0.0.1", port, "test")
        return True
    except serve.ServeError:
        return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base URL, run folder, replica ports) of `robust_core.serve --replicas 2` on a fresh store."""
    tmp = tmp_path_factory.mktemp("replicas")
    first, port = _two_free_ports(), free_port()
    run_dir = tmp / "run"
    command = [sys.executable, "-m", "robust_core.serve", "--replicas", "2", "--first-port", str(first),
               "--port", str(port), "--store", str(tmp / "store"), "--run-dir", str(run_dir),
               "--nginx-workers", "1"]  # one worker: one round robin, so five new browsers split 3 / 2 exactly
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "ROBUST_SHIPPED_MODELS": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, said = time.monotonic() + 2 * TIMEOUT_S, ""
        while "Robustness Lab:" not in said:
            line = process.stdout.readline()
            assert line or process.poll() is None, f"serve stopped: {said}"
            assert time.monotonic() < deadline, f"serve did not start: {said}"
            said += line
        yield f"http://127.0.0.1:{port}", run_dir, [first, first + 1]
    finally:
        process.send_signal(signal.SIGTERM)  # what Ctrl-C or systemd's stop sends
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    # Every child went with it: no replica and no nginx is left listening.
    assert all(_port_free(p) for p in (first, first + 1, port)), "a replica or nginx outlived serve"


class Student(ProtocolSession):
    """A browser tab whose browser keeps cookies: the first answer's Set-Cookie goes with every later request."""

    def __init__(self, base: str):
        super().__init__(base)
        self.static_headers: dict[str, Message] = {}

    @property
    def cookie(self) -> str | None:
        """The Cookie header this tab sends (the client keeps them, and sends them on the WebSocket too)."""
        return self._cookie_header().get("Cookie")

    def fetch(self, path: str, *, method: str = "GET") -> tuple[int, Message, bytes]:
        headers = {"Accept-Encoding": "gzip", **self._cookie_header()}
        request = urllib.request.Request(f"{self.base}/{path}", headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                status, head, body = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, head, body = error.code, error.headers, error.read()
        self.keep_cookies(head)
        return status, head, gzip.decompress(body) if head.get("Content-Encoding") == "gzip" else body

    async def download_page(self, page: str) -> int:
        loop = asyncio.get_running_loop()
        status, head, html = await loop.run_in_executor(None, self.fetch, page)
        assert status == 200 and "Set-Cookie" in head, (status, head)  # a new browser: nginx names its replica
        paths = dict.fromkeys(re.findall(r'(?:src|href)="\.?/?(static/[^"]+)"', html.decode()))
        answers = await asyncio.gather(*(loop.run_in_executor(None, self.fetch, p) for p in paths))
        self.static_headers = {p: h for p, (s, h, _) in zip(paths, answers)}
        assert all(s == 200 for s, _, _ in answers)
        return len(html) + sum(len(b) for _, _, b in answers)


# What a lecture path's page shows once it is ready: the ε-slider figure; the Morph button.
READY = {"attack": lambda elements: any(kind == "plotly_chart" for kind, _ in elements),
         "classviz": lambda elements: any(kind == "button" and e.button.label == "Morph" for kind, e in elements)}


async def _student(base: str, path, record: dict) -> None:
    student = Student(base)
    record["student"] = student
    try:
        await student.download_page("")
        await student.connect()
        await student.open("", {}, timeout_s=TIMEOUT_S)
        await student.wait_for(lambda _: student.has("page_link"), timeout_s=TIMEOUT_S)
        await student.open(path.page, path.params, timeout_s=TIMEOUT_S)
        await student.wait_for(READY[path.page], timeout_s=TIMEOUT_S)
        record["exceptions"] = student.exceptions()
        record["status"] = student.last_status
        # A reload of the page, and the media and upload routes (Streamlit keeps both per process): with the
        # cookie, nginx sets none again and sends them to the same replica (the log says which).
        loop = asyncio.get_running_loop()
        record["reload"] = await loop.run_in_executor(None, student.fetch, path.page)
        record["media"] = await loop.run_in_executor(None, student.fetch, "media/not-a-file.png")
        record["upload"] = await loop.run_in_executor(
            None, lambda: student.fetch("_stcore/upload_file/no-session/no-file", method="PUT"))
    except Exception as exc:  # reported by the test with the others
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        await student.close()


async def _room(base: str, paths: list) -> list[dict]:
    records = [{} for _ in paths]
    await asyncio.gather(*(_student(base, path, record) for path, record in zip(paths, records)))
    return records


def _log(run_dir: Path, *, settle_s: float = 5.0) -> list[dict]:
    """nginx's access log; a websocket is logged once it closed, so wait until the five are there."""
    deadline = time.monotonic() + settle_s
    while True:
        lines = [m.groupdict() for m in map(LOG_LINE.search, (run_dir / "access.log").read_text().splitlines()) if m]
        if sum(line["path"] == "/_stcore/stream" for line in lines) >= 5 or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_five_students_through_nginx_stay_each_on_one_of_two_replicas(lab):
    from robust_core.lectures import lecture_paths

    base, run_dir, ports = lab
    paths = {p.name: p for p in lecture_paths()[0]}
    # The ε-collapse path (cached curves) and the morph path before its click, alternately.
    chosen = [paths["01_eps_collapse"], paths["03_morph_4_to_9"]] * 2 + [paths["01_eps_collapse"]]
    started = time.monotonic()
    records = asyncio.run(_room(base, chosen))
    room_s = time.monotonic() - started
    assert [r.get("error") for r in records] == [None] * 5, [r.get("error") for r in records]
    assert all(r["exceptions"] == [] for r in records), [r["exceptions"] for r in records]
    cookies = [r["student"].cookie for r in records]
    assert all(c and re.fullmatch(r"lab_replica=\d+", c) for c in cookies), cookies
    # Each student's page was sent by the replica its cookie names, and a reload (with it) sets none again.
    for record in records:
        status, head, html = record["reload"]
        assert status == 200 and b'<div id="root">' in html and "Set-Cookie" not in head, (status, head)
    log = _log(run_dir)
    served = Counter(int(line["replica"].rsplit(":", 1)[1]) for line in log if line["path"] == "/_stcore/stream")
    # Round robin over new browsers: five sessions split 3 / 2 over the two replicas.
    assert set(served) == set(ports) and sorted(served.values()) == [2, 3], (served, ports)
    pinned = [line for line in log if line["cookie"] != "-"]
    assert len(pinned) >= 5 * 4  # per student: its websocket, the reload, media, upload (and its static files)
    for line in pinned:  # every request a student sent with its cookie reached that replica, or nginx itself
        if not line["path"].startswith("/static/"):
            assert line["replica"] == f"127.0.0.1:{line['cookie']}", line
    by_student = Counter(c.split("=")[1] for c in cookies)
    first_pages = Counter(line["replica"].rsplit(":", 1)[1] for line in log if line["cookie"] == "-"
                          and line["path"] == "/")
    assert first_pages == by_student, (first_pages, by_student)  # the cookie names the replica that sent the page
    for record in records:  # media and uploads reached Streamlit (its answers), not nginx's own error pages
        assert record["media"][0] == 404 and record["upload"][0] in (400, 403, 404, 405), (record["media"][0],
                                                                                          record["upload"][0])
    print(f"\nfive students through nginx, two replicas: {room_s:.1f} s; sessions per replica {dict(served)}")


def test_static_files_come_from_nginx_compressed_and_cached_for_a_year(lab):
    base, run_dir, _ = lab
    student = Student(base)
    asyncio.run(student.download_page(""))
    assert len(student.static_headers) > 10  # the page's scripts and style sheets
    static = serve.streamlit_static_dir()
    compressed = 0
    for path, head in student.static_headers.items():
        assert head.get("Cache-Control") == LONG_CACHE, (path, dict(head))
        # Text is compressed, but not a file under nginx's gzip_min_length (1 kB), whose header would outweigh it.
        if path.endswith((".js", ".css")) and (static / path).stat().st_size >= 1024:
            assert head.get("Content-Encoding") == "gzip" and head.get("Vary") == "Accept-Encoding", (path, dict(head))
            compressed += 1
    assert compressed > 10
    script = next(p for p in student.static_headers if p.endswith(".js"))
    assert student.fetch(script)[2] == (static / script).read_bytes()  # the installed package's file, unchanged
    assert student.fetch("static/js/not-there.js")[0] == 404  # not the page, as Streamlit would answer
    log = _log(run_dir, settle_s=0)
    assert {line["replica"] for line in log if line["path"].startswith("/static/")} == {"-"}  # no replica asked


def test_the_generated_configs_pass_nginx_check(tmp_path):
    """The lecture-room (TLS) variant for 3 replicas and the loopback one are both valid nginx configs."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "lab.crt", tmp_path / "lab.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=lab.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    static = serve.streamlit_static_dir()
    tls = serve.TLS(server_name="lab.example.org", certificate=cert, key=key, https_port=8443, http_port=8080)
    for name, text in {"tls": serve.site_config(ports=[9001, 9002, 9003], static_dir=static, tls=tls),
                       "plain": serve.site_config(ports=[9001, 9002, 9003], static_dir=static)}.items():
        for port in (9001, 9002, 9003):
            assert f"server 127.0.0.1:{port};" in text and f"{port} robustness_lab_{port};" in text
        assert f"root {static};" in text
        site = tmp_path / f"{name}.conf"
        site.write_text(text)
        folder = tmp_path / name
        folder.mkdir()
        (folder / "nginx.conf").write_text(serve.nginx_config(run_dir=folder, site=site, workers=1, user=None))
        checked = subprocess.run([NGINX, "-p", f"{folder}/", "-e", str(folder / "error.log"),
                                  "-c", str(folder / "nginx.conf"), "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, (name, checked.stderr)
    assert "listen 8443 ssl;" in serve.site_config(ports=[9001], static_dir=static, tls=tls)
    plain = serve.site_config(ports=[9001], static_dir=static)
    assert "ssl" not in re.sub(r"#[^\n]*", "", plain) and "listen 127.0.0.1:8500 default_server;" in plain


def test_clear_errors_without_nginx_with_a_busy_port_and_for_a_replica_that_fails(tmp_path, monkeypatch, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert serve.main(["--replicas", "1", "--first-port", str(port), "--port", str(free_port())]) == 1
        assert f"port {port} (a replica) is in use" in capsys.readouterr().err
    # A replica that cannot start: the message shows the end of its log, not a traceback of serve.
    monkeypatch.setenv("ROBUST_SHIPPED_MODELS", "0")
    code = serve.main(["--replicas", "1", "--first-port", str(free_port()), "--port", str(free_port()),
                       "--run-dir", str(tmp_path / "run"), "--", "--server.noSuchOption", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "stopped while starting" in err and "noSuchOption" in err and "Traceback" not in err, err
    monkeypatch.setattr(serve.shutil, "which", lambda name: None)
    monkeypatch.setattr(serve.os, "access", lambda path, mode: False)
    assert serve.main(["--replicas", "1", "--first-port", str(free_port()), "--port", str(free_port())]) == 1
    assert "apt-get install nginx" in capsys.readouterr().err
