"""The in-sandbox half of `distill.verify.sandbox`, run as `python -I -S -c <this text> PAYLOAD_FD RESULT_FD`.

This file is never imported by the host. Its text is passed with `-c` so that it runs even where
the package itself is not visible inside the sandbox (a checkout under a hidden home directory).

Two processes, so that no verdict can come from the program under test:

- the *judge* (this process) reads the payload, sets up the limits and the sandbox uid, and then
  forks. It alone holds RESULT_FD and writes every report on it; it never runs a line of the
  program. It stays non-dumpable, so a process of the same uid cannot read its memory or open its
  file descriptors through /proc, nor ptrace it.
- the *program* (the forked child) closes RESULT_FD, runs the solution, and answers the judge's
  requests over a pair of pipes: "call this function with these arguments", "get this attribute".
  Values cross as plain data (`_encode` / `_decode` below: numbers, strings, containers, the
  LeetCode TreeNode / ListNode); any other object stays in the program and the judge holds an
  opaque handle whose `==` is identity. So a returned object that claims to equal everything, a
  patched `AssertionError`, a forged report line on any file descriptor, or `sys.exit(0)` in the
  middle of the tests cannot turn into a pass: the check's asserts run in the judge, on values.

Steps:
1. read the JSON payload from PAYLOAD_FD (a memfd: code, tests, limits) and close it;
2. in fallback mode, move into a new network namespace (bubblewrap did that already);
3. import the prelude modules and execute the prelude (trusted: before any program code);
4. set the rlimits (hard = soft) and drop to the per-run sandbox uid (no capabilities,
   RLIMIT_NPROC then counts, no_new_privs);
5. report {"event": "ready", ...}, fork, and per kind:
   stdio: the program runs with the case on stdin; the judge reports
          {"event": "exit", "status": "ok" | "runtime_error" | "memory_limit", "error": ...}
   check: the judge runs the tests against the program and reports
          {"event": "result", "status": "passed" | "wrong_answer" | "runtime_error" | "memory_limit", ...}
   calls: the judge makes each call (with its own per-call timeout) and reports
          {"event": "case", "index": i, "status": "ok" | ..., "value": ...} per call, then {"event": "exit"}.
   When the program dies (a signal, a limit, `os._exit`) the judge ends the same way (same signal or
   exit status) without a completion record, so the host reads the death as it always has.
"""

import builtins
import ctypes
import json
import os
import resource
import select
import signal
import struct
import sys
import threading
import types

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
FRAME_MAX = 64 << 20
"""Largest message between judge and program (a bigger one is the program breaking the channel)."""
JUDGE_OWNED = ("TreeNode", "ListNode", "tree_node", "list_node", "is_same_tree", "is_same_list")
"""Names the tests see from the judge's prelude even when the solution defines its own."""


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
    # The uid change made this process non-dumpable; the judge stays so (see the module doc).
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # After the uid change: the kernel clears the death signal on credential changes. If the host
    # died before this line, exit now instead of running unsupervised.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != p["parent_pid"] and p["mode"] == "fallback":
        os._exit(76)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # no setuid binaries (su, mount) to climb back with
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


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _join_threads():
    me = threading.current_thread()
    for t in threading.enumerate():
        if t is not me and not t.daemon:
            t.join()


def _status_of(exc):
    return "memory_limit" if isinstance(exc, MemoryError) else "runtime_error"


# ---------------------------------------------------------------------------------------------
# The channel between judge and program: length-prefixed JSON frames on a pair of pipes (plain fds
# rather than a socket pair: `import socket` alone costs ~10 ms of every sandboxed run)


class _ChannelBroken(Exception):
    """The program closed, died on, or wrote garbage into the channel."""


class _Chan:
    """One end of the channel: frames are read from `rfd` and written to `wfd`."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.timeout = None

    def close(self):
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def _put(chan, message):
    data = json.dumps(message).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(chan.wfd, view) :]


def _recv_exactly(chan, n, deadline=None):
    import time

    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([chan.rfd], [], [], left)[0]:
                raise TimeoutError("no answer on the test channel in time")
        chunk = os.read(chan.rfd, min(n - got, 1 << 20))
        if not chunk:
            raise _ChannelBroken("the program closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _get(chan):
    import time

    deadline = None if chan.timeout is None else time.monotonic() + chan.timeout
    (size,) = struct.unpack(">I", _recv_exactly(chan, 4, deadline))
    if size > FRAME_MAX:
        raise _ChannelBroken(f"a {size}-byte message on the test channel")
    try:
        message = json.loads(_recv_exactly(chan, size, deadline))
    except ValueError as e:
        raise _ChannelBroken(f"garbage on the test channel ({e})") from None
    if not isinstance(message, dict):
        raise _ChannelBroken("garbage on the test channel")
    return message


# ---------------------------------------------------------------------------------------------
# Values as plain data. A value is a graph: atoms (None, bool, int, float, str) inline, anything
# else a reference [index] into a table of entries, so aliasing and cycles survive (a linked list
# with a cycle, the same list passed twice). The walk is iterative: a 10^5-node list is no recursion.
# The program side turns what it cannot encode into a handle; the judge side refuses it.

_ATOMS = (type(None), bool, int, float, str)
_MUTABLE = ("list", "dict", "set", "deque", "bytearray", "node")


class _Codec:
    def __init__(self, node_classes, program):
        self.node_classes = node_classes  # {"TreeNode": cls, "ListNode": cls}: nodes are built as these
        self.program = program
        self.handles = {}  # program: hid -> object; judge: hid -> _Remote

    def encode(self, value, known=None):
        """(root ref, table, objects): `objects` maps each table index to its object; `known`
        (id -> index) gives objects the indices they had in the request, so the other side can
        refill its own objects in place."""
        known = known or {}
        done, objects, table, work = {}, {}, {}, []
        counter = [max(known.values(), default=-1) + 1]

        def ref(v):
            if type(v) in _ATOMS:
                return v
            key = id(v)
            if key in done:
                return [done[key]]
            if key in known:
                idx = known[key]
            else:
                idx = counter[0]
                counter[0] += 1
            done[key] = idx
            objects[idx] = v  # also keeps temporaries alive, so their ids stay unique
            work.append((idx, v))
            return [idx]

        root = ref(value)
        while work:
            idx, v = work.pop()
            table[str(idx)] = self._entry(v, ref)
        return root, table, objects

    def _entry(self, v, ref):
        if isinstance(v, _Remote):
            return ["handle", object.__getattribute__(v, "_hid")]
        # Subclasses of the plain types cross as the plain type: a str or int subclass with its own
        # __eq__ arrives in the judge as the value it holds, nothing more.
        if isinstance(v, int):
            return ["int", int.__int__(v)]
        if isinstance(v, float):
            return ["float", float.__float__(v)]
        if isinstance(v, str):
            return ["str", str.__str__(v)]
        for kind in ("list", "tuple", "set", "frozenset"):
            cls = getattr(builtins, kind)
            if isinstance(v, cls):
                return [kind, [ref(x) for x in cls.__iter__(v)]]
        if isinstance(v, dict):
            tag = type(v).__name__ if type(v).__name__ in ("Counter", "OrderedDict") else "dict"
            return ["dict", [[ref(k), ref(x)] for k, x in dict.items(v)], tag]
        if isinstance(v, (bytes, bytearray)):
            return ["bytearray" if isinstance(v, bytearray) else "bytes", bytes(v).hex()]
        if isinstance(v, complex):
            return ["complex", complex.__complex__(v).real, complex.__complex__(v).imag]
        name, module = type(v).__name__, type(v).__module__
        if name == "deque" and module == "collections":
            return ["deque", [ref(x) for x in list(v)]]
        if name == "TreeNode":
            return ["node", name, {"val": ref(v.val), "left": ref(v.left), "right": ref(v.right)}]
        if name == "ListNode":
            return ["node", name, {"val": ref(v.val), "next": ref(v.next)}]
        if not self.program:
            raise TypeError(f"the tests pass a {name} to the solution; only plain data can cross to it")
        if module.split(".")[0] == "numpy" and hasattr(v, "tolist"):
            return ["same", ref(v.tolist())]  # arrays and numpy scalars as the lists and numbers they hold
        hid = len(self.handles)
        self.handles[hid] = v
        if isinstance(v, types.ModuleType):
            return ["module", v.__name__, hid]
        return ["handle", hid]

    def decode(self, root, table, existing=None):
        """(value, built): the value of `root`; `built` maps table indices to objects. Objects in
        `existing` (index -> object) of the same type are refilled in place instead of rebuilt."""
        existing = existing or {}
        if not isinstance(table, dict):
            raise _ChannelBroken("a malformed value on the test channel")
        built, pending = {}, []

        def entry(idx):
            e = table.get(str(idx))
            if not isinstance(e, list) or not e or not isinstance(e[0], str):
                raise _ChannelBroken(f"a malformed value on the test channel (entry {idx!r})")
            return e

        def val(r):
            if type(r) in _ATOMS:
                return r
            if not (type(r) is list and len(r) == 1 and type(r[0]) is int):
                raise _ChannelBroken("a malformed value on the test channel")
            idx = r[0]
            if idx in built:
                return built[idx]
            e = entry(idx)
            kind = e[0]
            if kind in _MUTABLE:
                want = self._mutable_type(e)
                old = existing.get(idx)
                obj = old if type(old) is want else (want.__new__(want) if kind == "node" else want())
                built[idx] = obj
                pending.append((obj, e))  # filled below: its items may refer back to it
                return obj
            built[idx] = obj = self._immutable(e, val)
            return obj

        value = val(root)
        while pending:
            obj, e = pending.pop()
            kind = e[0]
            if kind in ("list", "deque", "set"):
                items = [val(x) for x in e[1]]
                obj.clear()
                (obj.update if kind == "set" else obj.extend)(items)
            elif kind == "dict":
                pairs = [(val(k), val(x)) for k, x in e[1]]
                obj.clear()
                obj.update(pairs)
            elif kind == "bytearray":
                obj[:] = bytes.fromhex(e[1])
            else:
                for attr, r in e[2].items():
                    if attr in ("val", "left", "right", "next"):
                        setattr(obj, attr, val(r))
        return value, built

    def _mutable_type(self, e):
        import collections

        kind = e[0]
        if kind == "node":
            cls = self.node_classes.get(e[1]) if len(e) == 3 and isinstance(e[2], dict) else None
            if cls is None:
                raise _ChannelBroken(f"a node of unknown type {e[1]!r} on the test channel")
            return cls
        if kind == "dict":
            tag = e[2] if len(e) > 2 else "dict"
            return {"Counter": collections.Counter, "OrderedDict": collections.OrderedDict}.get(tag, dict)
        return {"list": list, "set": set, "bytearray": bytearray, "deque": collections.deque}[kind]

    def _immutable(self, e, val):
        kind, arg = e[0], e[1] if len(e) > 1 else None
        if kind in ("tuple", "frozenset") and type(arg) is list:
            items = [val(x) for x in arg]
            return tuple(items) if kind == "tuple" else frozenset(items)
        if kind == "int" and type(arg) is int:
            return arg
        if kind == "float" and type(arg) in (int, float):
            return float(arg)
        if kind == "str" and type(arg) is str:
            return arg
        if kind == "bytes" and type(arg) is str:
            return bytes.fromhex(arg)
        if kind == "complex" and len(e) == 3:
            return complex(float(e[1]), float(e[2]))
        if kind == "same":
            return val(arg)
        if kind in ("handle", "module") and type(e[-1]) is int:
            if self.program:
                if e[-1] not in self.handles:
                    raise _ChannelBroken(f"an unknown handle {e[-1]!r}")
                return self.handles[e[-1]]
            # A module the judge has itself is used as is; importing one on the program's word
            # could run code in the judge, so anything else stays a handle.
            if kind == "module" and isinstance(arg, str) and arg in sys.modules:
                return sys.modules[arg]
            return self.handles.setdefault(e[-1], _Remote(e[-1]))
        raise _ChannelBroken(f"a malformed value on the test channel ({kind!r})")


# ---------------------------------------------------------------------------------------------
# The judge's view of the program's objects


class _SolutionError(Exception):
    """Raised in the judge when the program's code raised (a subclass per builtin exception type,
    so that a test's `except ValueError` still catches the solution's ValueError)."""

    status = "runtime_error"


class _SolutionExit(BaseException):
    """The program called exit(), died or broke the channel while the tests were calling it."""

    def __init__(self, message, called_exit=False):
        super().__init__(message)
        self.called_exit = called_exit  # False: the process is gone or garbled, and the judge ends as it did


_REMOTE_TYPES = {}


def _remote_exception(info):
    name = str(info.get("type", "Exception"))[:80]
    base = getattr(builtins, name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)) or base is Exception:
        base = None
    cls = _REMOTE_TYPES.get(name)
    if cls is None:
        cls = _REMOTE_TYPES[name] = type(name, (base, _SolutionError) if base else (_SolutionError,), {})
    exc = cls(str(info.get("message", ""))[:2000])
    if name == "MemoryError":
        exc.status = "memory_limit"
    return exc


class _Link:
    """The judge's end of the channel (one program per judge)."""

    sock = None
    codec = None

    @classmethod
    def ask(cls, op, value=None, **fields):
        """Send a request (with `value` encoded); return the decoded reply value and the request's objects."""
        root, table, objects = cls.codec.encode(value)
        try:
            _put(cls.sock, {"op": op, "args": root, "table": table, **fields})
            reply = _get(cls.sock)
        except (OSError, _ChannelBroken) as e:
            raise _SolutionExit(f"the program ended during the tests ({e})") from None
        if isinstance(reply.get("raise"), dict):
            raise _remote_exception(reply["raise"])
        if "exit" in reply:
            raise _SolutionExit(f"exit() during the tests (status {str(reply['exit'])[:40]})", called_exit=True)
        try:
            return cls.codec.decode(reply.get("value"), reply.get("table"), existing=objects)[0]
        except (_ChannelBroken, ValueError, TypeError, AttributeError, OverflowError) as e:
            raise _SolutionExit(f"garbage on the test channel ({e})") from None

    @classmethod
    def call(cls, hid, args, kwargs):
        # The program sends the arguments back after the call under the indices they went with, so
        # that in-place changes (a list sorted, a linked list rewired) show in the judge's objects.
        return cls.ask("call", [list(args), dict(kwargs)], target=hid)[0]


class _Remote:
    """An object that lives in the program: calls and attributes go over the channel; `==` is identity."""

    __slots__ = ("__weakref__", "_hid")

    def __init__(self, hid):
        object.__setattr__(self, "_hid", hid)

    def __call__(self, *args, **kwargs):
        return _Link.call(self._hid, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Link.ask("getattr", None, target=self._hid, name=name)

    def __setattr__(self, name, value):
        _Link.ask("setattr", value, target=self._hid, name=name)

    def _method(self, name, *args):
        return _Link.ask("method", list(args), target=self._hid, name=name)

    def __iter__(self):
        return self._method("iter")

    def __next__(self):
        return self._method("next")

    def __len__(self):
        return self._method("len")

    def __bool__(self):
        return self._method("bool")

    def __getitem__(self, key):
        return self._method("getitem", key)

    def __contains__(self, item):
        return self._method("contains", item)

    def __str__(self):
        return self._method("str")

    def __repr__(self):
        return f"<solution object #{self._hid}>"

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    __hash__ = object.__hash__


# ---------------------------------------------------------------------------------------------
# The program's side


_METHODS = {
    "iter": iter,
    "next": next,
    "len": len,
    "bool": bool,
    "getitem": lambda o, k: o[k],
    "contains": lambda o, x: x in o,
    "str": str,
}


def _node_classes(g):
    return {n: g[n] for n in ("TreeNode", "ListNode") if isinstance(g.get(n), type)}


def _exec_solution(p, g, sock):
    """Run the solution's code in `g`; on failure report how to the judge and end the process."""
    try:
        exec(compile(p["code"], "<solution>", "exec"), g)
    except SystemExit:
        _put(sock, {"load_error": {"status": "runtime_error", "error": "exit() while loading the solution"}})
        _flush()
        os._exit(0)
    except BaseException as e:
        _put(sock, {"load_error": {"status": _status_of(e), "error": _describe(e)}})
        _flush()
        os._exit(0)


def _serve(sock, reply):
    """Answer the judge's requests until it hangs up; never returns. `reply(msg)` handles one."""
    while True:
        try:
            msg = _get(sock)
        except (_ChannelBroken, OSError):
            _flush()
            os._exit(0)
        try:
            out = reply(msg)
        except SystemExit as e:
            _flush()
            _put(sock, {"exit": repr(e.code)})
            os._exit(0)
        except BaseException as e:
            out = {"raise": {"type": type(e).__name__, "message": str(e)[:2000]}}
        _put(sock, out)


def _program_check(p, g, sock):
    codec = _Codec(_node_classes(g), program=True)
    before = {k: id(v) for k, v in g.items()}
    _exec_solution(p, g, sock)
    names = {k: v for k, v in g.items() if not k.startswith("__") and before.get(k) != id(v)}
    root, table, _ = codec.encode(names)
    _put(sock, {"loaded": True, "value": root, "table": table})

    def reply(msg):
        target = codec.handles.get(msg.get("target"))
        value, built = codec.decode(msg.get("args"), msg.get("table"))
        op = msg.get("op")
        if op == "call":
            args, kwargs = value
            known = {id(o): i for i, o in built.items()}
            result = target(*args, **{str(k): v for k, v in kwargs.items()})
            root, table, _ = codec.encode([result, value], known)
            return {"value": root, "table": table}
        if op == "getattr":
            result = getattr(target, str(msg.get("name")))
        elif op == "setattr":
            setattr(target, str(msg.get("name")), value)
            result = None
        elif op == "method":
            result = _METHODS[msg.get("name")](target, *value)
        else:
            raise ValueError(f"unknown request {op!r}")
        root, table, _ = codec.encode(result)
        return {"value": root, "table": table}

    _serve(sock, reply)


def _jsonable(value):
    # LiveCodeBench compares after a JSON round trip: tuples become lists.
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def _program_calls(p, g, sock):
    _exec_solution(p, g, sock)
    name = p["fn_name"]
    cls = g.get("Solution")
    if isinstance(cls, type) and hasattr(cls, name):

        def fn(*args):
            return getattr(cls(), name)(*args)
    elif callable(g.get(name)):
        fn = g[name]
    else:
        _put(
            sock,
            {
                "load_error": {
                    "status": "runtime_error",
                    "error": f"the solution defines neither `Solution.{name}` nor a function `{name}`",
                }
            },
        )
        os._exit(0)
    _put(sock, {"loaded": True})
    # SystemExit inside a call is the call's runtime error, as any other exception.
    _serve(sock, lambda msg: {"value": _jsonable(fn(*msg["args"]))})


def _program_stdio(p, g, sock):
    try:
        exec(compile(p["code"], "<solution>", "exec"), g)
        _join_threads()
    except SystemExit as e:
        if e.code not in (None, 0):
            if not isinstance(e.code, int):
                print(e.code, file=sys.stderr)
            _flush()
            _put(sock, {"done": "runtime_error", "error": f"exit status {e.code!r}"})
            os._exit(1)
    except BaseException as e:
        import traceback

        traceback.print_exc()
        _flush()
        _put(sock, {"done": _status_of(e), "error": _describe(e)})
        os._exit(1)
    _flush()
    _put(sock, {"done": "ok"})
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# The judge's side


def _mirror(pid, out=None):
    """Reap the program and end this process the way it ended (same signal or exit status), with no
    verdict of our own: the host then reads a crash, a limit or an early exit as it always has. A
    program killed by a signal gets a {"event": "program_end"} record first with its own peak memory
    and CPU time (the host's view of them includes what the sandbox's processes inherited)."""
    try:
        _, status, usage = os.wait4(pid, 0)
    except ChildProcessError:
        os._exit(1)
    _flush()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if out is not None:
            _send(out, event="program_end", signal=sig, maxrss_mb=usage.ru_maxrss / 1024,
                  cpu_s=usage.ru_utime + usage.ru_stime)
        try:
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; restore the default death
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _stop(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


def _loaded(sock, pid, out, event, index=None):
    """The program's first message; reports its load error (and ends) or dies with it."""
    try:
        first = _get(sock)
    except (_ChannelBroken, OSError):
        _mirror(pid, out)
    if isinstance(first.get("load_error"), dict):
        err = first["load_error"]
        status = (
            err.get("status") if err.get("status") in ("runtime_error", "memory_limit") else "runtime_error"
        )
        extra = {"index": 0} if index is not None else {}
        _send(out, event=event, status=status, error=str(err.get("error", ""))[:400], **extra)
        _stop(pid)
        os._exit(0)
    if first.get("loaded") is not True:
        _stop(pid)
        _send(
            out,
            event=event,
            status="runtime_error",
            error="garbage on the test channel",
            **({"index": 0} if index is not None else {}),
        )
        os._exit(0)
    return first


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


def _judge_check(p, g, sock, pid, out):
    codec = _Link.codec = _Codec(_node_classes(g), program=False)
    _Link.sock = sock
    first = _loaded(sock, pid, out, "result")
    try:
        names = codec.decode(first.get("value"), first.get("table"))[0]
        if not isinstance(names, dict):
            raise _ChannelBroken("garbage on the test channel")
    except (_ChannelBroken, ValueError, TypeError, AttributeError, OverflowError) as e:
        _stop(pid)
        _send(out, event="result", status="runtime_error", error=f"garbage on the test channel ({e})")
        os._exit(0)
    # `g` here is the judge's copy: the prelude only, none of the program's code ran in this process.
    g.update({k: v for k, v in names.items() if isinstance(k, str) and k not in JUDGE_OWNED})
    tests = p["tests"]
    status, error = "passed", None
    try:
        exec(compile(tests, "<tests>", "exec"), g)
        entry = p.get("entry_point")
        if entry and not p.get("tests_call_check"):
            if entry not in names:
                status, error = (
                    "runtime_error",
                    f"the solution defines no `{entry}` (the entry point the tests call)",
                )
            else:
                g["check"](g[entry])
    except _SolutionExit as e:
        if not e.called_exit:
            _mirror(pid, out)  # the program died (a limit, a signal, os._exit): end as it did
        status, error = "runtime_error", str(e)
    except _SolutionError as e:
        line = _tests_line(e, tests)
        status, error = e.status, _describe(e) + (f" (in: {line})" if line else "")
    except AssertionError as e:
        line = _tests_line(e, tests)
        if _innermost_file(e) == "<tests>":
            status, error = "wrong_answer", f"failed: {line}" if line else "an assert failed"
        else:
            status, error = "runtime_error", _describe(e) + (f" (in: {line})" if line else "")
    except BaseException as e:
        line = _tests_line(e, tests)
        what = "exit() during the tests" if isinstance(e, SystemExit) else _describe(e)
        status, error = _status_of(e), what + (f" (in: {line})" if line else "")
    _stop(pid)
    _send(out, event="result", status=status, **({"error": error} if error else {}))
    os._exit(0)


def _judge_calls(p, sock, pid, out):
    _loaded(sock, pid, out, "case", index=0)
    limit = p["call_timeout"]
    for i, args in enumerate(p["calls"]):
        sock.timeout = limit
        try:
            _put(sock, {"args": args})
            reply = _get(sock)
        except TimeoutError:
            _stop(pid)
            _send(out, event="case", index=i, status="timeout", error=f"call ran past {limit:g}s")
            os._exit(0)
        except (_ChannelBroken, OSError):
            _mirror(pid, out)
        if isinstance(reply.get("raise"), dict):
            err = reply["raise"]
            status = "memory_limit" if err.get("type") == "MemoryError" else "runtime_error"
            _stop(pid)
            _send(
                out,
                event="case",
                index=i,
                status=status,
                error=f"{err.get('type')}: {err.get('message')}"[:300],
            )
            os._exit(0)
        if "exit" in reply:
            _stop(pid)
            _send(
                out, event="case", index=i, status="runtime_error", error=f"SystemExit: {reply['exit']}"[:300]
            )
            os._exit(0)
        _send(out, event="case", index=i, status="ok", value=reply.get("value"))
    _stop(pid)
    _send(out, event="exit", status="ok")
    os._exit(0)


def _judge_stdio(sock, pid, out):
    # Only the program holds stdin/stdout, so the host sees their end when the program ends.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    try:
        done = _get(sock)
    except (_ChannelBroken, OSError):
        _mirror(pid, out)  # ended without finishing: no exit record
    status = done.get("done")
    if status in ("ok", "runtime_error", "memory_limit"):
        _send(
            out,
            event="exit",
            status=status,
            **({"error": str(done.get("error"))[:300]} if status != "ok" else {}),
        )
    _mirror(pid, out)


def _fork():
    # RLIMIT_NPROC counts the run uid's processes; the host gives each run a slot whose last
    # processes are gone, and a moment's retry covers one the kernel is still reaping.
    import time

    for attempt in range(50):
        try:
            return os.fork()
        except BlockingIOError:
            time.sleep(0.02 * (attempt + 1))
    return os.fork()


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
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # big integers cross the channel as JSON numbers
    to_judge_r, to_judge_w = os.pipe()
    to_program_r, to_program_w = os.pipe()
    judge, program = _Chan(to_judge_r, to_program_w), _Chan(to_program_r, to_judge_w)
    pid = _fork()
    if pid == 0:
        judge.close()
        os.close(out)
        libc = _libc()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # no program outlives its judge
        # The uid change made the process non-dumpable, which makes /proc/self/fd root's and breaks
        # programs that read open('/dev/stdin'). The judge stays non-dumpable.
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        run = {"stdio": _program_stdio, "check": _program_check, "calls": _program_calls}[kind]
        run(p, g, program)
        os._exit(0)
    program.close()
    if kind == "stdio":
        _judge_stdio(judge, pid, out)
    elif kind == "check":
        _judge_check(p, g, judge, pid, out)
    else:
        _judge_calls(p, judge, pid, out)


main()
