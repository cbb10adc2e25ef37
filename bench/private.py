"""A PostgreSQL cluster and a RabbitMQ node of one run's own, for the fault run (bench/chaos.py):
it restarts and kills them, which it may never do to the machine's shared instances.

- PostgreSQL: ``initdb`` into a temporary directory (as the ``postgres`` user when run as root:
  PostgreSQL refuses to run as root), a free port on 127.0.0.1, its unix socket in that directory.
- RabbitMQ: a node ``chaos<pid><n>@localhost`` on free AMQP and distribution ports, its Mnesia, logs
  and pid file in a temporary directory owned by the ``rabbitmq`` user, no plugins (so nothing
  clashes with the shared node's management port), its own config file (the machine's one names
  the shared node's listener). It shares the machine's epmd and Erlang cookie; nothing else.

Whatever is started is stopped and its directory removed by :meth:`close`, also after a failure;
a node that does not stop is killed by the pid in its pid file, never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import aio_pika
import asyncpg

from bench.core import log
from bench.infra import free_port

_numbers = itertools.count(1)


class PrivateInfraUnavailable(RuntimeError):
    """What is missing to start a private PostgreSQL or RabbitMQ on this machine."""


def _as_user(user: str) -> list[str]:
    """The command prefix that runs a program as ``user``: nothing when we are that user already,
    ``runuser`` when we are root; otherwise the run cannot own its instances."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise PrivateInfraUnavailable(f"no {user!r} user on this machine") from exc
    if os.geteuid() == entry.pw_uid:
        return []
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", user, "--"]
    raise PrivateInfraUnavailable(f"the fault run must run as root or as {user!r} to start its own instance")


def _owned_tempdir(prefix: str, user: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    entry = pwd.getpwnam(user)
    if os.geteuid() == 0:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _chown_tree(path: Path, user: str) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(command: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


# -- PostgreSQL ------------------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    found = os.environ.get("IMI_CHAOS_PG_BINDIR")
    candidates = [Path(found)] if found else [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"))[::-1]]
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb") or "").parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise PrivateInfraUnavailable("no PostgreSQL server binaries (initdb, pg_ctl): install postgresql")


class PrivatePostgres:
    """A throwaway cluster: :meth:`start`, :meth:`restart` (an immediate stop, as a crash, then a
    start with crash recovery), :meth:`close`."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.prefix = _as_user("postgres")
        self.port = free_port()
        self.dir: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        assert self.dir is not None
        return self.dir / "data"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args], timeout)

    async def start(self) -> None:
        if self.dir is None:
            self.dir = _owned_tempdir("imi-chaos-pg-", "postgres")
            done = await asyncio.to_thread(
                _run,
                [
                    *self.prefix,
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ],
                120,
            )
            if done.returncode != 0:
                raise PrivateInfraUnavailable(f"initdb failed: {done.stderr[-2000:]}")
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=128MB"
        )
        done = await asyncio.to_thread(
            self._pg_ctl, "-l", str(self.dir / "postgres.log"), "-w", "-t", "60", "-o", options, "start"
        )
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stdout[-1000:]} {done.stderr[-1000:]}")
        await self.wait_answering()

    async def wait_answering(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", timeout=3)
                await connection.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def stop(self, mode: str = "fast") -> None:
        if self.dir is None or not (self.data / "postmaster.pid").exists():
            return
        done = await asyncio.to_thread(self._pg_ctl, "-m", mode, "-w", "-t", "60", "stop")
        if done.returncode != 0 and (self.data / "postmaster.pid").exists():
            log(f"pg_ctl stop failed ({done.stderr.strip()[-300:]}); killing the postmaster")
            self._kill_postmaster()

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    async def restart(self) -> None:
        """Stopped as by a crash (``-m immediate``: no shutdown checkpoint), then started."""
        await self.stop("immediate")
        await self.start()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop("fast")
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# -- RabbitMQ --------------------------------------------------------------------------------------------


def rabbitmq_sbin() -> Path:
    found = os.environ.get("IMI_CHAOS_RABBITMQ_SBIN")
    for candidate in [Path(found)] if found else [Path("/usr/lib/rabbitmq/bin")]:
        if (candidate / "rabbitmq-server").exists() and (candidate / "rabbitmqctl").exists():
            return candidate
    raise PrivateInfraUnavailable("no RabbitMQ server (rabbitmq-server, rabbitmqctl in /usr/lib/rabbitmq/bin)")


class PrivateRabbitMQ:
    """A single RabbitMQ node of the run's own: :meth:`start`, :meth:`stop` (``rabbitmqctl stop``),
    :meth:`kill` (SIGKILL of its Erlang VM), :meth:`close`. Its data survive a stop, as a real
    node's do: durable queues and their messages come back."""

    def __init__(self) -> None:
        self.sbin = rabbitmq_sbin()
        self.prefix = _as_user("rabbitmq")
        self.node = f"chaos{os.getpid()}n{next(_numbers)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.dir: Path | None = None
        self.home = Path(pwd.getpwnam("rabbitmq").pw_dir)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        assert self.dir is not None
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # the Erlang cookie the CLI shares with the node
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _prepare(self) -> None:
        self.dir = _owned_tempdir("imi-chaos-rabbitmq-", "rabbitmq")
        for name in ("mnesia", "log"):
            (self.dir / name).mkdir()
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text("loopback_users = none\n")
        (self.dir / "rabbitmq-env.conf").write_text("ERL_EPMD_ADDRESS=127.0.0.1\n")
        (self.dir / "advanced.config").write_text("[].\n")
        _chown_tree(self.dir, "rabbitmq")

    def _command(self, program: str, *args: str) -> list[str]:
        return [
            *self.prefix,
            "env",
            "-i",
            *(f"{k}={v}" for k, v in self._env().items()),
            str(self.sbin / program),
            *args,
        ]

    async def start(self, timeout: float = 90) -> None:
        if self.dir is None:
            self._prepare()
        done = await asyncio.to_thread(_run, self._command("rabbitmq-server", "-detached"), 60, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmq-server did not start: {done.stdout[-1000:]} {done.stderr[-1000:]}")
        deadline = time.monotonic() + timeout
        while not await self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the private RabbitMQ node {self.node} did not answer in {timeout} s: {self.log_tail()}"
                )
            await asyncio.sleep(0.3)

    async def answers(self) -> bool:
        try:
            connection = await aio_pika.connect(self.url, timeout=3)
        except Exception:
            return False
        await connection.close()
        return True

    def pid(self) -> int | None:
        if self.dir is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            return int((self.dir / "rabbitmq.pid").read_text().strip())
        return None

    def _alive(self, pid: int | None) -> bool:
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        with contextlib.suppress(OSError):
            return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return True

    async def _wait_gone(self, pid: int | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def stop(self) -> None:
        """``rabbitmqctl stop`` (under a timeout); the VM is killed if it does not go."""
        pid = self.pid()
        if not self._alive(pid):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(_run, self._command("rabbitmqctl", "-n", self.node, "stop"), 60, cwd=self.dir)
        if not await self._wait_gone(pid, 30):
            log(f"{self.node} did not stop; killing pid {pid}")
            await self.kill()

    async def kill(self) -> None:
        """SIGKILL of the node's Erlang VM: the broker dies as on a power cut."""
        pid = self.pid()
        if self._alive(pid):
            assert pid is not None
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            await self._wait_gone(pid, 30)

    def log_tail(self, lines: int = 15) -> str:
        if self.dir is None:
            return ""
        with contextlib.suppress(OSError):
            text = (self.dir / "log" / f"{self.node}.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop()
        with contextlib.suppress(Exception):
            await self.kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
