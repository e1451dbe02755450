"""The in-sandbox half of `distill.verify.sandbox`, run as `python -I -S -c <this text> PAYLOAD_FD RESULT_FD`.

This file is never imported by the host. Its text is passed with `-c` so that it runs even where
the package itself is not visible inside the sandbox (a checkout under a hidden home directory).
It is trusted code that runs first, while the process is still root (in the sandbox), and:

1. reads the JSON payload from PAYLOAD_FD (a memfd: code, tests, limits) and closes it;
2. in fallback mode, moves itself into a new network namespace (bubblewrap did that already);
3. imports the prelude modules (later, as the sandbox user, a private interpreter install may not
   be readable: pyenv under a 0700 /root) and executes the prelude into the program's globals;
4. sets the rlimits (hard = soft, so the program cannot raise them back) and drops to the
   per-run sandbox uid: no capabilities, RLIMIT_NPROC then really counts (root is exempt), and
   file permissions apply (a root process can write any root-owned file, even read-only-mounted
   ones are only safe in bubblewrap mode);
5. runs the program and reports on RESULT_FD, one JSON object per line:
   {"event": "ready", ...} once set up, then per kind:
   stdio: {"event": "exit", "status": "ok" | "runtime_error" | "memory_limit", "error": ...}
   check: {"event": "result", "status": "passed" | "wrong_answer" | "runtime_error" | "memory_limit",
           "error": ...}
   calls: {"event": "case", "index": i, "status": "ok" | ..., "value": ...} per call, then {"event": "exit"}.

The program shares this process (so a check can call its functions), which means a program that
sets out to forge a report can do so (write to RESULT_FD). The sandbox contains hostile code; it
does not make a reward-hacking program's report trustworthy beyond the early-exit guard below.
"""

import builtins
import ctypes
import json
import os
import resource
import signal
import sys
import threading
import types

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38


class _CallTimeout(BaseException):
    """Raised in a functional call that ran past its limit.

    A BaseException, so that an `except Exception` in the program does not eat it.
    """


def _send(fd, **record):
    line = (json.dumps(record, default=repr) + "\n").encode()
    try:
        while line:
            line = line[os.write(fd, line) :]
    except OSError:
        os._exit(75)  # the host is gone: nothing left to report to


def _describe(exc):
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:300] + "..."


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _setup(p, out):
    # Started with -S (no site: it is slow): the site directories come from the host instead.
    sys.path[:] = p.get("sys_path") or sys.path
    builtins.exit = builtins.quit = sys.exit  # site would have added these
    libc = _libc()
    net = p["mode"] == "bwrap"
    if p["mode"] == "fallback":
        flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
        net = libc.unshare(flags) == 0
    for scratch in p.get("chmod_tmp", []):
        os.chmod(scratch, 0o1777)  # bubblewrap's tmpfs is root's 0755; the sandbox uid must write there

    # The program runs in a fresh module registered as __main__ (not in this harness's namespace):
    # pickle and multiprocessing find its functions as __main__.name, and a program that defines
    # `main` or `_send` cannot break the harness.
    module = types.ModuleType("__main__")
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    env_globals = module.__dict__
    for name in p.get("preload", []):
        try:
            __import__(name)
        except Exception:  # an optional extra (sortedcontainers) may be missing: the program's import says so
            pass
    if p.get("prelude"):
        exec(compile(p["prelude"], "<prelude>", "exec"), env_globals)

    limits = p["limits"]
    for name, value in limits.items():
        soft, hard = value if isinstance(value, list) else (value, value)
        resource.setrlimit(getattr(resource, name), (soft, hard))

    uid = p.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    # After the uid change: the kernel clears the death signal on credential changes. If the host
    # died before this line, exit now instead of running unsupervised.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != p["parent_pid"] and p["mode"] == "fallback":
        os._exit(76)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no setuid binaries (su, mount) to climb back with
    # Changing uid made the process non-dumpable, which makes /proc/self/fd root's and breaks
    # programs that read open('/dev/stdin').
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    os.chdir(p["workdir"])
    sys.argv = ["solution.py"]
    stdlib = os.path.dirname(os.__file__)
    _send(
        out,
        event="ready",
        net=net,
        uid=os.getuid(),
        euid=os.geteuid(),
        pid=os.getpid(),
        stdlib_readable=os.access(stdlib, os.R_OK | os.X_OK) and os.access(os.__file__, os.R_OK),
    )
    return env_globals


def _join_threads():
    me = threading.current_thread()
    for t in threading.enumerate():
        if t is not me and not t.daemon:
            t.join()


def _status_of(exc):
    return "memory_limit" if isinstance(exc, MemoryError) else "runtime_error"


def _run_stdio(p, g, out):
    try:
        exec(compile(p["code"], "<solution>", "exec"), g)
        _join_threads()
    except SystemExit as e:
        if e.code not in (None, 0):
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
            _flush()
            _send(out, event="exit", status="runtime_error", error=f"exit status {e.code!r}")
            os._exit(1)
    except BaseException as e:
        import traceback

        traceback.print_exc()
        _flush()
        _send(out, event="exit", status=_status_of(e), error=_describe(e))
        os._exit(1)
    _flush()
    _send(out, event="exit", status="ok")
    os._exit(0)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _tests_line(exc, source):
    """The line of the tests that raised, e.g. 'assert candidate([1, 2]) == 3'."""
    import traceback

    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<tests>":
            line = lineno
    if line is None:
        return None
    lines = source.splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else None


def _innermost_file(exc):
    import traceback

    name = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        name = frame.f_code.co_filename
    return name


def _run_check(p, g, out):
    try:
        exec(compile(p["code"], "<solution>", "exec"), g)
    except BaseException as e:
        what = "exit() while loading the solution" if isinstance(e, SystemExit) else _describe(e)
        _send(out, event="result", status=_status_of(e), error=what)
        os._exit(0)
    try:
        exec(compile(p["tests"], "<tests>", "exec"), g)
        entry = p.get("entry_point")
        if entry and not p.get("tests_call_check"):
            if entry not in g:
                _send(
                    out,
                    event="result",
                    status="runtime_error",
                    error=f"the solution defines no `{entry}` (the entry point the tests call)",
                )
                os._exit(0)
            g["check"](g[entry])
    except AssertionError as e:
        line = _tests_line(e, p["tests"])
        if _innermost_file(e) == "<tests>":
            _send(
                out,
                event="result",
                status="wrong_answer",
                error=f"failed: {line}" if line else "an assert failed",
            )
        else:  # the solution's own assert
            _send(
                out,
                event="result",
                status="runtime_error",
                error=_describe(e) + (f" (in: {line})" if line else ""),
            )
        os._exit(0)
    except BaseException as e:
        line = _tests_line(e, p["tests"])
        what = "exit() during the tests" if isinstance(e, SystemExit) else _describe(e)
        _send(out, event="result", status=_status_of(e), error=what + (f" (in: {line})" if line else ""))
        os._exit(0)
    _send(out, event="result", status="passed")
    os._exit(0)


def _jsonable(value):
    # LiveCodeBench compares after a JSON round trip: tuples become lists.
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def _run_calls(p, g, out):
    try:
        exec(compile(p["code"], "<solution>", "exec"), g)
    except BaseException as e:
        _send(out, event="case", index=0, status=_status_of(e), error="loading the solution: " + _describe(e))
        os._exit(0)
    name = p["fn_name"]
    cls = g.get("Solution")
    if isinstance(cls, type) and hasattr(cls, name):

        def fn(*args):
            return getattr(cls(), name)(*args)
    elif callable(g.get(name)):
        fn = g[name]
    else:
        _send(
            out,
            event="case",
            index=0,
            status="runtime_error",
            error=f"the solution defines neither `Solution.{name}` nor a function `{name}`",
        )
        os._exit(0)

    def _alarm(signum, frame):
        raise _CallTimeout()

    signal.signal(signal.SIGALRM, _alarm)
    for i, args in enumerate(p["calls"]):
        try:
            signal.setitimer(signal.ITIMER_REAL, p["call_timeout"])
            value = fn(*args)
            signal.setitimer(signal.ITIMER_REAL, 0)
        except _CallTimeout:
            _send(out, event="case", index=i, status="timeout", error=f"call ran past {p['call_timeout']:g}s")
            os._exit(0)
        except BaseException as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _send(out, event="case", index=i, status=_status_of(e), error=_describe(e))
            os._exit(0)
        _send(out, event="case", index=i, status="ok", value=_jsonable(value))
    _send(out, event="exit", status="ok")
    os._exit(0)


def main():
    payload_fd, out = int(sys.argv[1]), int(sys.argv[2])
    size = os.fstat(payload_fd).st_size
    p = json.loads(os.pread(payload_fd, size, 0))
    os.close(payload_fd)
    os.set_inheritable(out, False)  # programs the solution starts do not get the report channel
    try:
        g = _setup(p, out)
    except BaseException as e:
        _send(out, event="setup_error", error=_describe(e))
        os._exit(70)
    kind = p["kind"]
    if kind == "probe":
        os._exit(0)
    run = {"stdio": _run_stdio, "check": _run_check, "calls": _run_calls}[kind]
    run(p, g, out)


main()
