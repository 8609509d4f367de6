"""A real Milvus standalone server on loopback, for the tests and the bench/ scripts.

The PyPI package ``milvus`` (2.3.5, a test dependency) ships a Milvus standalone binary and a
config template. :class:`MilvusProcess` uses its :class:`milvus.MilvusServerConfig` to write
``configs/milvus.yaml`` under a base dir, but picks the ports and starts the binary itself:

* **Free ports, never the defaults.** Every listener (proxy, proxy internal, the coordinators and
  nodes, the metrics/healthz port, the embedded etcd's client and peer ports) gets a free port probed
  from a random start in 20000-32000 (below Linux' ephemeral range), skipping Milvus' well-known
  defaults (19530, 2379, 9091, ...), so two test sessions, or a developer's own Milvus, on one
  machine do not clash. The ports are kept in ``base_dir/ports.json`` and reused by the next start
  on that base dir when still free (the uri stays the same across a restart). A start that fails
  with "address already in use" (another process took a port in the meantime) is retried on fresh
  ports.
* **Loopback only.** Each component advertises 127.0.0.1 (``rootCoord.ip``, ``proxy.ip``,
  ``queryCoord.ip``, ``queryNode.ip``, ``indexNode.ip``, ``dataCoord.ip``, ``dataNode.ip``; left
  empty, Milvus advertises "the first unicastable address", i.e. eth0's); ``etcd.endpoints``,
  ``indexCoord.bindIndexNodeMode.address``, ``minio.address`` and ``pulsar.address`` say 127.0.0.1
  too (minio and pulsar are unused: storage is local, the MQ is rocksmq). The embedded etcd, which
  otherwise listens on its hard defaults 127.0.0.1:2379/2380 whatever ``etcd.endpoints`` says, gets
  an etcd config file (``etcd.config.path``, a key the template lacks and this module adds) with
  127.0.0.1 URLs on the chosen ports. Milvus' gRPC and metrics listeners bind all interfaces
  (``[::]:port``; 2.3.5 has no setting for that) but every address anyone is told is 127.0.0.1.
  (Linux lets that dual-stack bind coexist with another process' listener on 127.0.0.1:port,
  which would then get Milvus' internal traffic: ports are probed just before the start, on the
  IPv4 wildcard, which does conflict with it.)
* **No orphans.** The server is started with ``PR_SET_PDEATHSIG = SIGKILL``: the kernel kills it
  when the thread that started it ends, so even a ``kill -9`` of the Python process (pytest) takes
  the server with it. Start it from a long-lived thread (the main thread: pytest fixtures, bench
  scripts). An ``atexit`` hook also stops every server this process started.
* **Logs** go to ``base_dir/logs``: ``milvus-stdout.log`` (Milvus' log lines) and
  ``milvus-stderr.log`` (the embedded etcd's, and Go's panics), appended to with one header line
  per start; Milvus also writes ``standalone-<server id>.log`` (a copy of its log lines, one file
  per run) and glog files there. A start that fails raises :class:`MilvusStartError` with the
  tails of this start's stderr, stdout and standalone log.
* **Outside the base dir** Milvus 2.3.5 writes, at paths it hard-codes, a pid file
  (``/run/milvus/standalone-<alias>.pid``; the alias is per base dir, see ``alias``) and
  ``/tmp/milvus/server_id_<pid>``; stop() and kill() delete both (a server killed with its parent
  leaves them behind).

The binary and its libraries (246 MB unpacked from the package's .lzma files, ~5 s) are unpacked
once into ``$LOOKALIKE_MILVUS_CACHE`` (default ``~/.cache/lookalike/milvus-2.3.5``) and shared by
every base dir; data, configs, logs and the run dir live in the base dir.

    from milvus_server import MilvusProcess

    with MilvusProcess(tmp / "milvus") as server:       # start() returns once it serves
        client = pymilvus.MilvusClient(server.uri)      # "http://127.0.0.1:<proxy port>"
        ...
    server.start()   # again, same base dir: the data is still there
    server.kill()    # SIGKILL, for crash tests; start() recovers
    server.stop()    # SIGTERM, then SIGKILL after stop_timeout

bench/ scripts import it the way they import tests/support.py::

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from milvus_server import MilvusProcess
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import fcntl
import hashlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

INSTALL_HINT = (
    'the Milvus tests need the "milvus" (2.3.5, a standalone Milvus server) and "pymilvus" packages: '
    'scripts/bootstrap test, or .venv/bin/python -m pip install -e ".[test]"'
)

try:
    from pymilvus import MilvusClient
    from pymilvus.client.types import LoadState

    import milvus  # the PyPI package with the server binary
except ImportError as exc:  # pragma: no cover - a broken test install
    raise ImportError(f"{exc}; {INSTALL_HINT}") from exc

LOOPBACK = "127.0.0.1"

# Components whose ``ip:`` is what they register in etcd for the others (and clients) to dial.
_IP_KEYS = ("rootCoord.ip", "proxy.ip", "queryCoord.ip", "queryNode.ip", "indexNode.ip", "dataCoord.ip", "dataNode.ip")
# Ports this module adds to the template's ``*_port`` items.
_EXTRA_PORTS = ("metrics_port", "etcd_peer_port")
# Milvus' defaults: left alone for a Milvus someone runs by hand next to the tests.
_WELL_KNOWN = {2379, 2380, 4222, 9000, 9091, 13333, 19529, 19530, 19531, 21121, 21123, 21124, 22930, 53100}
_PORT_RANGE = (20000, 32000)
# Keys milvus.yaml needs that the package's template lacks: added empty under their section.
_ADDED_KEYS = {
    "etcd": "  config:\n    path: # set by tests/milvus_server.py\n",
    "queryNode": "  gracefulStopTimeout: # set by tests/milvus_server.py\n",
    "indexNode": "  gracefulStopTimeout: # set by tests/milvus_server.py\n",
}
GRACEFUL_STOP_S = 2
# etcd.rootPath + "/" + etcd.metaSubPath (the template's) + "/session/"
_SESSION_PREFIX = "by-dev/meta/session/"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an http_proxy for loopback

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen between fork and exec

_running: set[MilvusProcess] = set()
_lock = threading.Lock()


class MilvusStartError(RuntimeError):
    """Milvus did not come up; the message ends with the tails of its logs."""


def _die_with_parent(parent_pid: int):
    def preexec() -> None:  # runs in the child, between fork and exec
        if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _probe(port: int) -> socket.socket | None:
    """A listening socket on ``port`` (all interfaces, as Milvus binds), or None when taken.

    SO_REUSEADDR as Go sets it: a port whose old connections sit in TIME_WAIT (a server that was
    just stopped) counts as free, a port anyone listens on does not."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None


def _allocate(keys: list[str], preferred: dict[str, int] | None) -> dict[str, int]:
    """One distinct free port per key: ``preferred`` when every one of them is free, else fresh
    ones probed upwards from a random start."""
    held: list[socket.socket] = []
    try:
        if preferred and set(keys) <= preferred.keys() and len({preferred[k] for k in keys}) == len(keys):
            for key in keys:
                sock = _probe(preferred[key])
                if sock is None:
                    break
                held.append(sock)
            else:
                return {key: preferred[key] for key in keys}
            for sock in held:
                sock.close()
            held.clear()
        ports: dict[str, int] = {}
        port = random.SystemRandom().randrange(*_PORT_RANGE)
        for key in keys:
            while True:
                port += 1
                if port >= _PORT_RANGE[1]:
                    port = _PORT_RANGE[0]
                if port in _WELL_KNOWN:
                    continue
                sock = _probe(port)
                if sock is not None:
                    held.append(sock)
                    ports[key] = port
                    break
        return ports
    finally:
        for sock in held:
            sock.close()


def _binary_dir() -> Path:
    """The unpacked Milvus binary and libraries, shared by every base dir (under a file lock)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lookalike"
    cache = Path(os.environ.get("LOOKALIKE_MILVUS_CACHE") or default / f"milvus-{milvus.__version__}")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        milvus._initialize_data_files(str(cache))  # unpacks cache/bin/*, skips what its md5 says is there
    return cache / "bin"


def _tail(path: Path, start: int = 0, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - limit))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc})"
    return text.strip() or "(empty)"


def _yaml_values(text: str) -> dict[str, str]:
    """The value of each dotted key in a YAML file the way MilvusServerConfig reads its template
    (two-space indents, ``key: value # comment``)."""
    values, path = {}, []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        m = re.match(r"^( *)([A-Za-z0-9_]+):([^#]*)", line.rstrip())
        if not m:
            continue
        path = path[: len(m.group(1)) // 2] + [m.group(2)]
        values[".".join(path)] = m.group(3).strip()
    return values


class MilvusProcess:
    """One Milvus standalone server on 127.0.0.1 with its data, configs and logs in ``base_dir``.

    ``time_tick_ms`` is ``proxy.timeTickInterval`` (Milvus' default: 200 ms): how often the proxy
    publishes time ticks, which bounds how long a Strong-consistency read waits for its writes.

    A restart on a base dir deletes the earlier run's component sessions from etcd itself (see
    :meth:`start`): left to their leases (``common.session.ttl``, 30 s), every Strong-consistency
    read after a restart would hang until they ran out.
    """

    def __init__(self, base_dir: Path, *, time_tick_ms: int = 200, stop_timeout: float = 30) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.log_dir = self.base_dir / "logs"
        self.time_tick_ms = int(time_tick_ms)
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.starts = 0
        self._log_offsets: dict[str, int] = {}
        # Milvus writes its pid to /run/milvus/standalone[-ALIAS].pid (2.3.5 reads no setting for
        # the directory: not MILVUS_RUN_DIR either), takes a lock that excludes no one and deletes
        # the file on exit: without an alias of its own every server on the machine shares (and
        # deletes) one pid file.
        self.alias = "lookalike-" + hashlib.sha1(str(self.base_dir).encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The proxy's port: what clients dial (gRPC and the REST API)."""
        if not self.ports:
            raise RuntimeError("the Milvus server was never started")
        return self.ports["proxy_port"]

    @property
    def uri(self) -> str:
        """``http://127.0.0.1:<proxy port>``, for ``pymilvus.MilvusClient(uri)``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def metrics_port(self) -> int:
        return self.ports["metrics_port"]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 120) -> None:
        """Starts (or restarts, on the same base dir) the server and returns once it serves:
        ``/healthz`` on the metrics port says OK, ``MilvusClient(uri).list_collections()``
        answers, no collection (of the default database) is still being reloaded, and nothing of
        an earlier run on this base dir holds up time ticks.

        That last part: the components of a server that was stopped or killed stay registered in
        etcd until their session leases run out (30 s; a SIGTERM does not revoke them all either),
        and until then the root coordinator's time-tick sync waits for the dead proxy, so every
        Strong-consistency read hangs. Their process is gone (its successor holds the same etcd
        data dir), so start() deletes those session keys through etcd's JSON gateway and waits
        until the root coordinator has dropped the dead proxy (it logs "Remove session from
        timeticksync", up to 2 s later; waited for at most 10 s).

        Raises :class:`MilvusStartError` (with the logs' tails) when the server does not come up."""
        if self.alive():
            raise RuntimeError("the Milvus server is already running")
        deadline = time.monotonic() + timeout
        bin_dir = _binary_dir()
        attempts = 3
        for attempt in range(attempts):
            self._configure(fresh_ports=attempt > 0)
            self._spawn(bin_dir)
            try:
                self._wait_ready(deadline)
                self._wait_time_ticks(deadline)
                return
            except MilvusStartError as exc:
                self._terminate(signal.SIGKILL)
                clash = "address already in use" in str(exc).lower()
                if not clash or attempt == attempts - 1 or time.monotonic() > deadline:
                    raise

    def stop(self) -> None:
        """SIGTERM (Milvus flushes and shuts down), SIGKILL after ``stop_timeout`` seconds.

        Milvus 2.3.5 with its embedded etcd ends even a clean shutdown with ``panic: context
        canceled`` in ``CloseEtcdClient`` (exit status -6 and a goroutine dump in
        milvus-stderr.log) once everything is flushed and closed: harmless, and not a failure here.
        """
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs; what was not yet durable is lost. start() recovers."""
        self._terminate(signal.SIGKILL)

    def __enter__(self) -> MilvusProcess:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.proc.pid}, {self.uri}" if self.alive() else "stopped"
        return f"MilvusProcess({str(self.base_dir)!r}, {state})"

    # ------------------------------------------------------------------ internals

    def _configure(self, *, fresh_ports: bool) -> None:
        """Ports, then ``configs/milvus.yaml`` and ``configs/etcd.yaml`` for this start."""
        config = milvus.MilvusServerConfig(data_dir=str(self.base_dir))
        # extra_configs only rewrites keys the template has: add (empty) the ones it lacks.
        for section, lines in _ADDED_KEYS.items():
            config.template_text, n = re.subn(
                rf"^{section}:\n", f"{section}:\n{lines}", config.template_text, count=1, flags=re.M
            )
            if n != 1:
                raise RuntimeError(f"the milvus package's config template has no top-level {section}: section")
        keys = sorted(k for k in config.configurable_items if k.endswith("_port")) + list(_EXTRA_PORTS)
        ports_file = self.base_dir / "ports.json"
        preferred = None
        if not fresh_ports:
            preferred = self.ports or (json.loads(ports_file.read_text()) if ports_file.exists() else None)
        self.ports = _allocate(keys, preferred)

        config.resolve_storage()  # base_dir/{configs,logs,data}; etcd, rocksmq and log paths
        for key, port in self.ports.items():
            if key in config.configurable_items:
                config.set(key, port)
        configs_dir = self.base_dir / "configs"
        etcd_yaml = configs_dir / "etcd.yaml"
        extra = {
            "etcd.config.path": str(etcd_yaml),
            "etcd.endpoints": f"{LOOPBACK}:{self.ports['etcd_port']}",
            "indexCoord.bindIndexNodeMode.address": f"{LOOPBACK}:{self.ports['index_coord_port']}",
            "minio.address": LOOPBACK,
            "pulsar.address": LOOPBACK,
            "proxy.timeTickInterval": self.time_tick_ms,
            # A stop (SIGTERM) of a standalone server stops the coordinators first; the query node
            # then waits, up to its graceful-stop timeout (common.gracefulStopTimeout, 1800 s),
            # for the gone query coordinator to move its segments elsewhere. Nothing to wait for:
            # writes are durable in rocksmq and etcd already.
            "queryNode.gracefulStopTimeout": GRACEFUL_STOP_S,
            "indexNode.gracefulStopTimeout": GRACEFUL_STOP_S,
            "common.gracefulStopTimeout": 20,
            **{key: LOOPBACK for key in _IP_KEYS},
        }
        config.extra_configs.update(extra)
        config.write_config()
        written = _yaml_values((configs_dir / "milvus.yaml").read_text())
        missed = {k: v for k, v in extra.items() if written.get(k) != str(v)}
        if missed:
            raise RuntimeError(f"the milvus.yaml template did not take these settings: {missed}")

        client, peer = (f"http://{LOOPBACK}:{self.ports[k]}" for k in ("etcd_port", "etcd_peer_port"))
        etcd_yaml.write_text(
            # "default": the member name Milvus' embedded etcd uses without a config file.
            f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\ninitial-cluster: default={peer}\n"
        )
        ports_file.write_text(json.dumps(self.ports, indent=1, sort_keys=True) + "\n")

    def _spawn(self, bin_dir: Path) -> None:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(self.ports["metrics_port"]),
            "MILVUSCONF": str(self.base_dir / "configs") + "/",
            "LD_LIBRARY_PATH": ":".join(p for p in (str(bin_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p),
        }
        header = f"==== start {self.starts} at {time.strftime('%Y-%m-%d %H:%M:%S')}: {self.uri} ====\n"
        self._log_offsets = {}
        files = {}
        try:
            for name in ("stdout", "stderr"):
                path = self.log_dir / f"milvus-{name}.log"
                files[name] = open(path, "ab")
                files[name].write(header.encode())
                files[name].flush()
                self._log_offsets[path.name] = files[name].tell()
            with _lock:
                self.proc = subprocess.Popen(
                    [str(bin_dir / "milvus"), "run", "standalone", "-alias", self.alias],
                    cwd=self.base_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=files["stdout"],
                    stderr=files["stderr"],
                    preexec_fn=_die_with_parent(os.getpid()),
                    start_new_session=True,  # a Ctrl-C on the terminal does not reach it: stop() does
                )
                _running.add(self)
        finally:
            for f in files.values():
                f.close()

    def _wait_ready(self, deadline: float) -> None:
        health = f"http://{LOOPBACK}:{self.ports['metrics_port']}/healthz"
        healthy, purged, last = False, False, "no answer yet"
        while True:
            if self.proc.poll() is not None:
                raise self._error(f"Milvus exited with status {self.proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise self._error(f"Milvus did not start in time ({last})")
            if not purged and self._server_id() is not None:
                # The sooner the better: the components look each other up by their sessions,
                # and a stale one has them retry with back-off for seconds.
                try:
                    self._purge_stale_sessions()
                    purged = True
                except (OSError, ValueError, KeyError):
                    pass  # etcd not up yet
            try:
                if not healthy:
                    with _NO_PROXY.open(health, timeout=2) as resp:
                        body = resp.read().decode(errors="replace")
                    healthy = resp.status == 200 and "OK" in body
                    last = f"/healthz: {resp.status} {body.strip()[:200]}"
                if healthy:
                    client = MilvusClient(uri=self.uri, timeout=5)
                    try:
                        # After a restart Milvus reloads the collections that were loaded, in the
                        # background (a few seconds; a query meanwhile fails "collection not
                        # loaded"): ready means none is still Loading.
                        loading = [
                            name
                            for name in client.list_collections()
                            if client.get_load_state(name)["state"] == LoadState.Loading
                        ]
                    finally:
                        client.close()
                    if not loading:
                        return
                    last = f"collections still loading: {loading}"
            except (OSError, urllib.error.URLError) as exc:
                last = f"/healthz: {exc}"
            except Exception as exc:  # noqa: BLE001 - pymilvus' errors while the proxy warms up
                last = f"list_collections: {type(exc).__name__}: {exc}"
            time.sleep(0.2)

    def _etcd(self, api: str, body: dict) -> dict:
        """A call to the embedded etcd's JSON gateway (``/v3/...`` on its client port)."""
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{self.ports['etcd_port']}/v3/{api}", data=json.dumps(body).encode(), method="POST"
        )
        with _NO_PROXY.open(request, timeout=5) as resp:
            return json.load(resp)

    def _server_id(self) -> int | None:
        """This run's server id, shared by all its components: Milvus writes it (``querynode-7``,
        ...) to /tmp/milvus/server_id_<pid> as soon as it has one."""
        try:
            text = (Path("/tmp/milvus") / f"server_id_{self.proc.pid}").read_text()
        except OSError:
            return None
        ids = [int(n) for n in re.findall(r"^[a-z]+-(\d+)$", text, re.M)]
        return max(ids) if ids else None

    def _purge_stale_sessions(self) -> int:
        """Deletes the sessions of earlier runs from etcd: node keys (``proxy-6``) and coordinator
        keys (``rootcoord``, whose value names its ServerID) of a server id below this run's (from
        /tmp/milvus, else the highest in etcd: ids only grow, so a lower one is an earlier run's).
        Each delete is a transaction on the key's revision: a session written meanwhile stays.
        Returns the id it took for this run's. Raises OSError while etcd does not answer."""
        prefix = _SESSION_PREFIX.encode()
        found = self._etcd(
            "kv/range",
            {
                "key": base64.b64encode(prefix).decode(),
                "range_end": base64.b64encode(prefix[:-1] + bytes([prefix[-1] + 1])).decode(),
            },
        )
        sessions = []
        for kv in found.get("kvs", []):
            name = base64.b64decode(kv["key"]).decode()[len(_SESSION_PREFIX) :]
            if m := re.fullmatch(r"[a-z]+-(\d+)", name):
                sessions.append((kv, int(m.group(1))))
                continue
            try:
                sessions.append((kv, int(json.loads(base64.b64decode(kv.get("value", "")))["ServerID"])))
            except (ValueError, KeyError, TypeError):
                continue  # "id", the id counter, and anything else that is not a session
        current = self._server_id() or max((server_id for _, server_id in sessions), default=0)
        for kv, server_id in sessions:
            if server_id < current:
                self._etcd(
                    "kv/txn",
                    {
                        "compare": [
                            {"key": kv["key"], "target": "MOD", "result": "EQUAL", "mod_revision": kv["mod_revision"]}
                        ],
                        "success": [{"request_delete_range": {"key": kv["key"]}}],
                    },
                )
        return current

    def _dead_proxies_in_time_tick_sync(self, current: int) -> set[str]:
        """The proxies of earlier runs the root coordinator's time-tick sync still waits for,
        from its log lines ("Init proxy sessions for timeticksync", "Add session for
        timeticksync", "Remove session from timeticksync") in this run's stdout."""
        log = self.log_dir / "milvus-stdout.log"
        with open(log, "rb") as f:
            f.seek(self._log_offsets.get(log.name, 0))
            text = f.read().decode(errors="replace")
        members: set[str] = set()
        what_id = r'"(Init proxy sessions for|Add session for|Remove session from) timeticksync"\] \[serverID=(\d+)\]'
        for what, server_id in re.findall(what_id, text):
            (members.discard if what.startswith("Remove") else members.add)(server_id)
        return members - {str(current)}

    def _wait_time_ticks(self, deadline: float) -> None:
        """Deletes the sessions of earlier runs (if :meth:`_wait_ready` has not already) and waits
        until the root coordinator's time-tick sync has dropped their proxies. See :meth:`start`."""
        while True:
            if self.proc.poll() is not None:
                raise self._error(f"Milvus exited with status {self.proc.returncode} while starting")
            try:
                current = self._purge_stale_sessions()
                break
            except (OSError, ValueError, KeyError) as exc:
                if time.monotonic() > deadline:
                    raise self._error(f"cannot clear the sessions of earlier runs from etcd ({exc})") from exc
            time.sleep(0.2)
        while dead := self._dead_proxies_in_time_tick_sync(current):
            if self.proc.poll() is not None:
                raise self._error(f"Milvus exited with status {self.proc.returncode} while starting")
            if time.monotonic() > deadline:
                raise self._error(f"the root coordinator still waits for the time ticks of dead proxies {sorted(dead)}")
            time.sleep(0.1)

    def _error(self, what: str) -> MilvusStartError:
        parts = [f"{what}; base dir {self.base_dir}"]
        run_logs = sorted(self.log_dir.glob("standalone-*.log"), key=lambda p: p.stat().st_mtime)[-1:]
        for path in [self.log_dir / "milvus-stderr.log", self.log_dir / "milvus-stdout.log", *run_logs]:
            if not path.exists():
                continue
            offset = self._log_offsets.get(path.name, 0)
            if path.name == "milvus-stderr.log":  # a Go panic: its message, not just the goroutine dump's end
                with open(path, "rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
                if m := re.search(r"^(panic: |fatal error: )", text, re.M):
                    parts.append(f"---- {path} (the panic) ----\n{text[m.start() : m.start() + 2000].strip()}")
            parts.append(f"---- {path} (tail) ----\n{_tail(path, offset)}")
        return MilvusStartError("\n".join(parts))

    def _terminate(self, sig: signal.Signals) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(self.stop_timeout if sig != signal.SIGKILL else 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        # What Milvus leaves outside the base dir, at paths it hard-codes: its pid file (removed by
        # Milvus itself only when nothing panics on the way out, see stop()) and a server-id file.
        for leftover in (
            *(Path(run_dir) / f"standalone-{self.alias}.pid" for run_dir in ("/run/milvus", "/tmp/milvus")),
            Path("/tmp/milvus") / f"server_id_{proc.pid}",
        ):
            leftover.unlink(missing_ok=True)
        with _lock:
            _running.discard(self)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            if server.proc is not None:
                server.proc.kill()
