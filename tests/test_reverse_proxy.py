"""The lecture-room recipe: nginx with deploy/nginx/robustness-lab.conf in front of the dashboard, over HTTPS.

The repository's own config file is started (its ports, upstream and certificate paths swapped for throwaway ones on
loopback, with a certificate made for the test), and checked the way a student's browser uses it: the page, the
health endpoint and the WebSocket upgrade over TLS; plain HTTP redirected; other host names refused; uploads over
the lab's cap refused by nginx before their bodies are read. Skipped where nginx or openssl is not installed
(.ci/run installs nginx from Debian's packages).
"""
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from .browser import REPO, dashboard, free_port

SITE_CONF = REPO / "deploy" / "nginx" / "robustness-lab.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
OPENSSL = shutil.which("openssl")
HOST = "lab.example.org"  # the config's server_name, kept as it is: the test sends it, as a student's browser would

pytestmark = pytest.mark.skipif(NGINX is None or OPENSSL is None,
                                reason="nginx or openssl is not installed (apt-get install nginx openssl)")


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "lab.crt", folder / "lab.key"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    return cert, key


def _site_config(*, http_port: int, https_port: int, upstream_port: int, cert: Path, key: Path) -> str:
    """The repository's config with loopback ports and the test's certificate: every swapped text must be there."""
    text = SITE_CONF.read_text(encoding="utf-8")
    for old, new in {"server 127.0.0.1:8501;": f"server 127.0.0.1:{upstream_port};",
                     "/etc/ssl/robustness-lab/lab.crt": str(cert), "/etc/ssl/robustness-lab/lab.key": str(key)}.items():
        assert old in text, f"{SITE_CONF.name} no longer has {old!r}: update this test"
        text = text.replace(old, new)
    for port, new_port in ((443, https_port), (80, http_port)):
        text, count = re.subn(rf"\blisten {port}\b", f"listen 127.0.0.1:{new_port}", text)
        assert count == 2, f"expected two servers listening on {port} (the lab's and the default one)"
    return text


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """(https port, http port, dashboard port, certificate) of nginx in front of a running dashboard."""
    tmp = tmp_path_factory.mktemp("nginx")
    cert, key = _certificate(tmp)
    http_port, https_port = free_port(), free_port()
    env = {"ROBUST_STORE_DIR": str(tmp / "store"), "STREAMLIT_SERVER_ALLOWED_HOSTS": HOST}
    with dashboard(env=env) as url:
        upstream_port = int(url.rsplit(":", 1)[1])
        (tmp / "robustness-lab.conf").write_text(_site_config(http_port=http_port, https_port=https_port,
                                                              upstream_port=upstream_port, cert=cert, key=key))
        # Debian's nginx.conf includes the site inside http { }; this is that frame, with every path in tmp.
        temp_paths = "".join(f"    {kind}_temp_path {tmp}/{kind};\n"
                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (tmp / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")  # workers must reach the root-only tmp folder
            + f"worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
            + "events { worker_connections 64; }\n"
            + f"http {{\n    access_log {tmp}/access.log;\n{temp_paths}    include {tmp}/robustness-lab.conf;\n}}\n")
        command = [NGINX, "-p", f"{tmp}/", "-e", f"{tmp}/error.log", "-c", f"{tmp}/nginx.conf"]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        server = subprocess.Popen([*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                    break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
                    time.sleep(0.1)
            yield https_port, http_port, upstream_port, cert
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def _exchange(sock, request: str, *, until_headers: bool) -> str:
    sock.sendall(request.encode())
    received = b""
    try:
        while not (until_headers and b"\r\n\r\n" in received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except (ssl.SSLError, ConnectionResetError):  # a connection nginx closes without an answer (444)
        pass
    return received.decode("latin-1")


def https(port: int, cert: Path, request: str, *, until_headers: bool = False, sni: str | None = HOST) -> str:
    context = ssl.create_default_context(cafile=str(cert))
    if sni is None:  # what a browser does for a typed IP address: no name to check the certificate against
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=sni) as sock:
        return _exchange(sock, request, until_headers=until_headers)


def get(path: str, host: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"


def websocket_upgrade(host: str, origin: str) -> tuple[str, str]:
    """The request a browser's page makes for /_stcore/stream, and the Sec-WebSocket-Accept it must get back."""
    key = base64.b64encode(os.urandom(16)).decode()
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    return (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: streamlit\r\n"
            f"Origin: {origin}\r\n\r\n"), accept


def test_the_page_its_health_and_its_websocket_come_through_https(proxy):
    https_port, _, _, cert = proxy
    health = https(https_port, cert, get("/_stcore/health", HOST))
    assert health.startswith("HTTP/1.1 200") and health.rstrip().endswith("ok"), health[:300]
    page = https(https_port, cert, get("/", HOST))
    assert page.startswith("HTTP/1.1 200") and '<div id="root">' in page, page[:300]
    assert "Server: nginx\r\n" in page  # no version number (server_tokens off)
    # The replica's cookie (tests/test_replicas.py): over TLS the browser never sends it over plain HTTP.
    assert re.search(r"\r\nSet-Cookie: lab_replica=\d+; Path=/; HttpOnly; SameSite=Lax; Secure\r\n", page), page[:600]
    host = f"{HOST}:{https_port}"  # as a browser sends it for a port other than 443
    request, accept = websocket_upgrade(host, f"https://{host}")
    answer = https(https_port, cert, request, until_headers=True)
    assert answer.startswith("HTTP/1.1 101"), answer[:300]
    assert f"sec-websocket-accept: {accept}".lower() in answer.lower(), answer[:300]


def test_plain_http_redirects_and_other_host_names_get_no_answer(proxy):
    https_port, http_port, upstream_port, cert = proxy
    with socket.create_connection(("127.0.0.1", http_port), timeout=10) as sock:
        redirect = _exchange(sock, get("/attack?n=500", HOST), until_headers=False)
    assert redirect.startswith("HTTP/1.1 301") and f"Location: https://{HOST}/attack?n=500\r\n" in redirect, redirect
    for host in ("127.0.0.1", "rebound.example.net"):  # an address typed by hand, a name pointed here by DNS rebinding
        assert https(https_port, cert, get("/", host), sni=None) == ""
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as sock:
            assert _exchange(sock, get("/", host), until_headers=False) == ""
    # Streamlit itself, behind the proxy, also refuses a WebSocket for another host name (server.allowedHosts).
    request, _ = websocket_upgrade(f"rebound.example.net:{upstream_port}", f"http://rebound.example.net:{upstream_port}")
    with socket.create_connection(("127.0.0.1", upstream_port), timeout=10) as sock:
        answer = _exchange(sock, request, until_headers=True)
    assert answer.startswith("HTTP/1.1 ") and not answer.startswith("HTTP/1.1 101"), answer[:300]


def test_an_upload_over_the_labs_cap_is_refused_by_nginx_before_its_body(proxy):
    https_port, _, _, cert = proxy
    cap_mb = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    assert f"client_max_body_size {cap_mb}m;" in SITE_CONF.read_text()  # nginx and Streamlit agree on the cap
    request = (f"PUT /_stcore/upload_file/session/file HTTP/1.1\r\nHost: {HOST}\r\n"
               f"Content-Length: {(cap_mb + 1) * 2**20}\r\nConnection: close\r\n\r\n")
    answer = https(https_port, cert, request, until_headers=True)
    assert answer.startswith("HTTP/1.1 413"), answer[:300]
