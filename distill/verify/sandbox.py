"""Run one untrusted Python program in a sandbox: bubblewrap when present, a hardened subprocess otherwise.

    from distill.verify.sandbox import Limits, get_sandbox
    box = get_sandbox("auto")                   # 'bwrap' | 'fallback' | 'auto' (bwrap when it works)
    out = box.run({"kind": "stdio", "code": "print(input()[::-1])"}, stdin=b"abc\\n")
    out.stdout, out.events[-1]                  # b'cba\\n', {'event': 'exit', 'status': 'ok'}

`distill.verify.code` builds on this; most callers want `verify_code` there, not this module.

What contains a program, in both modes:
- rlimits on CPU seconds, address space, file size, open files, core dumps, and tasks
  (RLIMIT_NPROC). RLIMIT_NPROC is counted per user and root is exempt, so when we run as root
  each run gets its own uid (2_000_000_000 + slot, a slot held by a file lock for the run): the
  kernel then counts exactly that run's processes and threads. Non-root runs get the current task
  count of their user plus `max_processes`.
- a wall-clock timeout, after which the process group is killed; then every process left with the
  run's uid (a daemon that called setsid has left the group) is found in /proc and killed.
- a scrubbed environment (PATH, locale, HOME/TMPDIR = the private temp dir: no API keys), stdout and
  stderr read up to a cap (a program printing gigabytes is killed, not buffered), stdin from a memfd.
- the dropped uid: no capabilities, no setuid binaries (no_new_privs), host files only as "other".

bubblewrap mode adds: a read-only root that holds only the system directories (SYSTEM_DIRS) and
the interpreter's own, so no home, /run, /var or checkout is there to read and no host Unix socket
to connect to; private /tmp and /dev/shm (tmpfs, size-capped), no network (own network namespace),
own PID/IPC/UTS namespaces, a new session, and death with the parent.

Fallback mode (no bubblewrap, or it cannot start): the harness unshares the network namespace
itself where the kernel allows it (root, or unprivileged user namespaces), works in a private temp
dir, and relies on the dropped uid for the file system (so a world-writable host Unix socket stays
reachable: only bubblewrap mode hides them). When even the network namespace is not
available, a loud warning says so once per process: then the program can reach the network.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import resource
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODES = ("auto", "bwrap", "fallback")
UID_BASE = 2_000_000_000
"""Sandbox uids are UID_BASE + slot: far from any real account, below 2**31 for tools using a signed int."""
SLOTS = 512
HARNESS_SOURCE = (Path(__file__).with_name("_harness.py")).read_text()
STDERR_KEEP = 32 << 10
"""Bytes of stderr kept (the tail, where a traceback ends)."""


class SandboxError(RuntimeError):
    """The sandbox itself failed (bwrap cannot start, setup crashed): not the program's fault."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed run."""

    timeout: float = 6.0
    """Wall-clock seconds per run (one stdin/stdout case, one check() run, one functional call)."""
    memory_mb: int = 1024
    """Address space per process (RLIMIT_AS), MiB. Python itself needs ~30."""
    max_processes: int = 16
    """Processes plus threads the program may have at once (fork bombs stop here)."""
    file_size_mb: int = 16
    """Largest file the program may write (RLIMIT_FSIZE), MiB."""
    open_files: int = 256
    output_bytes: int = 4 << 20
    """stdout (and stderr) bytes read before the program is killed (raised to 2x a larger expected output)."""
    tmp_mb: int = 64
    """Size of the private /tmp in bubblewrap mode (RAM-backed), MiB."""

    def __post_init__(self) -> None:
        for name in (
            "timeout",
            "memory_mb",
            "max_processes",
            "file_size_mb",
            "open_files",
            "output_bytes",
            "tmp_mb",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")


@dataclass
class RunOutcome:
    """What one sandboxed run did, as seen from the host."""

    exit_code: int | None
    """The program's exit status; None when a signal ended it (see `signal`)."""
    signal: int | None
    stdout: bytes
    stderr: bytes
    """The last STDERR_KEEP bytes."""
    events: list[dict[str, Any]]
    """Reports from the harness, in order ('ready' first, then per kind; see _harness.py)."""
    timed_out: bool = False
    """The host's wall-clock timeout fired."""
    output_exceeded: str | None = None
    """'stdout' or 'stderr' when the program wrote more than the cap and was killed for it."""
    stopped: bool = False
    """The caller's `on_event` asked to stop early (first failing case)."""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    maxrss_mb: float = 0.0
    stragglers: int = 0
    """Processes of the run's uid still alive after it ended, killed by the cleanup."""


@dataclass
class SandboxInfo:
    """What a probe run found this sandbox can do."""

    mode: str
    net_isolated: bool
    uid: int
    python: str
    stdlib_readable: bool
    """The sandbox uid can read the standard library (else only preloaded modules import)."""
    bind_back: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The sandbox


class Sandbox:
    """Runs harness payloads under one concrete mode ('bwrap' or 'fallback'); see `get_sandbox`."""

    def __init__(self, mode: str, python: str | None = None, limits: Limits | None = None):
        if mode not in ("bwrap", "fallback"):
            raise ValueError(
                f"Sandbox mode must be 'bwrap' or 'fallback', got {mode!r} (use get_sandbox for 'auto')"
            )
        self.mode = mode
        self.python = python or sys.executable
        self.limits = limits or Limits()
        self.root = os.geteuid() == 0
        self._bwrap = shutil.which("bwrap") if mode == "bwrap" else None
        if mode == "bwrap" and not self._bwrap:
            raise SandboxError(
                "mode='bwrap' but bubblewrap is not installed: `apt-get install bubblewrap` "
                "(or use mode='fallback' / 'auto')"
            )
        self._bwrap_size = self._bwrap is not None and "--size" in _bwrap_help(self._bwrap)
        self._sys_path = _interpreter_path(self.python)
        self._bind_back = _interpreter_dirs(self.python, self._sys_path) if mode == "bwrap" else []
        self.info: SandboxInfo | None = None

    def with_limits(self, limits: Limits) -> Sandbox:
        """The same sandbox (mode, python, probe) with other limits."""
        other = object.__new__(Sandbox)
        other.__dict__.update(self.__dict__)
        other.limits = limits
        return other

    # -- probing ---------------------------------------------------------------------------------

    def probe(self) -> SandboxInfo:
        """Start the harness once and read back what it achieved; raises SandboxError if it cannot start."""
        out = self.run({"kind": "probe"}, timeout=max(self.limits.timeout, 20.0))
        ready = next((e for e in out.events if e.get("event") == "ready"), None)
        if ready is None:
            raise SandboxError(
                f"the {self.mode} sandbox did not start (exit {out.exit_code}, signal {out.signal}): "
                f"{out.stderr.decode(errors='replace')[-500:]}"
            )
        self.info = SandboxInfo(
            self.mode,
            bool(ready.get("net")),
            int(ready.get("uid", -1)),
            self.python,
            bool(ready.get("stdlib_readable")),
            self._bind_back,
        )
        if self.mode == "fallback" and not self.info.stdlib_readable:
            _warn_once(
                "stdlib-private",
                "fallback sandbox: the sandbox user cannot read the interpreter's files "
                "(%s), so programs can import only the preloaded modules (distill.verify.sandbox."
                "FALLBACK_PRELOAD); bubblewrap mode has no such limit",
                os.path.dirname(os.__file__),
            )
        return self.info

    # -- one run --------------------------------------------------------------------------------

    def run(
        self,
        payload: dict[str, Any],
        stdin: bytes = b"",
        timeout: float | None = None,
        cpu_s: float | None = None,
        output_limit: int | None = None,
        on_event: Callable[[dict[str, Any]], bool] | None = None,
    ) -> RunOutcome:
        """Run one harness payload; `on_event(event)` returning False stops the run early (killed)."""
        limits = self.limits
        timeout = limits.timeout if timeout is None else timeout
        cpu = int(cpu_s if cpu_s is not None else timeout) + 1
        cap = max(limits.output_bytes, output_limit or 0)
        with self._slot() as uid, self._workdir(uid) as workdir:
            full = dict(payload)
            full.update(
                mode=self.mode,
                uid=uid,
                parent_pid=os.getpid(),
                workdir=workdir,
                chmod_tmp=["/tmp", "/dev/shm"] if self.mode == "bwrap" and self.root else [],
                limits=self._rlimits(cpu, uid),
                sys_path=self._sys_path,
            )
            if (
                self.mode == "fallback"
                and self.root
                and self.info is not None
                and not self.info.stdlib_readable
            ):
                # Loaded while still root: after the uid drop a private interpreter (pyenv under a
                # 0700 /root) cannot be read, so only what is already imported is importable.
                full.setdefault("preload", FALLBACK_PRELOAD)
            return self._spawn(full, stdin, timeout, cap, workdir, uid, on_event)

    def _rlimits(self, cpu: int, uid: int | None) -> dict[str, Any]:
        lim = self.limits
        nproc = lim.max_processes
        if uid is None:  # not root: RLIMIT_NPROC counts all our user's tasks; allow ours plus the budget
            nproc += _count_tasks(os.getuid())
        return {
            "RLIMIT_CPU": [cpu, cpu + 1],  # SIGXCPU at the soft limit, SIGKILL a second later
            "RLIMIT_AS": int(lim.memory_mb) << 20,
            "RLIMIT_NPROC": int(nproc),
            "RLIMIT_FSIZE": int(lim.file_size_mb) << 20,
            "RLIMIT_NOFILE": int(lim.open_files),
            "RLIMIT_CORE": 0,
        }

    def _argv(self, workdir: str, env: dict[str, str], payload_fd: int, result_fd: int) -> list[str]:
        # -S: no site module. It costs ~12 ms per start (it imports every .pth hook of the venv, such
        # as editable-install finders); the harness sets sys.path to the site directories instead.
        inner = [self.python, "-I", "-B", "-S", "-c", HARNESS_SOURCE, str(payload_fd), str(result_fd)]
        if self.mode == "fallback":
            return inner
        # Only what programs need is mounted, read-only: the system directories and the
        # interpreter's own. No /var, /run, /home, /root, /srv, /mnt or project checkout: no host
        # file to read and no host Unix socket to connect to (a world-writable socket under
        # /var/tmp was reachable while the whole root was bound).
        args = [self._bwrap]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--dev", "/dev", "--proc", "/proc"]
        for scratch in SCRATCH:  # private, RAM-backed, size-capped (POSIX semaphores live in /dev/shm)
            if self._bwrap_size:
                args += ["--size", str(int(self.limits.tmp_mb) << 20)]
            args += ["--tmpfs", scratch]
        made: set[str] = set()
        for keep in self._bind_back:
            # bubblewrap would create the missing parents 0700, which the sandbox uid cannot cross.
            parts = Path(keep).parts
            for i in range(2, len(parts)):
                parent = str(Path(*parts[:i]))
                if parent not in made:
                    made.add(parent)
                    args += ["--dir", parent]
            args += ["--ro-bind", keep, keep]
        args += ["--remount-ro", "/"]
        args += [
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--chdir",
            workdir,
            "--clearenv",
        ]
        if self.root:
            # Only what the harness needs to drop to the run's uid; it loses these with the drop.
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args + ["--"] + inner

    def _spawn(
        self,
        payload: dict,
        stdin: bytes,
        timeout: float,
        cap: int,
        workdir: str,
        uid: int | None,
        on_event: Callable[[dict[str, Any]], bool] | None,
    ) -> RunOutcome:
        env = sandbox_env(workdir)
        # The kernel carries a process's RSS from before exec into its ru_maxrss: bwrap (or the
        # fallback's python) starts from a fork of this process, so its peak reads at least our RSS
        # at that moment (1.4 GB in a process that has torch loaded). Below our own peak the figure
        # says nothing about the program; the judge reports the program's own peak instead.
        host_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        payload_fd = _memfd("distill-payload", json.dumps(payload).encode())
        stdin_fd = _memfd("distill-stdin", stdin)
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                self._argv(workdir, env, payload_fd, result_w),
                stdin=stdin_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(payload_fd, result_w),
                env=env,
                cwd="/",
                start_new_session=True,
            )
        except OSError as e:
            for fd in (payload_fd, stdin_fd, result_r, result_w):
                os.close(fd)
            raise SandboxError(f"cannot start the sandbox ({self.mode}): {e}") from e
        for fd in (payload_fd, stdin_fd, result_w):
            os.close(fd)
        out = _Collector(proc, result_r, cap, start + timeout, on_event)
        try:
            out.collect(lambda: self._cleanup(proc, uid, out.killed))
        finally:
            out.close()
        outcome = out.outcome(time.monotonic() - start)
        outcome.stragglers = out.stragglers
        end = next((e for e in outcome.events if e.get("event") == "program_end"), None)
        if end is not None and isinstance(end.get("maxrss_mb"), (int, float)):
            outcome.maxrss_mb = float(end["maxrss_mb"])  # the program's own peak, measured by the judge
        elif outcome.maxrss_mb <= host_peak_mb + 1.0:
            outcome.maxrss_mb = 0.0  # inherited from this process, not the program's: unknown
        return outcome

    def _cleanup(self, proc: subprocess.Popen, uid: int | None, killed: bool) -> int:
        """Kill the run's process group and every process left with its uid; return how many were left.

        In bubblewrap mode a run that ended by itself needs no search: its PID namespace died with
        its init, which the kernel does only after killing every process in it.
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if uid is None or (self.mode == "bwrap" and not killed):
            return 0
        return _kill_uid(uid)

    # -- per-run uid and directory --------------------------------------------------------------

    @contextlib.contextmanager
    def _slot(self) -> Iterator[int | None]:
        """A uid no other run on this machine uses now (root only; None otherwise)."""
        if not self.root:
            yield None
            return
        lock_dir = _lock_dir()
        for slot in range(SLOTS):
            fd = os.open(lock_dir / f"slot-{slot}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            uid = UID_BASE + slot
            if self.mode == "fallback":
                _kill_uid(uid)  # a run killed with its host (kill -9) may have left processes behind
            if processes_of(uid, zombies=True):
                # Processes of the last run in this slot, killed but not yet reaped (bubblewrap's PID
                # namespace kills them all when it ends, and init reaps them a moment later), still
                # count against RLIMIT_NPROC: the harness could not fork. Take another slot.
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                os.close(fd)  # releases the lock
            return
        raise SandboxError(f"all {SLOTS} sandbox slots in {lock_dir} are busy: too many concurrent runs")

    @contextlib.contextmanager
    def _workdir(self, uid: int | None) -> Iterator[str]:
        if self.mode == "bwrap":
            yield "/tmp"  # the private tmpfs
            return
        path = tempfile.mkdtemp(prefix="distill-sbx-")
        try:
            if uid is not None:
                os.chown(path, uid, uid)
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


FALLBACK_PRELOAD = [
    "typing",
    "collections",
    "heapq",
    "bisect",
    "math",
    "itertools",
    "functools",
    "operator",
    "string",
    "re",
    "copy",
    "random",
    "statistics",
    "datetime",
    "json",
    "io",
    "array",
    "fractions",
    "decimal",
    "dataclasses",
    "enum",
    "queue",
    "threading",
    "time",
    "numbers",
    "hashlib",
    "contextvars",
    "textwrap",
    "unicodedata",
    "struct",
    "base64",
    "binascii",
    "cmath",
    "secrets",
    "difflib",
    "pprint",
    "traceback",
    "weakref",
    "types",
    "sortedcontainers",
    # not for solutions but so that the hostile-program tests exercise the fallback sandbox itself,
    # not the missing import: a program that can open sockets and spawn processes must still be held
    "socket",
    "encodings.idna",
    "glob",
    "subprocess",
    "signal",
    "resource",
    "shutil",
    "select",
    "ctypes",
]
"""Modules importable after the uid drop in fallback mode (when the interpreter's files are private)."""


def sandbox_env(workdir: str) -> dict[str, str]:
    """The whole environment a program sees: nothing inherited, so no API key or token can leak in."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        # numeric libraries start one thread per core, which RLIMIT_NPROC would refuse
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


class _Collector:
    """Reads stdout, stderr and the harness reports until the run ends; enforces the caps and the deadline."""

    def __init__(
        self,
        proc: subprocess.Popen,
        result_fd: int,
        cap: int,
        deadline: float,
        on_event: Callable[[dict[str, Any]], bool] | None,
    ):
        self.proc, self.cap, self.deadline, self.on_event = proc, cap, deadline, on_event
        self.result_fd = result_fd
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stderr_total = 0
        self.result_buf = bytearray()
        self.events: list[dict[str, Any]] = []
        self.timed_out = False
        self.stopped = False
        self.output_exceeded: str | None = None
        self.status: int | None = None
        self.rusage: Any = None
        self.stragglers = 0
        self.killed = False
        self.sel = selectors.DefaultSelector()
        for name, fd in (
            ("stdout", proc.stdout.fileno()),
            ("stderr", proc.stderr.fileno()),
            ("result", result_fd),
        ):
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, name)
        try:
            self.pidfd: int | None = os.pidfd_open(proc.pid)
            self.sel.register(self.pidfd, selectors.EVENT_READ, "exit")
        except (AttributeError, OSError):  # Python < 3.9 or kernel < 5.3: poll instead
            self.pidfd = None

    def collect(self, cleanup: Callable[[], int]) -> None:
        killed_at: float | None = None
        exited_at: float | None = None
        while True:
            now = time.monotonic()
            if self.status is None and self._reap(block=False):
                # The program is gone. A daemon it left may still hold the pipes open: kill it.
                exited_at = now
                self.stragglers += cleanup()
            if exited_at is not None and (not self._open_pipes() or now - exited_at > 2.0):
                break  # reaped and drained (or something we cannot reach holds a pipe: keep what was read)
            if killed_at is None and now >= self.deadline:
                self.timed_out = True
            if killed_at is None and (self.timed_out or self.stopped or self.output_exceeded):
                killed_at = now
                self.killed = True
                cleanup()
            if exited_at is not None or killed_at is not None or self.pidfd is None:
                wait = 0.02
            else:
                wait = min(1.0, max(0.0, self.deadline - now))
            for key, _ in self.sel.select(timeout=wait):
                if key.data == "exit":
                    self.sel.unregister(key.fd)
                else:
                    self._read(key.fd, key.data)

    def _open_pipes(self) -> bool:
        return any(key.data != "exit" for key in self.sel.get_map().values())

    def _reap(self, block: bool) -> bool:
        try:
            pid, status, rusage = os.wait4(self.proc.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler in the caller): status unknown
            self.status = 0
            return True
        if pid == 0:
            return False
        self.status, self.rusage = status, rusage
        self.proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
        return True

    def _read(self, fd: int, name: str) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            return
        if name == "stdout":
            self.stdout += data
            if len(self.stdout) > self.cap:
                del self.stdout[self.cap :]
                self.output_exceeded = self.output_exceeded or "stdout"
        elif name == "stderr":
            self.stderr += data
            self.stderr_total += len(data)
            if len(self.stderr) > 2 * STDERR_KEEP:
                del self.stderr[:-STDERR_KEEP]
            if self.stderr_total > self.cap:
                self.output_exceeded = self.output_exceeded or "stderr"
        else:
            self.result_buf += data
            if len(self.result_buf) > self.cap:
                self.output_exceeded = self.output_exceeded or "report"
                return
            *lines, rest = self.result_buf.split(b"\n")
            self.result_buf = bytearray(rest)
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a program writing garbage to our channel gets no event out of it
                if not isinstance(event, dict):
                    continue
                self.events.append(event)
                if self.on_event is not None and not self.stopped and self.on_event(event) is False:
                    self.stopped = True

    def close(self) -> None:
        self.sel.close()
        for fd in (self.result_fd, self.pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for stream in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()

    def outcome(self, wall: float) -> RunOutcome:
        code = sig = None
        if self.status is not None:
            if os.WIFSIGNALED(self.status):
                sig = os.WTERMSIG(self.status)
            else:
                code = os.WEXITSTATUS(self.status)
                if code > 128 and code - 128 < signal.NSIG and self.proc.args[0].endswith("bwrap"):
                    code, sig = None, code - 128  # bubblewrap reports a signal death as 128 + signal
        ru = self.rusage
        return RunOutcome(
            exit_code=code,
            signal=sig,
            stdout=bytes(self.stdout),
            stderr=bytes(self.stderr[-STDERR_KEEP:]),
            events=self.events,
            timed_out=self.timed_out,
            output_exceeded=self.output_exceeded,
            stopped=self.stopped,
            wall_s=wall,
            cpu_s=(ru.ru_utime + ru.ru_stime) if ru else 0.0,
            maxrss_mb=(ru.ru_maxrss / 1024) if ru else 0.0,
        )


# ---------------------------------------------------------------------------------------------
# Choosing a mode


_CACHE: dict[tuple[str, str], Sandbox] = {}
_CACHE_LOCK = threading.Lock()
_WARNED: set[str] = set()


def get_sandbox(mode: str = "auto", python: str | None = None, limits: Limits | None = None) -> Sandbox:
    """A probed sandbox: 'bwrap', 'fallback', or 'auto' (bwrap when installed and working, else fallback).

    Probing starts the harness once per (mode, python) per process; later calls reuse it.
    """
    if mode not in MODES:
        raise ValueError(f"sandbox mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not sys.platform.startswith("linux"):
        raise SandboxError(
            f"the code sandbox needs Linux (namespaces, rlimits, memfd); this is {sys.platform}. "
            "Verify code on a Linux machine or in a Linux container."
        )
    python = python or sys.executable
    key = (mode, python)
    with _CACHE_LOCK:  # verify_many's threads ask at once: probe once
        box = _CACHE.get(key)
        if box is None:
            box = _resolve(mode, python)
            _CACHE[key] = box
    return box.with_limits(limits) if limits is not None and limits != box.limits else box


def _resolve(mode: str, python: str) -> Sandbox:
    if mode in ("auto", "bwrap") and shutil.which("bwrap"):
        box = Sandbox("bwrap", python)
        try:
            box.probe()
            return box
        except SandboxError as e:
            if mode == "bwrap":
                raise
            _warn_once(
                "bwrap-broken",
                "bubblewrap is installed but cannot start here (%s); "
                "code runs in the weaker fallback sandbox",
                str(e)[:300],
            )
    elif mode == "bwrap":
        raise SandboxError("mode='bwrap' but bubblewrap is not installed: `apt-get install bubblewrap`")
    elif mode == "auto":
        _warn_once(
            "no-bwrap",
            "bubblewrap not found: code runs in the fallback sandbox (no read-only root, "
            "no PID namespace). `apt-get install bubblewrap` for the full sandbox",
        )
    box = Sandbox("fallback", python)
    info = box.probe()
    if not info.net_isolated:
        _warn_once(
            "no-netns",
            "!!! SANDBOX WITHOUT NETWORK ISOLATION !!! Neither bubblewrap nor a network "
            "namespace is available, so untrusted code can reach the network. Install bubblewrap or "
            "run where user namespaces are allowed before verifying model-written code at scale.",
        )
    if not box.root:
        _warn_once(
            "not-root",
            "the fallback sandbox runs as your own user: the program can read and write "
            "your files. Install bubblewrap.",
        )
    return box


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(message, *args)


# ---------------------------------------------------------------------------------------------
# Helpers


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)  # no MFD_CLOEXEC: passed to the child explicitly
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _lock_dir() -> Path:
    """Where slot locks live: a root-only directory a sandboxed program cannot plant files in."""
    for base in (Path("/run"), Path(tempfile.gettempdir())):
        path = base / "distill-sandbox"
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            st = path.lstat()
        except OSError:
            continue
        if st.st_uid == os.geteuid() and not (st.st_mode & 0o022) and path.is_dir() and not path.is_symlink():
            return path
    raise SandboxError(
        "no safe directory for sandbox slot locks: /run/distill-sandbox and "
        f"{tempfile.gettempdir()}/distill-sandbox are missing, not ours, or writable by others"
    )


def processes_of(uid: int, zombies: bool = False) -> list[int]:
    """Processes whose real or effective uid is `uid` (from /proc/<pid>/status).

    `zombies=True` adds the zombies that another process must still reap (ours we reap ourselves).
    """
    me = str(os.getpid()).encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as f:
                status = f.read()
        except OSError:
            continue
        uid_line = status[status.find(b"\nUid:") + 5 :].split(b"\n", 1)[0].split()
        state = status[status.find(b"\nState:") + 7 :].split(b"\n", 1)[0].strip()
        if uid_line[:2] and (int(uid_line[0]) == uid or int(uid_line[1]) == uid):
            if not state.startswith(b"Z"):
                pids.append(int(entry.name))
            elif zombies and status[status.find(b"\nPPid:") + 6 :].split(b"\n", 1)[0].strip() != me:
                pids.append(int(entry.name))
    return pids


def _kill_uid(uid: int, patience: float = 5.0) -> int:
    """SIGKILL every live process of `uid` until none is left; return how many there were at first.

    Repeats because a fork bomb refills while we kill (RLIMIT_NPROC bounds how fast). The dead
    become zombies until their new parent (init) reaps them; `_slot` skips a uid that still has some.
    """
    first = None
    deadline = time.monotonic() + patience
    while True:
        pids = processes_of(uid)
        if first is None:
            first = len(pids)
        if not pids:
            return first
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            log.error(
                "sandbox uid %d still has live processes after %.0fs of killing: %s", uid, patience, pids[:10]
            )
            return first
        time.sleep(0.001)


def _count_tasks(uid: int) -> int:
    """Tasks (threads) of `uid` now: RLIMIT_NPROC counts these for a non-root user."""
    total = 0
    for pid in processes_of(uid):
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{pid}/status", "rb") as f:
                status = f.read()
            total += int(status[status.find(b"\nThreads:") + 9 :].split(b"\n", 1)[0])
    return total


SCRATCH = ("/tmp", "/dev/shm")
"""Directories bubblewrap replaces with a private, size-capped tmpfs."""
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""What bubblewrap mode mounts of the host (read-only; symlinks such as /bin -> usr/bin kept as links),
beside the interpreter's own directories. None of them holds a socket or is writable by others on a
standard system."""


def _interpreter_path(python: str) -> list[str]:
    """The interpreter's sys.path as its site module sets it up (site-packages included), directories only."""
    return [p for p in _interpreter_facts(python)["path"] if p and os.path.isabs(p)]


@functools.lru_cache(maxsize=8)
def _interpreter_facts(python: str) -> dict[str, Any]:
    code = "import sys, json; print(json.dumps({'path': sys.path, 'prefixes': [sys.prefix, sys.base_prefix]}))"
    try:
        text = subprocess.run(
            [python, "-I", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=sandbox_env("/tmp"),
            cwd="/",
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise SandboxError(f"cannot run the sandbox interpreter {python!r}: {e}") from e
    return json.loads(text)


def _interpreter_dirs(python: str, sys_path: list[str]) -> list[str]:
    """The interpreter's directories outside SYSTEM_DIRS, to bind read-only: its prefixes (a venv
    needs its pyvenv.cfg, a pyenv build its lib/), the executable's directory and sys.path."""
    prefixes = _interpreter_facts(python)["prefixes"]
    dirs = {os.path.realpath(python), os.path.abspath(python), *prefixes, *sys_path}
    dirs |= {os.path.realpath(d) for d in dirs}
    system = [os.path.realpath(d) for d in SYSTEM_DIRS]
    keep = set()
    for d in dirs:
        while d and not os.path.isdir(d):  # a file (the executable, python311.zip): its directory
            d = os.path.dirname(d)
        if d and d != "/" and not any(d == s or d.startswith(s + "/") for s in system):
            keep.add(d)
    # Bind only the outermost of nested directories.
    return sorted(d for d in keep if not any(d != o and d.startswith(o + "/") for o in keep))


def _bwrap_help(bwrap: str) -> str:
    try:
        return subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


__all__ = [
    "Limits",
    "RunOutcome",
    "Sandbox",
    "SandboxError",
    "SandboxInfo",
    "get_sandbox",
    "processes_of",
    "sandbox_env",
    "MODES",
]
