"""`http`: a reward served by another process (a reward model behind vLLM/SGLang/TGI, a verifier
service), called over HTTP with deadlines, retries, backoff and a circuit breaker
(:mod:`spectrum_rl.rewards.remote`, whose docstring has the deadlines, failure classes and
security); and :class:`RemoteJudge`, the `judge` component's rubric asked of an OpenAI-compatible
server (``judge.endpoint``) over the same transport.

Request (``POST url``, JSON): the same names a ``python`` reward receives, one value per
completion: ``{"prompts": [...], "completions": [...], "answer": [...], "<column>": [...]}`` —
one request per group of G completions of a prompt (``batch: group``) or one per step for all of
a domain's groups (``batch: step``). Response: ``{"scores": [...]}``, OpenRLHF's
``{"rewards": [...]}``, or a bare list: one number per completion, in order.

``prefetch`` sends a step's requests together, under the step's deadline ``step_timeout_s``, and
never raises: a group's failure is kept and raised by ``score`` for that group. A group that was
not prefetched (evaluation) is sent on its own, with ``timeout_s`` per attempt.

Failures are counted per step in ``reward_events/<domain>/<component>/<class>``: the transport's
classes, ``malformed`` for a response without a score list of the right length (a judge's: without
text), and ``non_numeric`` (a score that is not a finite number: that sample fails). A request that
fails for good makes every sample of it a failure, which ``on_error`` (default ``zero`` for
`http`: a remote failure scores 0 and training goes on) turns into a score, and
``reward_errors/<domain>/<component>`` counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from spectrum_rl.rewards.base import REWARDS, OnError, RewardComponent, RewardSpec
from spectrum_rl.rewards.remote import HttpClient, RemoteError, RemoteFields
from spectrum_rl.sources.base import Example


@REWARDS.register("http")
class HttpSpec(RemoteFields, RewardSpec):
    """`http`: POST each group (or each step's groups) to a reward server; one score per completion."""

    on_error: OnError = Field(
        "zero",
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
        out["answer"] += [ex.reference] * g
        for k in columns:
            if k not in ("prompts", "completions", "answer"):
                out[k] += [ex.fields.get(k)] * g
    return out


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


class HttpReward(RewardComponent):
    """Scores through ``HttpClient``. ``prefetch`` sends a step's groups concurrently (at most
    ``concurrency`` requests in flight) before the trainer asks for each group's scores, which
    ``score`` then answers from what came back; a group not prefetched is sent on its own."""

    spec: HttpSpec

    def __init__(self, spec: HttpSpec) -> None:
        super().__init__(spec)
        self.client = HttpClient(spec)
        self._ready: dict[tuple[int, tuple[str, ...]], list[float] | BaseException] = {}

    def events(self) -> dict[str, int]:
        return self.client.events()

    def _request(
        self, groups: Sequence[tuple[Sequence[str], Example]], deadline: float = math.inf
    ) -> list[list[float]] | RemoteError:
        n = [len(c) for c, _ in groups]
        try:
            answer = self.client.post(_payload(groups), deadline)
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
        for batch, answer in zip(batches, self.client.gather(self._request, batches)):
            for i, (completions, ex) in enumerate(batch):
                self._ready[id(ex), tuple(completions)] = answer[i] if isinstance(answer, list) else answer

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        answer = self._ready.pop((id(example), tuple(completions)), None)
        if answer is None:
            answer = self._request([(completions, example)])
            answer = answer[0] if isinstance(answer, list) else answer
        if isinstance(answer, BaseException):
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
        self._ready: dict[tuple[int, str], float | BaseException] = {}

    def events(self) -> dict[str, int]:
        return self.client.events()

    def _ask(self, item: tuple[str, Example], deadline: float = math.inf) -> float | RemoteError:
        completion, ex = item
        rubric = self.spec.rubric.format(prompt=ex.prompt, completion=completion, reference=ex.answer or "")
        body = {
            "model": self.spec.model,
            "messages": [{"role": "user", "content": rubric}],
            "max_tokens": self.endpoint.max_tokens,
            "temperature": 0,
        }
        try:
            answer = self.client.post(body, deadline)
        except RemoteError as err:
            return err
        try:
            text = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            text = None
        if not isinstance(text, str):  # missing, null, or a structure (which could nest too deep to print)
            self.client.count("malformed")
            self.client.failed()
            return RemoteError("malformed", "no text at choices[0].message.content in the response")
        score = verdict_score(text, self.spec.yes, self.spec.no)
        if math.isnan(score):
            self.client.count("non_numeric")
        return score

    def prefetch(self, groups: Sequence[tuple[Sequence[str], Example]]) -> None:
        self._ready.clear()
        items = [(c, ex) for completions, ex in groups for c in completions]
        for (c, ex), answer in zip(items, self.client.gather(self._ask, items)):
            self._ready[id(ex), c] = answer

    def score(self, completions: Sequence[str], example: Example) -> Sequence[float]:
        out = []
        for c in completions:
            answer = self._ready.pop((id(example), c), None)
            answer = self._ask((c, example)) if answer is None else answer
            if isinstance(answer, BaseException):
                raise answer
            out.append(answer)
        return out
