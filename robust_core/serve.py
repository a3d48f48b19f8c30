"""Every core: N Streamlit replicas of the dashboard behind nginx (Debian's package), on one machine.

One Streamlit process runs every visitor's script under one interpreter lock, so a room that clicks together waits
for one core. This starts N ``streamlit run app.py`` processes on loopback ports (8501, 8502, ...) and nginx in the
foreground in front of them, with the site file ``deploy/nginx/robustness-lab.conf`` written for those N replicas:
a browser stays on one replica (a cookie nginx sets), and nginx sends Streamlit's static files itself, compressed and
cached for a year. Ctrl-C (or SIGTERM) stops everything.

    python -m robust_core.serve                                  # one replica per core: http://127.0.0.1:8500/
    python -m robust_core.serve --replicas 4 --lecture --store /srv/lab-store
    sudo -E python -m robust_core.serve --replicas 8 --lecture \\
        --server-name lab.example.org --certificate /etc/ssl/lab/lab.crt --key /etc/ssl/lab/lab.key

Without ``--server-name`` nginx speaks plain HTTP on loopback only: for one machine, never for a room. With it, the
lecture-room recipe: TLS on 443, plain HTTP redirected, other host names refused. ``--print-config`` prints the site
file instead (for Debian's own nginx, /etc/nginx/sites-available). Everything after ``--`` is passed to each
``streamlit run`` (e.g. ``-- --server.maxUploadSize 200``). The environment (ROBUST_STORE_DIR, ROBUST_DATA_DIR,
ROBUST_LECTURE_MODE, ROBUST_LECTURER_KEY, ...) reaches every replica.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "deploy" / "nginx" / "robustness-lab.conf"
FIRST_PORT = 8501
LOCAL_PORT = 8500
START_TIMEOUT_S = 180.0
RESTARTS = 3  # a replica that dies is started again this many times; nginx sends its browsers to a backup meanwhile


class ServeError(Exception):
    """Something the person starting the lab must fix: said in one message, without a traceback."""


@dataclass(frozen=True)
class TLS:
    server_name: str
    certificate: Path
    key: Path
    https_port: int = 443
    http_port: int = 80
    address: str = ""  # "" : every address of the machine


# ----------------------------------------------------------------------------------------------------- the config


def _replica_block(ports: list[int]) -> str:
    """The part of the site file that depends on the replicas (between BEGIN replicas and END replicas)."""
    keepalive = 8
    lines = ["upstream robustness_lab {", *(f"    server 127.0.0.1:{p};" for p in ports),
             f"    keepalive {keepalive};", "}"]
    for i, port in enumerate(ports):
        backups = ports[i + 1:] + ports[:i]  # a fixed order: all browsers of a dead replica go to the same one
        lines += [f"upstream robustness_lab_{port} {{", f"    server 127.0.0.1:{port};",
                  *(f"    server 127.0.0.1:{b} backup;" for b in backups), f"    keepalive {keepalive};", "}"]
    lines += ["map $cookie_lab_replica $robustness_lab_pinned {", "    default robustness_lab;",
              *(f"    {p} robustness_lab_{p};" for p in ports), "}"]
    return "\n".join(lines) + "\n"


def _top_level_blocks(text: str) -> list[str]:
    """The file cut into top-level pieces: each ``server { ... }`` block apart, everything else between them."""
    pieces, current, depth = [], [], 0
    for line in text.splitlines(keepends=True):
        code = line.split("#", 1)[0]
        if depth == 0 and code.strip().startswith("server ") and current:
            pieces.append("".join(current))
            current = []
        current.append(line)
        depth += code.count("{") - code.count("}")
        if depth == 0 and code.strip() == "}" and "".join(current).lstrip().startswith("server "):
            pieces.append("".join(current))
            current = []
    pieces.append("".join(current))
    return [p for p in pieces if p]


def _swap(text: str, pattern: str, new: str, *, count: int) -> str:
    text, found = re.subn(pattern, new, text)
    if found != count:
        raise ServeError(f"{TEMPLATE.relative_to(REPO)} changed: expected {count} match(es) of {pattern!r}, "
                         f"found {found}; update robust_core/serve.py with it")
    return text


def site_config(*, ports: list[int], static_dir: Path, tls: TLS | None = None, local_port: int = LOCAL_PORT,
                template: str | None = None) -> str:
    """The site file for ``ports``: the lecture-room recipe with ``tls``, else a plain-HTTP one on loopback."""
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    text = _swap(text, r"(?s)(# BEGIN replicas\n).*?(# END replicas\n)",
                 lambda m: m.group(1) + _replica_block(ports) + m.group(2), count=1)
    text = _swap(text, r"(?m)^(\s*root )\S+/streamlit/static;",
                 lambda m: m.group(1) + str(static_dir) + ";", count=1)
    if tls is not None:
        prefix = f"{tls.address}:" if tls.address else ""
        text = _swap(text, r"\blisten 443\b", f"listen {prefix}{tls.https_port}", count=2)
        text = _swap(text, r"\blisten 80\b", f"listen {prefix}{tls.http_port}", count=2)
        text = _swap(text, r"server_name lab\.example\.org;", f"server_name {tls.server_name};", count=2)
        text = _swap(text, r"/etc/ssl/robustness-lab/lab\.crt", str(tls.certificate), count=2)
        text = _swap(text, r"/etc/ssl/robustness-lab/lab\.key", str(tls.key), count=2)
        if tls.https_port != 443:
            text = _swap(text, r"https://\$host\$request_uri", f"https://$host:{tls.https_port}$request_uri", count=1)
        return _generated(text, ports)
    # Plain HTTP: the lab's own server block alone (no redirect, no refusal of other names), on loopback.
    pieces = _top_level_blocks(text)
    labs = [p for p in pieces if p.lstrip().startswith("server ") and re.search(r"listen 443 ssl;", p)]
    if len(labs) != 1:
        raise ServeError(f"{TEMPLATE.relative_to(REPO)} changed: no single `listen 443 ssl;` server block")
    lab = _swap(labs[0], r"listen 443 ssl;", f"listen 127.0.0.1:{local_port} default_server;", count=1)
    lab = _swap(lab, r"server_name lab\.example\.org;", "server_name _;", count=1)
    lab = re.sub(r"(?m)^\s*ssl_\w+ [^\n]*\n", "", lab)
    rest = [p for p in pieces if not p.lstrip().startswith("server ")]
    header = ("# PLAIN HTTP ON LOOPBACK: for this machine only. A lecture room gets the TLS recipe (--server-name,\n"
              "# --certificate, --key).\n")
    return _generated("".join(rest).rstrip() + "\n\n" + lab, ports, note=header)


def _generated(text: str, ports: list[int], note: str = "") -> str:
    """``text`` with the template's opening comment (how to install it by hand) replaced by what wrote it."""
    body = text.split("\n\n", 1)[1] if text.startswith("# Robustness Lab for a lecture room") else text
    return (f"# Written by `python -m robust_core.serve` from deploy/nginx/robustness-lab.conf for {len(ports)} "
            f"replica(s) on\n# 127.0.0.1:{ports[0]}-{ports[-1]}.\n{note}\n" + body)


def nginx_config(*, run_dir: Path, site: Path, workers: int, user: str | None) -> str:
    """The frame Debian's /etc/nginx/nginx.conf gives a site, with every path of its own in ``run_dir``."""
    temp_paths = "".join(f"    {kind}_temp_path {run_dir}/{kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return ((f"user {user};\n" if user else "")
            + f"worker_processes {workers};\npid {run_dir}/nginx.pid;\nerror_log {run_dir}/nginx-error.log warn;\n"
            + "events { worker_connections 4096; }\n"
            + "http {\n    default_type application/octet-stream;\n    sendfile on;\n    tcp_nopush on;\n"
            # Which replica served each request, and the browser's cookie: shows the affinity at work.
            + "    log_format robustness_lab '$time_iso8601 $remote_addr \"$request\" $status $body_bytes_sent '\n"
            + "                              'replica=$upstream_addr cookie=$cookie_lab_replica $request_time';\n"
            + f"    access_log {run_dir}/access.log robustness_lab;\n{temp_paths}    include {site};\n}}\n")


# ----------------------------------------------------------------------------------------------- what is needed


def find_nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        raise ServeError("nginx is not installed: sudo apt-get install nginx (Debian's package)")
    return found


def streamlit_static_dir() -> Path:
    """Streamlit's ``static`` folder (index.html, static/js, static/css, static/media), found without importing it."""
    spec = importlib.util.find_spec("streamlit")
    if spec is None or not spec.submodule_search_locations:
        raise ServeError(f"streamlit is not installed for {sys.executable}: pip install -r requirements.txt")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (folder / "index.html").is_file() or not (folder / "static").is_dir():
        raise ServeError(f"streamlit's static files are missing from {folder}: reinstall streamlit")
    return folder


def check_port_free(address: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: TIME_WAIT is no conflict
        try:
            probe.bind((address or "0.0.0.0", port))
        except PermissionError:
            raise ServeError(f"port {port} ({what}) needs root: run with sudo, or choose a port above 1023") from None
        except OSError:
            raise ServeError(f"port {port} ({what}) is in use: stop what listens there (`ss -ltnp 'sport = :{port}'`)"
                             " or choose another port") from None


def _readable_by_others(path: Path) -> bool:
    """Whether a user who owns nothing (nginx's workers) can read ``path``: every folder above it searchable."""
    for folder in [path, *path.parents]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def _worker_user(run_dir: Path, static_dir: Path) -> str | None:
    """Started as root, nginx's workers run as www-data (they face the network); they must read the static files."""
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        www = pwd.getpwnam("www-data")
    except (ImportError, KeyError):
        www = None
    if www is not None and _readable_by_others(static_dir / "static"):
        for path in [run_dir, *run_dir.iterdir()]:
            os.chown(path, www.pw_uid, www.pw_gid)
        return "www-data"
    print(f"warning: nginx's workers run as root: www-data cannot read {static_dir}", file=sys.stderr)
    return "root"


# ---------------------------------------------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """In the child: SIGTERM when serve.py dies, even by SIGKILL, so no replica outlives it (Linux's prctl)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Replica:
    port: int
    log: Path
    command: list[str]
    env: dict
    process: subprocess.Popen | None = None
    restarts: int = 0

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stcore/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def last_lines(self, n: int = 20) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in lines[-n:]) or "    (nothing written)"


def replica_command(port: int, *, lecture: bool, streamlit_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
            "--server.address", "127.0.0.1", "--server.headless", "true", *streamlit_args,
            *(["--", "--lecture"] if lecture else [])]


def _stop(processes: list[subprocess.Popen], timeout_s: float = 15.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()  # nginx: fast shutdown; Streamlit: closes its sessions
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(replicas: list[Replica], timeout_s: float) -> None:
    deadline, waiting = time.monotonic() + timeout_s, list(replicas)
    while waiting:
        for replica in list(waiting):
            if replica.process.poll() is not None:
                raise ServeError(f"replica on port {replica.port} stopped while starting (exit status "
                                 f"{replica.process.returncode}); the end of {replica.log}:\n{replica.last_lines()}")
            if replica.healthy():
                waiting.remove(replica)
        if waiting and time.monotonic() > deadline:
            replica = waiting[0]
            raise ServeError(f"replica on port {replica.port} did not answer within {timeout_s:.0f} s; "
                             f"the end of {replica.log}:\n{replica.last_lines()}")
        time.sleep(0.3)


def _wait_until_listening(server: subprocess.Popen, address: str, port: int, run_dir: Path,
                          timeout_s: float = 30.0) -> None:
    """The address is printed once nginx answers on it, so that a browser opened at once finds it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                log = run_dir / "nginx-error.log"
                lines = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
                raise ServeError(f"nginx did not start listening on {address}:{port}; the end of {log}:\n"
                                 + "\n".join("    " + line for line in lines)) from None
            time.sleep(0.1)


class _Stopped(Exception):
    pass


def _raise_stopped(signum, frame):
    raise _Stopped(signal.Signals(signum).name)


def install_shipped_once(env: dict, run_dir: Path) -> None:
    """The shipped models and their evaluation results, installed before the replicas start, so that N processes
    do not all install them into the same store at once (each would otherwise do it on its first page)."""
    if env.get("ROBUST_SHIPPED_MODELS", "1") == "0":
        return
    log = run_dir / "install-shipped.log"
    with open(log, "wb") as out:
        done = subprocess.run([sys.executable, "-m", "robust_core.precomputed", "install"], cwd=REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = "\n".join("    " + line for line in log.read_text(errors="replace").splitlines()[-20:])
        raise ServeError(f"installing the shipped models failed (exit status {done.returncode}):\n{lines}")


def serve(args: argparse.Namespace) -> int:
    tls = _tls(args)
    ports = [args.first_port + i for i in range(args.replicas)]
    static_dir = streamlit_static_dir()
    site_text = site_config(ports=ports, static_dir=static_dir, tls=tls, local_port=args.port)
    if args.print_config:
        sys.stdout.write(site_text)
        return 0
    nginx = find_nginx()
    if tls is None and args.port in ports:
        raise ServeError(f"--port {args.port} is one of the replicas' ports ({ports[0]}-{ports[-1]}): choose another")
    for port in ports:
        check_port_free("127.0.0.1", port, "a replica")
    if tls is None:
        check_port_free("127.0.0.1", args.port, "nginx")
    else:
        check_port_free(tls.address, tls.https_port, "nginx, HTTPS")
        check_port_free(tls.address, tls.http_port, "nginx, HTTP")
    run_dir = Path(args.run_dir).resolve() if args.run_dir else Path(tempfile.mkdtemp(prefix="robustness-lab-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    site = run_dir / "robustness-lab.conf"
    site.write_text(site_text, encoding="utf-8")
    main_conf = run_dir / "nginx.conf"
    main_conf.write_text("")  # owned like the rest before the workers' user is chosen
    user = _worker_user(run_dir, static_dir)
    workers = args.nginx_workers or max(1, min(4, (os.cpu_count() or 1) // 4))
    main_conf.write_text(nginx_config(run_dir=run_dir, site=site, workers=workers, user=user), encoding="utf-8")
    nginx_command = [nginx, "-p", f"{run_dir}/", "-e", str(run_dir / "nginx-error.log"), "-c", str(main_conf)]
    checked = subprocess.run([*nginx_command, "-t"], capture_output=True, text=True, timeout=60)
    if checked.returncode != 0:
        raise ServeError(f"nginx refused the generated config {main_conf}:\n{checked.stderr.strip()}")

    env = dict(os.environ)
    if args.store:
        env["ROBUST_STORE_DIR"] = str(Path(args.store).expanduser().resolve())
    if args.data:
        env["ROBUST_DATA_DIR"] = str(Path(args.data).expanduser().resolve())
    # One cookie secret for all: the XSRF cookie a replica gave a browser still holds on the backup that takes the
    # browser over when its replica stops (Streamlit draws a random secret per process otherwise).
    env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
    # Each replica computes on its share of the cores, not on all of them at once (N x cores threads otherwise).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // len(ports))))
    streamlit_args = list(args.streamlit_args)
    if tls is not None and not any(a.startswith("--server.allowedHosts") for a in streamlit_args):
        streamlit_args += ["--server.allowedHosts", tls.server_name]  # Streamlit refuses other names too
    # Each replica names itself in the store's room ledger (robust_core.room_ledger): a visitor's quotas and the
    # lecturer key's throttle then count the whole room, whichever replica a browser lands on.
    replicas = [Replica(port=p, log=run_dir / f"replica-{p}.log",
                        env={**env, "ROBUST_REPLICA_ID": env.get("ROBUST_REPLICA_ID", socket.gethostname()) + f":{p}"},
                        command=replica_command(p, lecture=args.lecture, streamlit_args=streamlit_args))
                for p in ports]
    processes: list[subprocess.Popen] = []
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        install_shipped_once(env, run_dir)
        for replica in replicas:
            replica.start()
            processes.append(replica.process)
        _wait_until_healthy(replicas, args.start_timeout)
        server = subprocess.Popen([*nginx_command, "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                  preexec_fn=_die_with_parent)
        processes.append(server)
        _wait_until_listening(server, "127.0.0.1" if tls is None else (tls.address or "127.0.0.1"),
                              args.port if tls is None else tls.https_port, run_dir)
        url = (f"http://127.0.0.1:{args.port}/" if tls is None else
               f"https://{tls.server_name}{'' if tls.https_port == 443 else f':{tls.https_port}'}/")
        kind = "plain HTTP on loopback: this machine only" if tls is None else "TLS"
        print(f"Robustness Lab: {url}  ({len(ports)} replicas on ports {ports[0]}-{ports[-1]}, {kind}; "
              f"logs and config in {run_dir}). Ctrl-C stops it.", flush=True)
        return _watch(server, replicas, processes, run_dir)
    except (KeyboardInterrupt, _Stopped):
        return 0
    finally:
        for signum in handlers:  # a second Ctrl-C must not leave children half stopped
            signal.signal(signum, signal.SIG_IGN)
        _stop(processes)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _watch(server: subprocess.Popen, replicas: list[Replica], processes: list[subprocess.Popen], run_dir: Path) -> int:
    while True:
        if server.poll() is not None:
            log = run_dir / "nginx-error.log"
            lines = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
            raise ServeError(f"nginx stopped (exit status {server.returncode}); the end of {log}:\n"
                             + "\n".join("    " + line for line in lines))
        for replica in replicas:
            if replica.process.poll() is None:
                continue
            if replica.restarts >= RESTARTS:
                raise ServeError(f"replica on port {replica.port} stopped {RESTARTS + 1} times; the end of "
                                 f"{replica.log}:\n{replica.last_lines()}")
            print(f"replica on port {replica.port} stopped (exit status {replica.process.returncode}); starting it "
                  f"again. The end of its log:\n{replica.last_lines(10)}", file=sys.stderr, flush=True)
            replica.restarts += 1
            processes.remove(replica.process)
            replica.start()
            processes.append(replica.process)
        time.sleep(0.5)


def _tls(args: argparse.Namespace) -> TLS | None:
    given = [args.server_name, args.certificate, args.key]
    if not any(given):
        return None
    if not all(given):
        raise ServeError("TLS needs all three of --server-name, --certificate and --key")
    for path in (args.certificate, args.key):
        if not Path(path).is_file() and not args.print_config:
            raise ServeError(f"no such file: {path}")
    if not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]+", args.server_name):
        raise ServeError(f"--server-name {args.server_name!r}: a host name or IP address, as the students type it")
    return TLS(server_name=args.server_name, certificate=Path(args.certificate).resolve(), key=Path(args.key).resolve(),
               https_port=args.https_port, http_port=args.http_port, address=args.address)


def _parser() -> argparse.ArgumentParser:
    examples = __doc__.split("\n\n")[2]
    p = argparse.ArgumentParser(prog="python -m robust_core.serve", description=__doc__.split("\n\n")[0],
                                epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=os.cpu_count() or 1,
                   help="Streamlit processes (default: one per core, %(default)s here)")
    p.add_argument("--first-port", type=int, default=FIRST_PORT,
                   help="the replicas listen on 127.0.0.1, from this port up (default %(default)s)")
    p.add_argument("--port", type=int, default=LOCAL_PORT,
                   help="without TLS: nginx's port on 127.0.0.1 (default %(default)s)")
    p.add_argument("--lecture", action="store_true",
                   help="lecture (audience) mode, as `streamlit run app.py -- --lecture`")
    p.add_argument("--store", help="the model store folder, shared by every replica (default: $ROBUST_STORE_DIR)")
    p.add_argument("--data", help="the datasets folder (default: $ROBUST_DATA_DIR)")
    tls = p.add_argument_group("TLS (a lecture room)")
    tls.add_argument("--server-name", help="the name (or IP address) the students type; the certificate must name it")
    tls.add_argument("--certificate", help="the certificate (full chain) for --server-name")
    tls.add_argument("--key", help="its private key")
    tls.add_argument("--https-port", type=int, default=443)
    tls.add_argument("--http-port", type=int, default=80, help="plain HTTP: only a redirect to HTTPS")
    tls.add_argument("--address", default="", help="the address nginx listens on (default: all of the machine's)")
    p.add_argument("--nginx-workers", type=int, default=0,
                   help="nginx worker processes (default: a quarter of the cores, 1-4)")
    p.add_argument("--run-dir", help="folder for the generated config and the logs (default: a new temporary one)")
    p.add_argument("--start-timeout", type=float, default=START_TIMEOUT_S, help="seconds a replica may take to start")
    p.add_argument("--print-config", action="store_true", help="print the site file for nginx and exit")
    p.add_argument("streamlit_args", nargs="*", help="after --: options for every `streamlit run`")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.replicas < 1:
            raise ServeError("--replicas must be at least 1")
        for name in ("first_port", "port", "https_port", "http_port"):
            if not 1 <= getattr(args, name) <= 65535 - (args.replicas if name == "first_port" else 0):
                raise ServeError(f"--{name.replace('_', '-')} {getattr(args, name)} is not a usable port")
        return serve(args)
    except ServeError as exc:
        print(f"robust_core.serve: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
