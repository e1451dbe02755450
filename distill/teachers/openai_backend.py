"""Any OpenAI-compatible chat server as a teacher: the DeepSeek API, vLLM, SGLang, `transformers serve`.

    cfg = TeacherConfig(name="r1", model="deepseek-reasoner", base_url=["https://api.deepseek.com"],
                        api_key_env="DEEPSEEK_API_KEY")
    teacher = OpenAITeacher(cfg)
    teacher.generate([[{"role": "user", "content": "1+1?"}]], SamplingParams(n=2))

Reasoning comes from `reasoning_content` when the server sends it (DeepSeek's deepseek-reasoner;
vLLM/SGLang with a reasoning parser send `reasoning_content` or `reasoning`); otherwise it is
split out of `<think>...</think>` in the content, including the prefilled case where only
`</think>` appears. With several `base_url`s each request goes to the endpoint with the fewest
requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from distill.teachers import loop
from distill.teachers.base import Completion, SamplingParams, TeacherError
from distill.teachers.config import Redactor, TeacherConfig
from distill.teachers.render import chat_request
from distill.trace import split_reasoning

log = logging.getLogger(__name__)


class OpenAITeacher:
    """OpenAI-compatible chat completions over `openai.AsyncOpenAI`, one request per sample."""

    batching = "requests"
    prompt_note = None  # the server applies its model's own template

    @staticmethod
    def eval_chunk(batch_size: int) -> int:
        """2048: requests in flight are bounded by `concurrency`, not by the chunk."""
        return 2048

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self.name = cfg.label
        self._key = cfg.api_key()  # fails now, naming the variable, rather than at the first request
        self.redact = Redactor(self._key)
        self.policy = loop.RetryPolicy(cfg.max_retries, cfg.backoff, cfg.max_backoff)
        self._clients: list[Any] = []
        self._in_flight: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0

    # ------------------------------------------------------------------ connections

    def _client(self) -> int:
        """Index of the endpoint to use: fewest requests in flight, ties taken in turn."""
        running = asyncio.get_running_loop()
        if self._loop is not running:
            # httpx clients belong to the event loop that made them; each asyncio.run gets new ones.
            self._open(running)
        n = len(self._clients)
        start = self._next
        self._next = (self._next + 1) % n
        return min(((start + i) % n for i in range(n)), key=lambda i: self._in_flight[i])

    def _open(self, running: asyncio.AbstractEventLoop) -> None:
        import openai

        # The client keeps 100 idle connections by default; above that each request would reconnect.
        # Limits is httpx's (or its fork's, by openai version): take the class from openai itself.
        limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
            max_connections=self.cfg.concurrency + 8, max_keepalive_connections=self.cfg.concurrency + 8)
        self._clients = [
            openai.AsyncOpenAI(
                # Without a key the SDK would read OPENAI_API_KEY from the environment and send it to
                # this server, so it gets a placeholder that servers without --api-key ignore.
                base_url=url, api_key=self._key if self._key is not None else "no-key", timeout=self.cfg.timeout,
                max_retries=0,  # our retries (distill.teachers.loop) are the only ones, and are counted
                http_client=_http_client(limits, self.cfg.timeout),
            )
            for url in self.cfg.base_url
        ]
        self._in_flight = [0] * len(self._clients)
        self._loop = running

    async def aclose(self) -> None:
        clients, self._clients, self._loop = self._clients, [], None
        for client in clients:
            await client.close()

    # ------------------------------------------------------------------ one request

    def request_body(self, messages: list[dict[str, str]], params: SamplingParams) -> dict[str, Any]:
        """The JSON body of one chat completion request (n=1: one sample, one trace id)."""
        cfg = self.cfg
        msgs, prefill_flags = chat_request(messages, cfg.system_prompt, cfg.prefill)
        body: dict[str, Any] = {"model": cfg.model, "messages": msgs, "max_tokens": params.max_tokens,
                                "temperature": params.temperature, "top_p": params.top_p}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        body.update({**prefill_flags, **cfg.extra_body})  # the config's extra_body wins
        return body

    async def acomplete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        """One completion; every failure is raised as a classified `TeacherError`."""
        i = self._client()
        self._in_flight[i] += 1
        try:
            data = await self._post(i, messages, params)
        finally:
            if i < len(self._in_flight):
                self._in_flight[i] -= 1
        return self._completion(data)

    def _timeout(self) -> TeacherError:
        return TeacherError(f"no answer within {self.cfg.timeout:g} s (timeout)", kind="timeout", retryable=True)

    async def _post(self, i: int, messages: list[dict[str, str]], params: SamplingParams) -> Any:
        """One `client.post`, its failures classified."""
        import openai

        start = time.monotonic()
        try:
            # `client.post` (the SDK's documented way to send any request) rather than
            # `chat.completions.create`: same auth, errors and pooling, without the typed request
            # transform and response models, which cost ~0.7 ms of CPU per request, a third to a half
            # of the client's total (measured with bench/sample_bench.py at 256 in flight).
            # wait_for: the client's timeout is per read, and a server that trickles keep-alive
            # bytes (DeepSeek does, while it thinks) would never trip it; this bounds the whole request.
            return await asyncio.wait_for(
                self._clients[i].post("/chat/completions", body=self.request_body(messages, params), cast_to=dict),
                self.cfg.timeout)
        except openai.APIStatusError as e:
            raise self._status_error(e.status_code, e.response.headers, _error_text(e)) from None
        except asyncio.TimeoutError:
            raise self._timeout() from None
        except openai.APIConnectionError as e:  # APITimeoutError included
            # aiohttp under the SDK reports a dropped connection as a timeout: tell them apart by the clock.
            if isinstance(e, openai.APITimeoutError) and time.monotonic() - start >= 0.9 * self.cfg.timeout:
                raise self._timeout() from None
            raise TeacherError(self.redact(f"connection failed ({_root_cause(e)})"), kind="connection",
                               retryable=True) from None
        except openai.APIResponseValidationError as e:
            raise TeacherError(self.redact(f"response is not a chat completion ({e})"), kind="bad_response",
                               retryable=True) from None
        except (ValueError, TypeError) as e:  # a 200 whose body is not JSON (JSONDecodeError is a ValueError)
            raise TeacherError(self.redact(f"malformed response body ({type(e).__name__}: {e})"),
                               kind="bad_response", retryable=True) from None

    def _completion(self, data: Any) -> Completion:
        if not isinstance(data, dict):  # a 200 with a non-JSON content type comes back as text
            raise TeacherError(self.redact(f"response is not a JSON object: {str(data)[:200]!r}"),
                               kind="bad_response", retryable=True)
        choices = data.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            # DeepSeek answers with an empty body under load; some proxies with `"choices": []`.
            raise TeacherError("response has no choices", kind="empty", retryable=True)
        choice = choices[0]
        message = choice.get("message") or {}
        content = message.get("content") or ""
        thinking = message.get("reasoning_content") or message.get("reasoning") or ""
        if not isinstance(content, str) or not isinstance(thinking, str):
            raise TeacherError(f"message content is not text: {str(message)[:200]!r}", kind="bad_response",
                               retryable=True)
        if not content.strip() and not thinking.strip():
            raise TeacherError("empty content (no answer and no reasoning)", kind="empty", retryable=True)
        if thinking.strip():
            reasoning, answer = thinking.strip(), content.strip()
        else:
            reasoning, answer, _ = split_reasoning(content)
        usage = data.get("usage") or {}
        details = usage.get("completion_tokens_details") or {}
        # The model that answered and its build: an alias (deepseek-reasoner) says what it maps to today.
        raw = {k: data[k] for k in ("id", "model", "system_fingerprint") if data.get(k)}
        return Completion(
            reasoning=reasoning, answer=answer, finish_reason=choice.get("finish_reason"),
            prompt_tokens=_int(usage.get("prompt_tokens")), completion_tokens=_int(usage.get("completion_tokens")),
            reasoning_tokens=_int(details.get("reasoning_tokens")), raw=raw,
        )

    def _status_error(self, status: int, headers: Any, detail: str) -> TeacherError:
        message = self.redact(f"HTTP {status}: {detail}")
        if status == 429:
            return TeacherError(message, kind="429", retryable=True, retry_after=loop.parse_retry_after(headers))
        if status >= 500 or status in (408, 409, 425):
            return TeacherError(message, kind="5xx" if status >= 500 else str(status), retryable=True,
                                retry_after=loop.parse_retry_after(headers))
        if status in (401, 403):
            key = f"the key in {self.cfg.api_key_env}" if self.cfg.api_key_env else "no API key (api_key_env is null)"
            return TeacherError(f"{message}. The server refused {key}; check it is valid for "
                                f"{', '.join(self.cfg.base_url)}", kind=str(status), fatal=True)
        if status == 404:
            return TeacherError(f"{message}. Check `model: {self.cfg.model}` is served at "
                                f"{', '.join(self.cfg.base_url)} (GET <base_url>/models lists them)",
                                kind="404", fatal=True)
        return TeacherError(message, kind=str(status))  # 400, 413, 422: this prompt, not the server

    # ------------------------------------------------------------------ Teacher protocol

    def generate(self, prompts: list[list[dict[str, str]]], params: SamplingParams) -> list[list[Completion]]:
        """`params.n` completions per prompt through the request loop (`distill.teachers.loop.generate`):
        `cfg.concurrency` in flight, retried, a sample that still fails a Completion with finish_reason 'error'."""
        return loop.generate(self, prompts, params, self.cfg.concurrency, self.policy)


def _http_client(limits: Any, timeout: float) -> Any:
    """aiohttp under the openai client when installed (about half the CPU per request of httpx,
    which decides throughput at hundreds of requests in flight), else the default httpx client."""
    import openai

    aio = getattr(openai, "DefaultAioHttpClient", None)
    if aio is not None:
        try:
            return aio(limits=limits, timeout=timeout)
        except RuntimeError:  # openai without its aiohttp extra installed
            pass
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout)


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None or (e.__context__ is not None and not e.__suppress_context__):
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_text(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:500]
    return str(getattr(e, "message", e))[:500]
