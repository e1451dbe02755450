"""A small OpenAI-compatible chat server that misbehaves on request, for tests and bench/sample_bench.py.

    python tests/fault_server.py --latency 0.2            # prints "READY http://127.0.0.1:PORT/v1"
    python tests/fault_server.py --fault-rate 0.3 --ports 2

In a test: `with FaultServer(latency=0.01) as server: server.urls -> ["http://127.0.0.1:PORT/v1"]`.

Plain asyncio HTTP/1.1 with keep-alive (standard library only), so it starts in milliseconds and
serves thousands of requests per second from one core. What each request gets is chosen by
directives in the last user message:

    [fault:KIND]      every attempt of this prompt gets KIND
    [fault:KIND*K]    the first K attempts get KIND, later ones succeed
    [reply:STYLE]     how a success looks

KIND: 429 (Retry-After: 1), 429ms (retry-after-ms: 50), 500, 503, hang (sleeps `hang` seconds),
empty (content ""), null (content null), emptybody (200 with no body), badjson, nochoices,
drop (close the connection without answering), 400, 401, 404, echokey (500 whose body repeats the
Authorization header: a leaky proxy). STYLE: think (default: <think>..</think> in content),
reasoning (DeepSeek's `reasoning_content`), prefilled (only </think>: the template opened it),
plain (no thinking), length (cut off inside the thinking, finish_reason 'length').
With `fault_rate` > 0 every attempt also gets a random retryable fault with that probability.
Attempts are counted per (messages, seed), so each sample of a prompt has its own count.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
import threading
import time
from typing import Any

DIRECTIVE = re.compile(r"\[(fault|reply):([a-z0-9]+)(?:\*(\d+))?\]")
RANDOM_FAULTS = ["429ms", "500", "503", "empty", "null", "emptybody", "badjson", "nochoices", "drop"]
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}


class FaultServer:
    def __init__(self, latency: float = 0.0, fault_rate: float = 0.0, seed: int = 0, hang: float = 30.0,
                 ports: int = 1, model: str = "fault-model"):
        self.latency, self.fault_rate, self.hang, self.num_ports, self.model = latency, fault_rate, hang, ports, model
        self.rng = random.Random(seed)
        self.attempts: dict[str, list[float]] = {}
        """Per request key (a hash of messages and seed): the time of every attempt."""
        self.requests = 0
        self.by_port: dict[int, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.faults_sent: dict[str, int] = {}
        self.user_agents: dict[str, int] = {}
        """Requests per client (the User-Agent up to its first "/"): the openai SDK says AsyncOpenAI."""
        self.ports: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/v1" for p in self.ports]

    # ------------------------------------------------------------------ lifecycle

    async def start_async(self, port: int = 0) -> None:
        for i in range(self.num_ports):
            server = await asyncio.start_server(self._connection, "127.0.0.1", port + i if port else 0,
                                                backlog=1024)
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])

    def start(self) -> FaultServer:
        """Serve from a background thread with its own event loop."""
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.start_async())
            ready.set()
            self._loop.run_forever()
            # Stopped: end the open connections' tasks so nothing is left pending at exit.
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=main, name="fault-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            loop = self._loop

            async def shutdown() -> None:
                for s in self._servers:
                    s.close()
                loop.stop()

            asyncio.run_coroutine_threadsafe(shutdown(), loop)
            if self._thread is not None:
                self._thread.join(5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        return {"requests": self.requests, "by_port": dict(self.by_port), "max_in_flight": self.max_in_flight,
                "faults": dict(self.faults_sent), "prompts": len(self.attempts)}

    # ------------------------------------------------------------------ HTTP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("sockname")[1]
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path = line.decode("latin-1").split(" ")[:2]
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._dispatch(method, path, headers, body, writer, port):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes,
              headers: dict[str, str] | None = None) -> None:
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes,
                        writer: asyncio.StreamWriter, port: int) -> bool:
        if method == "GET" and path.endswith("/stats"):
            self._send(writer, 200, json.dumps(self.stats()).encode())
            return True
        if method == "GET" and path.endswith("/models"):
            self._send(writer, 200, json.dumps({"object": "list", "data": [{"id": self.model, "object": "model"}]}).encode())
            return True
        if not path.endswith("/chat/completions"):
            self._send(writer, 404, b'{"error": {"message": "no such route"}}')
            return True
        self.requests += 1
        self.by_port[port] = self.by_port.get(port, 0) + 1
        agent = headers.get("user-agent", "").split("/")[0]
        self.user_agents[agent] = self.user_agents.get(agent, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._chat(json.loads(body), headers, writer)
        finally:
            self.in_flight -= 1

    async def _chat(self, req: dict[str, Any], headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        messages = req.get("messages", [])
        text = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        key = hashlib.sha1((json.dumps(messages, sort_keys=True) + f"|{req.get('seed')}").encode()).hexdigest()
        times = self.attempts.setdefault(key, [])
        times.append(time.monotonic())
        attempt = len(times)
        fault, style = None, "think"
        for kind, name, count in DIRECTIVE.findall(text):
            if kind == "reply":
                style = name
            elif not count or attempt <= int(count):
                fault = name
        if fault is None and self.fault_rate and self.rng.random() < self.fault_rate:
            fault = self.rng.choice(RANDOM_FAULTS)
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault is not None:
            self.faults_sent[fault] = self.faults_sent.get(fault, 0) + 1
            return await self._fault(fault, headers, writer)
        self._send(writer, 200, json.dumps(self._completion(req, text, key, style)).encode())
        return True

    async def _fault(self, fault: str, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        error = {"error": {"message": f"injected fault {fault}", "type": "fault"}}
        if fault == "drop":
            return False  # close without a response
        if fault == "hang":
            await asyncio.sleep(self.hang)
            return False
        if fault == "emptybody":
            self._send(writer, 200, b"")
        elif fault == "badjson":
            self._send(writer, 200, b'{"id": "x", "choices": [{"message": ')
        elif fault in ("empty", "null", "nochoices"):
            content = "" if fault == "empty" else None
            choices = [] if fault == "nochoices" else [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
            self._send(writer, 200, json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                                "model": self.model, "choices": choices}).encode())
        elif fault == "429":
            self._send(writer, 429, json.dumps(error).encode(), {"Retry-After": "1"})
        elif fault == "429ms":
            self._send(writer, 429, json.dumps(error).encode(), {"retry-after-ms": "50"})
        elif fault == "echokey":
            leak = {"error": {"message": f"upstream rejected request with {headers.get('authorization')}"}}
            self._send(writer, 500, json.dumps(leak).encode())
        else:
            self._send(writer, int(fault), json.dumps(error).encode())
        return True

    def _completion(self, req: dict[str, Any], text: str, key: str, style: str) -> dict[str, Any]:
        value = int(key[:6], 16) % 1000
        thinking = f"The problem: {text[:60]!r}. Work it out step by step.\nSo it is {value}."
        answer = f"The answer is \\boxed{{{value}}}."
        message: dict[str, Any] = {"role": "assistant"}
        finish = "stop"
        if style == "reasoning":
            message.update(content=answer, reasoning_content=thinking)
        elif style == "prefilled":
            message["content"] = f"{thinking}\n</think>\n\n{answer}"
        elif style == "plain":
            message["content"] = answer
        elif style == "length":
            message["content"] = f"<think>\n{thinking} But wait"
            finish = "length"
        else:
            message["content"] = f"<think>\n{thinking}\n</think>\n\n{answer}"
        out_chars = len(message.get("content") or "") + len(message.get("reasoning_content") or "")
        usage: dict[str, Any] = {"prompt_tokens": len(text) // 4 + 4, "completion_tokens": out_chars // 4 + 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if style == "reasoning":
            usage["completion_tokens_details"] = {"reasoning_tokens": len(thinking) // 4 + 1}
        return {"id": f"chatcmpl-{key[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model", self.model),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="first port (0: any free port)")
    p.add_argument("--ports", type=int, default=1, help="how many ports to listen on (several endpoints)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability of a random retryable fault")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hang", type=float, default=30.0, help="seconds a [fault:hang] request hangs")
    args = p.parse_args(argv)
    server = FaultServer(args.latency, args.fault_rate, args.seed, args.hang, args.ports)

    async def serve() -> None:
        await server.start_async(args.port)
        print("READY", " ".join(server.urls), flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
