"""The `http` reward component against a loopback server with fault injection (loopback only)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import math
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spectrum_rl.cli import main
from spectrum_rl.config import load_config
from spectrum_rl.errors import ConfigError
from spectrum_rl.rewards.http import HttpSpec, score_list
from spectrum_rl.rewards.hybrid import HybridReward
from spectrum_rl.rewards.remote import RemoteError
from spectrum_rl.sources.base import Example
from spectrum_rl.trainer.checkpoint import read_jsonl
from tests.test_reliability import train_until
from tests.test_trainer import make_trainer, write_config

KEY = "sk-planted-0123456789abcdef"
VERDICTS = {"GOOD": " Yes.", "BAD": "no", "SEVEN": "7/10"}


class Server:
    """A reward server whose path picks the behaviour; ``fail_first[path]`` requests fail first,
    ``redirects[path]`` (status, location) answers a redirect. ``tls``: serve https."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, dict, dict]] = []  # (path, body, headers)
        self.fail_first: dict[str, int] = {}
        self.redirects: dict[str, tuple[int, str]] = {}
        self.failed = 0  # 500s sent by /half
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body, dict(self.headers)))
                if self.path in server.redirects:
                    status, location = server.redirects[self.path]
                    self.send_response(status)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if self.path.startswith("/deep"):  # valid JSON nested deeper than any parser recurses
                    return self._send(200, b"[" * 200_000 + b"]" * 200_000)
                if self.path == "/badutf8":
                    return self._send(200, b'{"scores": [1, 2], "note": "\xff\xfe"}')
                if self.path.endswith("/chat/completions"):  # an OpenAI-compatible judge
                    rubric = body["messages"][0]["content"]
                    said = next((v for k, v in VERDICTS.items() if k in rubric), "maybe")
                    return self._send(200, json.dumps({"choices": [{"message": {"content": said}}]}).encode())
                n = len(body["completions"])
                scores = [float(len(c)) for c in body["completions"]]
                if self.path == "/soak":  # a fault schedule seeded by the request itself, whatever the order
                    u = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8], 16) / 16**8
                    if u < 0.20:
                        return self._send(500, b"{}")
                    if u < 0.25:
                        time.sleep(0.5)
                    elif u < 0.30:
                        return self._send(200, b"<html>oops</html>")
                if self.path == "/half" and len(server.requests) % 2:  # every other request fails
                    server.failed += 1
                    return self._send(500, b"{}")
                if server.fail_first.get(self.path, 0) > 0:
                    server.fail_first[self.path] -= 1
                    status = 429 if "429" in self.path else 500
                    return self._send(status, b"{}")
                if self.path.startswith("/slow"):
                    time.sleep(0.5 if self.path == "/slowok" else 1.0)
                if self.path.startswith("/drip"):
                    return self._drip(scores)
                if self.path.startswith("/drop"):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                payload = {
                    "/rewards": {"rewards": scores},
                    "/garbage": None,
                    "/nan": {"scores": [math.nan, "x"] + scores[2:]},
                    "/short": {"scores": scores[: n - 1]},
                    "/big": {"scores": scores, "pad": "x" * 4096},
                }.get(self.path, {"scores": scores})
                return self._send(200, b"not json{" if payload is None else json.dumps(payload).encode())

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drip(self, scores: list[float]) -> None:
                """A valid answer sent a byte every 0.2 s: the headers onwards, or only the body."""
                data = b" " * 40 + json.dumps({"scores": scores}).encode()
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                fast, slow = (b"", head + data) if self.path == "/drip-headers" else (head, data)
                self.close_connection = True
                with contextlib.suppress(OSError):  # the client hung up
                    self.wfile.write(fast)
                    for i in range(len(slow)):
                        time.sleep(0.2)
                        self.wfile.write(slow[i : i + 1])

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


class Trap:
    """The other host a redirect points to: a listening socket that nothing should connect to."""

    def __init__(self, host: str) -> None:
        try:
            self.sock = socket.create_server((host, 0))
        except OSError:
            pytest.skip(f"cannot listen on {host} here")
        self.port = self.sock.getsockname()[1]

    def received(self) -> list[bytes]:
        """What each connection made so far sent (they wait in the listen queue until now)."""
        out = []
        self.sock.settimeout(0.05)
        while True:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                return out
            with conn:
                conn.settimeout(0.2)
                data = b""
                with contextlib.suppress(OSError):
                    while chunk := conn.recv(65536):
                        data += chunk
                out.append(data)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def component(url: str, **fields):
    spec = HttpSpec.model_validate({"type": "http", "url": url, "backoff_s": 0.01, **fields})
    return spec.build(Path("."))


EXAMPLE = Example(prompt="sort: cba", answer="abc", expert=None, fields={"question": "sort: cba", "level": 3})


def test_a_group_is_posted_with_the_python_reward_names_and_scored(server):
    reward = component(server.url + "/ok")
    assert reward.score(["a", "bb", "ccc"], EXAMPLE) == [1.0, 2.0, 3.0]
    path, body, _ = server.requests[-1]
    assert path == "/ok" and body["prompts"] == ["sort: cba"] * 3 and body["completions"] == ["a", "bb", "ccc"]
    assert body["answer"] == ["abc"] * 3 and body["level"] == [3] * 3 and body["question"] == ["sort: cba"] * 3
    assert component(server.url + "/rewards").score(["a", "bb"], EXAMPLE) == [1.0, 2.0]  # OpenRLHF's shape


def test_prefetch_sends_the_groups_concurrently_or_as_one_step_batch(server):
    groups = [([f"{'x' * k}"] * 2, EXAMPLE) for k in range(1, 6)]
    before = len(server.requests)
    reward = component(server.url + "/ok", concurrency=3)
    reward.prefetch(groups)
    assert len(server.requests) - before == 5
    assert [reward.score(c, ex) for c, ex in groups] == [[float(k)] * 2 for k in range(1, 6)]
    assert len(server.requests) - before == 5  # answered from the prefetch
    step = component(server.url + "/ok", batch="step")
    step.prefetch(groups)
    assert len(server.requests) - before == 6 and step.score(groups[2][0], EXAMPLE) == [3.0, 3.0]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/slow", "timeout"),
        ("/drop", "connection"),
        ("/garbage", "malformed"),
        ("/short", "malformed"),
        ("/big", "malformed"),
    ],
)
def test_each_failure_class_is_a_remote_error_and_counted(server, path, kind):
    reward = component(server.url + path, timeout_s=0.3, retries=1, max_response_bytes=1024)
    with pytest.raises(RemoteError) as err:
        reward.score(["a", "b"], EXAMPLE)
    assert err.value.kind == kind
    assert reward.events()[kind] >= 1 and reward.events() == {}  # counted once, then reset


def test_non_numeric_scores_fail_only_their_samples(server):
    reward = component(server.url + "/nan")
    scores = reward.score(["a", "b", "ccc"], EXAMPLE)
    assert math.isnan(scores[0]) and math.isnan(scores[1]) and scores[2] == 3.0
    assert reward.events() == {"non_numeric": 2}


@pytest.mark.parametrize("path", ["/flaky500", "/flaky429"])
def test_5xx_and_429_are_retried_with_backoff(server, path):
    server.fail_first[path] = 2
    reward = component(server.url + path, retries=2)
    assert reward.score(["ab"], EXAMPLE) == [2.0]
    assert reward.events() == {f"http_{429 if '429' in path else 500}": 2}


def test_the_breaker_stops_calling_a_dead_server_for_its_cooldown(server):
    server.fail_first["/dead"] = 100
    reward = component(server.url + "/dead", retries=0, breaker_failures=2, breaker_cooldown_s=60)
    before = len(server.requests)
    for _ in range(5):
        with pytest.raises(RemoteError):
            reward.score(["a"], EXAMPLE)
    assert len(server.requests) - before == 2  # then the circuit is open
    assert reward.events() == {"http_500": 2, "circuit_open": 3}


def test_the_key_comes_from_the_environment_and_is_never_in_a_message(server, monkeypatch):
    monkeypatch.setenv("REWARD_KEY", KEY)
    component(server.url + "/ok", api_key_env="REWARD_KEY").score(["a"], EXAMPLE)
    assert server.requests[-1][2]["Authorization"] == f"Bearer {KEY}"
    with pytest.raises(RemoteError) as err:
        component(server.url + "/garbage", api_key_env="REWARD_KEY").score(["a"], EXAMPLE)
    assert KEY not in str(err.value)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://host/x", "localhost:8000", "http://", "http://127.0.0.1:99999/score"]
)
def test_a_url_that_is_not_http_is_a_config_error(tmp_path, tiny_random_lm_dir, url):
    task = _task(url)
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 1}, domains=[task])
    with pytest.raises(ConfigError, match="expected an http:// or https:// URL"):
        load_config(path)


def test_score_list_shapes():
    assert score_list({"scores": [1, 2]}, 2) == [1.0, 2.0] and score_list([0.5], 1) == [0.5]
    with pytest.raises(RemoteError, match="2 scores for 3"):
        score_list({"rewards": [1, 2]}, 3)
    assert math.isnan(score_list([True], 1)[0])  # a boolean is not a score


def _task(url: str, **fields) -> dict:
    return {
        "name": "sorting",
        "kind": "structured",
        "source": {"type": "builtin", "generator": "sorting"},
        "eval": {"size": 4},
        "reward": [{"type": "exact_match"}, {"type": "http", "url": url, "backoff_s": 0.01, **fields}],
    }


def test_a_run_with_a_failing_server_goes_on_counts_each_class_and_never_writes_the_key(
    server, tmp_path, tiny_random_lm_dir, monkeypatch
):
    monkeypatch.setenv("REWARD_KEY", KEY)
    task = _task(server.url + "/half", retries=0, api_key_env="REWARD_KEY", breaker_failures=1000)
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 3, "save_every": 1}, domains=[task])
    make_trainer(path).train()
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(metrics) == 3  # no step lost
    counted = sum(m.get("reward_events/sorting/http/http_500", 0) for m in metrics)
    assert 0 < counted <= server.failed  # each 500 counted once (the final eval's come after the last step)
    assert sum(m.get("reward_errors/sorting/http", 0) for m in metrics) > 0  # scored by on_error: zero
    for file in (tmp_path / "run").rglob("*"):
        if file.is_file():
            assert KEY.encode() not in file.read_bytes(), f"the key leaked into {file}"


@pytest.mark.slow
def test_soak_30_steps_against_a_failing_server_and_kill_9_resume_gives_the_same_weights(
    server, tmp_path, tiny_random_lm_dir
):
    """20% of requests answer 500, 5% time out, 5% answer garbage (a schedule seeded by each request's
    body): the run completes every step, counts each class, and a kill -9 + --resume ends with the
    weights of an uninterrupted run against the same schedule."""
    steps = 30
    training = {"steps": steps, "save_every": 3}
    http = {"timeout_s": 0.2, "retries": 1, "breaker_failures": 1000}
    (tmp_path / "ref").mkdir()
    task = _task(server.url + "/soak", **http)
    reference = write_config(tmp_path / "ref", tiny_random_lm_dir, training, domains=[task])
    reference_cfg = load_config(reference).model_dump(mode="json")
    assert main(["train", str(reference), "--set", "eval.every=10"]) == 0
    metrics = read_jsonl(tmp_path / "ref" / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))
    counted = {k.rsplit("/", 1)[1]: 0.0 for m in metrics for k in m if k.startswith("reward_events/sorting/http/")}
    for m in metrics:
        for k, v in m.items():
            if k.startswith("reward_events/sorting/http/"):
                counted[k.rsplit("/", 1)[1]] += v
    print(f"soak failure classes over {steps} steps: {counted}")
    assert counted.get("http_500", 0) > 0 and counted.get("timeout", 0) > 0 and counted.get("malformed", 0) > 0
    assert reference_cfg["domains"][0]["reward"][1]["url"].endswith("/soak")

    path = write_config(tmp_path, tiny_random_lm_dir, training, domains=[task])
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "spectrum_rl", "train", str(path), "--set", "eval.every=10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = random.Random(os.getpid()).randint(8, steps - 8)
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        done = (run / "metrics.jsonl").read_text().count("\n") if (run / "metrics.jsonl").exists() else 0
        if done >= target and any((run / "checkpoints").glob("step-*")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read_jsonl(run / "metrics.jsonl")) < steps, "finished before the kill"
    with pytest.warns(UserWarning, match=r"taking over the lock"):
        assert main(["train", str(path), "--resume", "--set", "eval.every=10"]) == 0
    assert [m["step"] for m in read_jsonl(run / "metrics.jsonl")] == list(range(1, steps + 1))
    ours = load_file(run / "final" / "model.safetensors")
    theirs = load_file(tmp_path / "ref" / "run" / "final" / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_judge_endpoint_asks_an_openai_compatible_server_and_reads_its_verdict(server, monkeypatch):
    from spectrum_rl.rewards.neural import JudgeSpec

    monkeypatch.setenv("JUDGE_KEY", KEY)
    spec = JudgeSpec.model_validate(
        {
            "type": "judge",
            "model": "served-judge",
            "endpoint": {"base_url": server.url + "/v1", "api_key_env": "JUDGE_KEY", "concurrency": 4},
        }
    )
    judge = spec.build(Path("."))
    completions = ["GOOD", "BAD", "SEVEN", "??"]
    judge.prefetch([(completions, EXAMPLE)])
    scores = judge.score(completions, EXAMPLE)
    assert scores[:3] == [1.0, 0.0, pytest.approx(6 / 9)] and math.isnan(scores[3])
    path, body, headers = server.requests[-1]
    assert path == "/v1/chat/completions" and body["model"] == "served-judge" and body["temperature"] == 0
    assert headers["Authorization"] == f"Bearer {KEY}" and judge.events() == {"non_numeric": 1}


@pytest.mark.slow
def test_sigterm_while_a_request_is_pending_still_checkpoints_and_exits_143(server, tmp_path, tiny_random_lm_dir):
    from spectrum_rl.trainer.checkpoint import list_checkpoints

    task = _task(server.url + "/slowok", timeout_s=5)
    eval_rare = {"every": 1000, "max_new_tokens": 6}
    path = write_config(
        tmp_path, tiny_random_lm_dir, {"steps": 200, "prompts_per_step": 2}, domains=[task], eval=eval_rare
    )
    run = tmp_path / "run"
    proc = train_until(path, run, steps=1)
    deadline = time.time() + 120
    seen = len(server.requests)
    while len(server.requests) == seen and time.time() < deadline:  # a request of the next step is pending
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    done = [m["step"] for m in read_jsonl(run / "metrics.jsonl")]
    assert [p.name for p in list_checkpoints(run / "checkpoints")][-1] == f"step-{done[-1]}"
    assert "Traceback" not in err


# The key goes to the configured host only, and every request keeps its deadline.


@pytest.mark.parametrize(
    ("status", "host", "location"),
    [
        (302, "127.0.0.1", "http://127.0.0.1:{port}/score"),  # the same host, another port
        (307, "127.0.0.1", "http://localhost:{port}/score"),
        (308, "127.0.0.2", "http://127.0.0.2:{port}/score"),  # another loopback host
        (301, "127.0.0.1", "ftp://127.0.0.1:{port}/score"),
        (303, "127.0.0.1", "file:///etc/passwd"),
    ],
)
def test_a_redirect_is_never_followed_so_the_key_never_reaches_another_host(
    server, monkeypatch, status, host, location
):
    monkeypatch.setenv("REWARD_KEY", KEY)
    trap = Trap(host)
    path = f"/moved-{status}"
    server.redirects[path] = (status, location.format(port=trap.port))
    reward = component(server.url + path, api_key_env="REWARD_KEY", retries=2)
    reward.prefetch([(["a", "bb"], EXAMPLE)])
    with pytest.raises(RemoteError) as err:
        reward.score(["a", "bb"], EXAMPLE)
    assert err.value.kind == "http_3xx" and reward.events() == {"http_3xx": 1}  # failed, not retried
    assert server.requests[-1][0] == path and server.requests[-1][2]["Authorization"] == f"Bearer {KEY}"
    received = trap.received()
    assert len(received) == 0, "the redirect was followed"
    assert not any(KEY.encode() in data for data in received)


@pytest.mark.parametrize("url", ["http://user:hunter2@127.0.0.1:8000/score", "https://hunter2@example.com/score"])
def test_a_url_with_user_info_is_a_config_error_that_does_not_repeat_it(tmp_path, tiny_random_lm_dir, url):
    path = write_config(tmp_path, tiny_random_lm_dir, {"steps": 1}, domains=[_task(url)])
    with pytest.raises(ConfigError, match="must not carry user info") as err:
        load_config(path)
    message = str(err.value)
    assert "domains[0].reward[1].url" in message and "api_key_env" in message
    assert "hunter2" not in message and "\n" not in message
    with pytest.raises(ValueError) as direct:  # validated outside a config file too
        HttpSpec.model_validate({"type": "http", "url": url})
    assert "hunter2" not in str(direct.value)


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body"])
def test_a_server_dripping_its_answer_cannot_hold_a_request_past_timeout_s(server, path):
    reward = component(server.url + path, timeout_s=1, retries=0)
    start = time.monotonic()
    with pytest.raises(RemoteError) as err:
        reward.score(["a"], EXAMPLE)
    assert err.value.kind == "timeout" and 0.9 < time.monotonic() - start < 1.8  # the whole drip: over 10 s


def test_a_host_that_never_completes_the_handshake_is_cut_at_the_deadline():
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    filling = [socket.socket() for _ in range(4)]  # a full accept queue: the kernel drops further SYNs
    for sock in filling:
        sock.setblocking(False)
        sock.connect_ex(listener.getsockname())
    try:
        reward = component(f"http://127.0.0.1:{listener.getsockname()[1]}/score", timeout_s=0.5, retries=0)
        start = time.monotonic()
        with pytest.raises(RemoteError, match="^timeout"):
            reward.score(["a"], EXAMPLE)
        assert time.monotonic() - start < 1.0
    finally:
        for sock in [*filling, listener]:
            sock.close()


def test_the_hybrid_s_limit_on_a_group_sent_on_its_own_is_not_retried_past(server):
    reward = component(server.url + "/slow", timeout_s=0.3, retries=2)  # no prefetch: score() sends it
    start = time.monotonic()
    result = HybridReward("sorting", [reward]).score(["a"], EXAMPLE)  # its limit: timeout_s for the call
    assert time.monotonic() - start < 0.6 and result.errors == {"http": 1} and reward.events() == {"timeout": 1}


def test_a_step_s_requests_end_by_its_deadline_and_none_starts_after_it(server):
    groups = [([f"group {k}"], EXAMPLE) for k in range(6)]
    reward = component(server.url + "/slow", timeout_s=5, retries=2, concurrency=2, step_timeout_s=0.5)
    before = len(server.requests)
    start = time.monotonic()
    reward.prefetch(groups)  # each answer takes 1 s
    assert time.monotonic() - start < 0.9
    assert len(server.requests) - before == 2  # the two in flight; the rest, queued, never started
    for completions, ex in groups:
        with pytest.raises(RemoteError, match="^timeout"):
            reward.score(completions, ex)
    assert reward.events() == {"timeout": 6}


def test_a_backoff_never_sleeps_past_the_step_s_deadline(server):
    server.fail_first["/down"] = 1000
    reward = component(server.url + "/down", retries=3, backoff_s=30, max_backoff_s=30, step_timeout_s=0.5)
    groups = [([f"group {k}"], EXAMPLE) for k in range(3)]
    start = time.monotonic()
    reward.prefetch(groups)
    assert time.monotonic() - start < 0.9
    for completions, ex in groups:
        with pytest.raises(RemoteError, match="^http_500"):
            reward.score(completions, ex)


@pytest.mark.parametrize("path", ["/deep", "/badutf8"])
def test_an_answer_that_does_not_decode_is_malformed_and_on_error_zero_scores_it_0(server, path):
    reward = component(server.url + path)
    reward.prefetch([(["a", "bb"], EXAMPLE)])
    result = HybridReward("sorting", [reward]).score(["a", "bb"], EXAMPLE)
    assert result.total.tolist() == [0.0, 0.0] and result.errors == {"http": 2}
    assert reward.events() == {"malformed": 1}


def test_a_judge_answer_that_does_not_decode_is_malformed(server):
    from spectrum_rl.rewards.neural import JudgeSpec

    spec = {"type": "judge", "model": "m", "endpoint": {"base_url": server.url + "/deep/v1", "retries": 0}}
    judge = JudgeSpec.model_validate(spec).build(Path("."))
    judge.prefetch([(["GOOD"], EXAMPLE)])
    with pytest.raises(RemoteError, match="^malformed"):
        judge.score(["GOOD"], EXAMPLE)


def test_prefetch_never_raises_a_group_s_error_is_raised_by_its_score(server):
    odd = Example(prompt="p", answer="a", expert=None, fields={"when": object()})  # json cannot encode it
    reward = component(server.url + "/ok")
    reward.prefetch([(["a"], odd), (["bb"], EXAMPLE)])
    with pytest.raises(TypeError):
        reward.score(["a"], odd)
    assert reward.score(["bb"], EXAMPLE) == [2.0]


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 that no client trusts."""
    crypto = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = crypto.Name([crypto.NameAttribute(crypto.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        crypto.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(crypto.SubjectAlternativeName([crypto.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


def test_https_verifies_the_certificate_and_keeps_the_deadline(tmp_path):
    tls = Server(tls=_self_signed(tmp_path))
    try:
        with pytest.raises(RemoteError, match="^connection"):
            component(tls.url + "/ok", retries=0).score(["a"], EXAMPLE)  # an untrusted certificate
        assert component(tls.url + "/ok", verify_tls=False).score(["abc"], EXAMPLE) == [3.0]
        start = time.monotonic()
        with pytest.raises(RemoteError, match="^timeout"):
            component(tls.url + "/drip-body", verify_tls=False, timeout_s=1, retries=0).score(["a"], EXAMPLE)
        assert time.monotonic() - start < 1.8
    finally:
        tls.httpd.shutdown()


def test_a_prefetch_that_raises_does_not_stop_the_experience_step(tmp_path, tiny_random_lm_dir, monkeypatch, caplog):
    trainer = make_trainer(write_config(tmp_path, tiny_random_lm_dir, {"steps": 1}))

    def broken(groups) -> None:
        raise RuntimeError("a third-party prefetch broke")

    monkeypatch.setattr(trainer.domains["sorting"].reward.components[0], "prefetch", broken)
    local = [("sorting", ex) for ex in trainer.domains["sorting"].sample(2, random.Random(0))]
    with caplog.at_level(logging.WARNING, logger="spectrum_rl.trainer.experience"):
        for _ in range(2):
            exp = trainer.experience.make(local, torch.Generator().manual_seed(0))
            G = trainer.config.training.group_size
            assert len(exp.groups) == 2 and all(len(g.outcome.rewards) == G for g in exp.groups)  # scored
    warned = [r.getMessage() for r in caplog.records if "prefetch" in r.getMessage()]
    assert len(warned) == 1 and "RuntimeError: a third-party prefetch broke" in warned[0]  # once
