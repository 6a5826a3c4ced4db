"""`http`: a reward served by another process (a reward model behind vLLM/SGLang/TGI, a verifier
service), called over HTTP with retries, backoff and a circuit breaker.

Request (``POST url``, JSON): the same names a ``python`` reward receives, one value per
completion: ``{"prompts": [...], "completions": [...], "answer": [...], "<column>": [...]}`` —
one request per group of G completions of a prompt (``batch: group``) or one per step for all of
a domain's groups (``batch: step``). Response: ``{"scores": [...]}``, OpenRLHF's
``{"rewards": [...]}``, or a bare list: one number per completion, in order.

Failure classes (counted per step in ``reward_events/<domain>/<component>/<class>``): ``timeout``
(no answer within ``timeout_s``), ``http_<status>`` (an error status), ``connection`` (refused,
dropped), ``malformed`` (not JSON, too large, no score list, wrong length), ``non_numeric``
(a score that is not a finite number: that sample fails), ``circuit_open`` (the server failed
``breaker_failures`` requests in a row: it is not called for ``breaker_cooldown_s``). Timeouts,
connection errors, 429 and 5xx are retried up to ``retries`` times after an exponential backoff
with full jitter (``backoff_s * 2**k``, at most ``max_backoff_s``, times a uniform draw in [0, 1]).
A request that still fails makes every sample of it a failure, which ``on_error`` (default ``zero``
here: a remote failure scores 0 and training goes on) turns into a score, and
``reward_errors/<domain>/<component>`` counts.

Security: a key comes only from the environment variable ``api_key_env`` names, read when a
request is made and sent as ``Authorization: Bearer``; it is never stored in the config, logged or
put in an error message. TLS certificates are verified unless ``verify_tls: false``. Only http(s)
URLs are accepted; a response larger than ``max_response_bytes`` is a failure.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from spectrum_rl.rewards.base import REWARDS, RewardComponent, RewardSpec
from spectrum_rl.schema import StrictModel
from spectrum_rl.tasks.base import Example

RETRIED = ("timeout", "connection", "http_429")  # and every http_5xx
T, R = TypeVar("T"), TypeVar("R")


class RemoteError(Exception):
    """A request that failed for good; ``kind`` is its failure class (module docstring)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class HttpClient:
    """POSTs JSON with a timeout, bounded retries with jittered exponential backoff, and a circuit
    breaker; counts every failure class (``events``). Thread-safe."""

    def __init__(self, spec: RemoteFields) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._failures_in_row = 0
        self._open_until = 0.0
        self._events: Counter[str] = Counter()
        self._context = ssl.create_default_context() if spec.verify_tls else ssl._create_unverified_context()

    def events(self) -> dict[str, int]:
        """Failure classes counted since the last call (and resets them)."""
        with self._lock:
            out, self._events = dict(self._events), Counter()
        return out

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._events[kind] += n

    def post(self, payload: dict[str, Any]) -> Any:
        """The decoded JSON answer, or RemoteError after the retries."""
        with self._lock:
            if time.monotonic() < self._open_until:
                self._events["circuit_open"] += 1
                raise RemoteError("circuit_open", f"not calling {self._where()} for a while after repeated failures")
        body = json.dumps(payload).encode()
        for attempt in range(self.spec.retries + 1):
            try:
                answer = self._once(body)
            except RemoteError as err:
                self.count(err.kind)
                retry = err.kind in RETRIED or err.kind.startswith("http_5")
                if retry and attempt < self.spec.retries:
                    time.sleep(random.random() * min(self.spec.max_backoff_s, self.spec.backoff_s * 2**attempt))
                    continue
                self.failed()
                raise
            with self._lock:
                self._failures_in_row = 0
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def failed(self) -> None:
        """One request failed for good: the breaker opens after ``breaker_failures`` in a row."""
        with self._lock:
            self._failures_in_row += 1
            if self._failures_in_row >= self.spec.breaker_failures:
                self._open_until = time.monotonic() + self.spec.breaker_cooldown_s
                self._failures_in_row = 0

    def _where(self) -> str:
        parts = urlsplit(self.spec.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"  # no credentials, no query

    def _once(self, body: bytes) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.spec.api_key_env:
            key = os.environ.get(self.spec.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.spec.url, data=body, headers=headers, method="POST")
        try:
            context = self._context if self.spec.url.startswith("https") else None
            with urllib.request.urlopen(request, timeout=self.spec.timeout_s, context=context) as response:
                raw = response.read(self.spec.max_response_bytes + 1)
        except urllib.error.HTTPError as err:
            raise RemoteError(f"http_{err.code}", f"{self._where()} answered {err.code}") from None
        except OSError as err:  # URLError, a refused or dropped connection, TimeoutError
            reason = getattr(err, "reason", err)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                late = f"{self._where()} did not answer within {self.spec.timeout_s:g} s"
                raise RemoteError("timeout", late) from None
            raise RemoteError("connection", f"{self._where()}: {type(reason).__name__}") from None
        if len(raw) > self.spec.max_response_bytes:
            raise RemoteError("malformed", f"response larger than {self.spec.max_response_bytes} bytes")
        try:
            return json.loads(raw)
        except ValueError:
            raise RemoteError("malformed", "response is not JSON") from None


def concurrently(fn: Callable[[T], R], items: Sequence[T], limit: int) -> list[R]:
    """``[fn(x) for x in items]``, at most ``limit`` calls in flight (threads: the calls wait on I/O)."""
    with ThreadPoolExecutor(max_workers=min(limit, max(1, len(items)))) as pool:
        return list(pool.map(fn, items))


def score_list(answer: Any, n: int) -> list[float]:
    """The ``n`` scores of a response (``{"scores": [...]}``, ``{"rewards": [...]}`` or a list);
    an entry that is not a finite number becomes NaN (that sample fails). RemoteError when there
    is no list of length ``n``."""
    values = answer.get("scores", answer.get("rewards")) if isinstance(answer, dict) else answer
    if not isinstance(values, list):
        raise RemoteError("malformed", "no 'scores' or 'rewards' list in the response")
    if len(values) != n:
        raise RemoteError("malformed", f"{len(values)} scores for {n} completions")
    out = []
    for v in values:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        out.append(float(v) if ok else math.nan)
    return out


class RemoteFields(StrictModel):
    """How a server is called: the transport settings of `http` and of a judge's `endpoint`."""

    url: str = Field(..., description="The endpoint, http:// or https:// (module docstring of rewards/http.py).")
    timeout_s: float | None = Field(5.0, gt=0, description="Seconds one request may take (each retry again).")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    retries: int = Field(2, ge=0, description="Retries of a timed-out, refused, 429 or 5xx request.")
    backoff_s: float = Field(0.1, ge=0, description="First backoff; doubled each retry, times a uniform jitter.")
    max_backoff_s: float = Field(2.0, ge=0, description="Cap of one backoff.")
    breaker_failures: int = Field(5, ge=1, description="Requests failed in a row that open the circuit breaker.")
    breaker_cooldown_s: float = Field(10.0, ge=0, description="Seconds an open breaker stops calling the server.")
    max_response_bytes: int = Field(1 << 20, ge=16, description="Larger responses are a failure.")
    verify_tls: bool = Field(True, description="Verify https certificates.")
    api_key_env: str | None = Field(
        None, description="Name of an environment variable holding a key, sent as a Bearer token (never stored)."
    )

    @field_validator("url")
    @classmethod
    def _http_only(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host; found {v!r}")
        return v


@REWARDS.register("http")
class HttpSpec(RemoteFields, RewardSpec):
    """`http`: POST each group (or each step's groups) to a reward server; one score per completion."""

    on_error: str = Field(
        "zero",
        pattern="^(fail|zero|skip)$",
        description="As for every component; `zero` by default here: a request that fails for good scores 0.",
    )
    batch: Literal["group", "step"] = Field(
        "group", description="One request per group of completions, or one per step for all of a domain's groups."
    )

    def build(self, base_dir: Path) -> RewardComponent:
        return HttpReward(self)


def _payload(groups: Sequence[tuple[Sequence[str], Example]]) -> dict[str, list]:
    """The request body: every field a ``python`` reward receives, one value per completion."""
    out: dict[str, list] = {"prompts": [], "completions": [], "answer": []}
    columns = sorted({k for _, ex in groups for k in ex.fields})
    out |= {k: [] for k in columns if k not in out}
    for completions, ex in groups:
        g = len(completions)
        out["prompts"] += [ex.prompt] * g
        out["completions"] += list(completions)
        out["answer"] += [ex.answer] * g
        for k in columns:
            if k not in ("prompts", "completions", "answer"):
                out[k] += [ex.fields.get(k)] * g
    return out


class HttpReward(RewardComponent):
    """Scores through ``HttpClient``. ``prefetch`` sends a step's groups concurrently (at most
    ``concurrency`` requests in flight) before the trainer asks for each group's scores, which
    ``score`` then answers from what came back; a group not prefetched is sent on its own."""

    spec: HttpSpec

    def __init__(self, spec: HttpSpec) -> None:
        super().__init__(spec)
        self.client = HttpClient(spec)
        self._ready: dict[tuple[int, tuple[str, ...]], list[float] | RemoteError] = {}

    def events(self) -> dict[str, int]:
        return self.client.events()

    def _request(self, groups: Sequence[tuple[Sequence[str], Example]]) -> list[list[float]] | RemoteError:
        n = [len(c) for c, _ in groups]
        try:
            answer = self.client.post(_payload(groups))
        except RemoteError as err:
            return err
        try:
            scores = score_list(answer, sum(n))
        except RemoteError as err:  # answered, but not with our scores
            self.client.count(err.kind)
            self.client.failed()
            return err
        bad = sum(math.isnan(s) for s in scores)
        if bad:
            self.client.count("non_numeric", bad)
        starts = [sum(n[:i]) for i in range(len(n))]
        return [scores[s : s + k] for s, k in zip(starts, n)]

    def prefetch(self, groups: Sequence[tuple[Sequence[str], Example]]) -> None:
        self._ready.clear()  # answers nobody asked for (a failed step) are not kept
        batches = [list(groups)] if self.spec.batch == "step" else [[g] for g in groups]
        for batch, answer in zip(batches, concurrently(self._request, batches, self.spec.concurrency)):
            for i, (completions, ex) in enumerate(batch):
                self._ready[id(ex), tuple(completions)] = answer if isinstance(answer, RemoteError) else answer[i]

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        answer = self._ready.pop((id(example), tuple(completions)), None)
        if answer is None:
            answer = self._request([(completions, example)])
            answer = answer if isinstance(answer, RemoteError) else answer[0]
        if isinstance(answer, RemoteError):
            raise answer
        return answer


class JudgeEndpoint(RemoteFields):
    """`judge.endpoint`: an OpenAI-compatible chat server (vLLM, SGLang, TGI, llama.cpp) asked the
    judge's rubric, one request per completion, with the transport settings of `http`."""

    base_url: str | None = Field(None, description="The server's base URL, e.g. http://host:8000/v1.")
    url: str = Field("", description="The chat-completions URL (default: base_url + /chat/completions).")
    max_tokens: int = Field(8, ge=1, description="Tokens of the verdict the server may write.")

    @model_validator(mode="before")
    @classmethod
    def _from_base_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("base_url") and not data.get("url"):
            data = {**data, "url": str(data["base_url"]).rstrip("/") + "/chat/completions"}
        return data


def verdict_score(text: str, yes: str, no: str) -> float:
    """A judge's answer as a score: the yes word 1, the no word 0, a number n in 1-10 (n - 1) / 9;
    anything else NaN (the sample fails)."""
    word = text.strip().lower()
    if word.startswith(yes.strip().lower()):
        return 1.0
    if word.startswith(no.strip().lower()):
        return 0.0
    number = re.match(r"\d+(?:\.\d+)?", word)  # "7", "7/10", "8.5 out of 10"
    if number is None:
        return math.nan
    n = float(number.group())
    return (n - 1) / 9 if 1 <= n <= 10 else math.nan


class RemoteJudge(RewardComponent):
    """The judge's rubric sent to ``endpoint`` (an OpenAI-compatible ``/chat/completions``) at
    temperature 0; the answer is read by ``verdict_score``. A step's completions are sent
    concurrently by ``prefetch``."""

    def __init__(self, spec: Any, endpoint: JudgeEndpoint) -> None:
        super().__init__(spec)
        self.endpoint = endpoint
        self.client = HttpClient(endpoint)
        self._ready: dict[tuple[int, str], float | RemoteError] = {}

    def events(self) -> dict[str, int]:
        return self.client.events()

    def _ask(self, item: tuple[str, Example]) -> float | RemoteError:
        completion, ex = item
        rubric = self.spec.rubric.format(prompt=ex.prompt, completion=completion, reference=ex.answer or "")
        body = {
            "model": self.spec.model,
            "messages": [{"role": "user", "content": rubric}],
            "max_tokens": self.endpoint.max_tokens,
            "temperature": 0,
        }
        try:
            answer = self.client.post(body)
        except RemoteError as err:
            return err
        try:
            text = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            self.client.count("malformed")
            self.client.failed()
            return RemoteError("malformed", "no choices[0].message.content in the response")
        score = verdict_score(str(text), self.spec.yes, self.spec.no)
        if math.isnan(score):
            self.client.count("non_numeric")
        return score

    def prefetch(self, groups: Sequence[tuple[Sequence[str], Example]]) -> None:
        self._ready.clear()
        items = [(c, ex) for completions, ex in groups for c in completions]
        for (c, ex), answer in zip(items, concurrently(self._ask, items, self.endpoint.concurrency)):
            self._ready[id(ex), c] = answer

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        out = []
        for c in completions:
            answer = self._ready.pop((id(example), c), None)
            answer = self._ask((c, example)) if answer is None else answer
            if isinstance(answer, RemoteError):
                raise answer
            out.append(answer)
        return out
