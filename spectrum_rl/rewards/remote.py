"""Calling a server over HTTP: the transport of the `http` reward and of a judge's `endpoint`
(:mod:`spectrum_rl.rewards.http`), with deadlines, retries, backoff and a circuit breaker.

Deadlines: ``timeout_s`` is a hard limit on one request, from connecting to the last byte of the
answer (connect, TLS handshake, sending, status line, headers and body together; each retry has
its own): a watchdog shuts the socket down when it passes, so a server that sends its answer a
byte at a time cannot stretch it. ``step_timeout_s`` (default 60 s) bounds a step's requests
together (:meth:`HttpClient.gather`, which a component's ``prefetch`` uses): no request or retry
starts after it, no backoff sleeps past it, every request in flight is cut at it (each request
ends at the earlier of its own deadline and the step's), and the items still without an answer
fail as ``timeout``. Name resolution is bounded by the system resolver's own timeout only; a
``gather`` waits for it at most ``GRACE_S`` (0.5 s) past its deadline.

Failure classes (:class:`RemoteError`'s ``kind``, counted by :meth:`HttpClient.events`, which the
components report per step): ``timeout`` (past a deadline), ``http_<status>`` (an error status),
``http_3xx`` (any redirect: never followed), ``connection`` (refused, dropped, TLS failure),
``malformed`` (not HTTP, not JSON — anything decoding raises, too deep a nesting and invalid UTF-8
included —, too large; a component adds an answer without what it asked for), ``circuit_open``
(the server failed ``breaker_failures`` requests in a row: it is not called for
``breaker_cooldown_s``). Timeouts, connection errors, 429 and 5xx are retried up to ``retries``
times after an exponential backoff with full jitter (``backoff_s * 2**k``, at most
``max_backoff_s``, times a uniform draw in [0, 1]); a request that still fails raises
:class:`RemoteError`.

Security: a key comes only from the environment variable ``api_key_env`` names, read when a
request is made and sent as ``Authorization: Bearer``; it is never stored in the config, logged or
put in an error message. It goes to the configured host only: redirects are never followed (a 3xx
is the failure ``http_3xx``), and requests go straight to the host (proxy environment variables
are not used). Only http(s) URLs are accepted, and a URL carrying user info (``user:password@``)
is a config error: a credential belongs in the environment. TLS certificates are verified unless
``verify_tls: false``. A response larger than ``max_response_bytes`` is a failure.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import math
import os
import random
import selectors
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit

from pydantic import ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from spectrum_rl.schema import StrictModel

RETRIED = ("timeout", "connection", "http_429")  # and every http_5xx
GRACE_S = 0.5  # how long a gather waits past its deadline for the requests being cut at it
T, R = TypeVar("T"), TypeVar("R")


class RemoteError(Exception):
    """A request that failed for good; ``kind`` is its failure class (module docstring)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class _Deadline:
    """The hard end of one request, at ``at`` (``time.monotonic()``; inf: none): a timer then shuts
    down the socket being used, which wakes a blocked connect, TLS handshake, send or read. The
    sockets have no timeouts of their own: those bound each read, not the request (a server sending
    a byte at a time restarts them with every byte), and a TimeoutError is then always the caller's
    (``call_with_timeout``'s alarm), never mistaken for this deadline."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        if math.isfinite(at):
            self._timer = threading.Timer(max(0.0, at - time.monotonic()), self._expire)
            self._timer.daemon = True
            self._timer.start()

    @property
    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at

    def remaining(self) -> float | None:
        """Seconds left, None without a deadline."""
        return max(0.0, self.at - time.monotonic()) if math.isfinite(self.at) else None

    def watch(self, sock: socket.socket | None = None) -> None:
        """Shut ``sock`` down at the deadline (None: the one watched); ConnectionAbortedError once
        it has passed. A shutdown does nothing to a socket that has not started connecting, so a
        connect checks again once it has."""
        with self._lock:
            if self.passed:
                raise ConnectionAbortedError("the request's deadline passed")
            self._sock = self._sock if sock is None else sock

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                # socket.socket's own shutdown, also for an SSLSocket: it only wakes the blocked
                # call, without tearing down the TLS state under the thread that is reading.
                # OSError: not connected yet (see watch) or already closed.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


class _Connection(http.client.HTTPConnection):
    """One HTTP(S) connection whose every socket ``deadline`` watches from before it connects."""

    def __init__(self, url: SplitResult, deadline: _Deadline, context: ssl.SSLContext | None) -> None:
        super().__init__(url.hostname, url.port or (443 if context else 80))
        self.default_port = 443 if context else 80  # the Host header names other ports only
        self.deadline, self.context = deadline, context

    def connect(self) -> None:
        error = OSError(f"no address for {self.host}")
        for family, kind, proto, _, address in socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                self._connect(sock, address)
                break
            except OSError as err:
                sock.close()
                if isinstance(err, TimeoutError) or self.deadline.passed:  # the caller's alarm, or no time left
                    raise
                error = err
        else:
            raise error
        if self.context is None:
            self.sock = sock
            return
        # kept before the handshake, so that closing the connection closes it when that fails
        self.sock = self.context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        self.deadline.watch(self.sock)
        self.sock.do_handshake()

    def _connect(self, sock: socket.socket, address: Any) -> None:
        """Connect without blocking, then wait for it: a connect that has started is one the
        deadline's shutdown can abort."""
        self.deadline.watch(sock)
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            self.deadline.watch()
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_WRITE)
                selector.select(self.deadline.remaining())
            self.deadline.watch()
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            error = OSError(code, os.strerror(code))  # ConnectionRefusedError, ...
            # the kernel's own connect timeout is a ConnectionError here: a TimeoutError is the caller's alarm
            raise ConnectionError(code, os.strerror(code)) if isinstance(error, TimeoutError) else error
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # http.client sends headers and body apart


class HttpClient:
    """POSTs JSON under a deadline, with bounded retries with jittered exponential backoff, and a
    circuit breaker; counts every failure class (``events``). Thread-safe."""

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

    def post(self, payload: dict[str, Any], deadline: float = math.inf) -> Any:
        """The decoded JSON answer, or RemoteError after the retries. No attempt starts and no
        backoff sleeps past ``deadline`` (``time.monotonic()``), and every attempt ends by it."""
        with self._lock:
            if time.monotonic() < self._open_until:
                self._events["circuit_open"] += 1
                raise RemoteError("circuit_open", f"not calling {self._where()} for a while after repeated failures")
        body = json.dumps(payload).encode()
        if time.monotonic() >= deadline:  # queued behind the step's other requests until its end
            self.count("timeout")
            raise RemoteError("timeout", f"the step's deadline passed before {self._where()} was called")
        for attempt in range(self.spec.retries + 1):
            own = math.inf if self.spec.timeout_s is None else time.monotonic() + self.spec.timeout_s
            try:
                answer = self._once(body, min(own, deadline))
            except RemoteError as err:
                self.count(err.kind)
                retry = err.kind in RETRIED or err.kind.startswith("http_5")
                pause = random.random() * min(self.spec.max_backoff_s, self.spec.backoff_s * 2**attempt)
                if retry and attempt < self.spec.retries and time.monotonic() + pause < deadline:
                    time.sleep(pause)
                    continue
                self.failed()
                raise
            with self._lock:
                self._failures_in_row = 0
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def gather(self, fn: Callable[[T, float], R], items: Sequence[T]) -> list[R | BaseException]:
        """``fn(item, deadline)`` for every item, at most ``concurrency`` at once, all under one
        deadline ``step_timeout_s`` from now. Never raises: what an item raises is its answer, and
        an item without an answer by the deadline is a ``timeout`` RemoteError."""
        deadline = time.monotonic() + self.spec.step_timeout_s
        pool = ThreadPoolExecutor(max_workers=min(self.spec.concurrency, max(1, len(items))))
        try:
            futures = [pool.submit(fn, item, deadline) for item in items]
            # every request ends at the deadline; the grace is for the watchdog to cut them
            wait(futures, timeout=max(0.0, deadline - time.monotonic()) + GRACE_S)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a call stuck in name resolution is left behind
        out: list[R | BaseException] = []
        for future in futures:
            if not future.done() or future.cancelled():
                if future.cancelled():  # never started; a running one counts its own failure
                    self.count("timeout")
                out.append(RemoteError("timeout", f"no answer from {self._where()} by the step's deadline"))
                continue
            error = future.exception()
            out.append(future.result() if error is None else error)
        return out

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

    def _once(self, body: bytes, deadline: float) -> Any:
        """One POST that ends by ``deadline``: the decoded answer, or RemoteError."""
        url = urlsplit(self.spec.url)
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if self.spec.api_key_env:
            key = os.environ.get(self.spec.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        limit = deadline - time.monotonic()
        watchdog = _Deadline(deadline)
        connection = _Connection(url, watchdog, self._context if url.scheme == "https" else None)
        try:
            connection.request("POST", (url.path or "/") + (f"?{url.query}" if url.query else ""), body, headers)
            response = connection.getresponse()
            status = response.status
            raw = response.read(self.spec.max_response_bytes + 1) if 200 <= status < 300 else b""
        except (OSError, http.client.HTTPException) as err:
            if isinstance(err, TimeoutError):  # not this deadline (see _Deadline) but the caller's: it stands
                self.count("timeout")
                raise
            if watchdog.passed:
                raise RemoteError("timeout", f"{self._where()} did not answer within {limit:.3g} s") from None
            if isinstance(err, (OSError, http.client.IncompleteRead)):  # refused, reset, cut (or TLS)
                raise RemoteError("connection", f"{self._where()}: {type(err).__name__}") from None
            raise RemoteError("malformed", f"{self._where()} did not answer in HTTP ({type(err).__name__})") from None
        finally:
            watchdog.cancel()
            connection.close()
        if watchdog.expired:  # shut down while the body was read: what came may be truncated
            raise RemoteError("timeout", f"{self._where()} did not answer within {limit:.3g} s")
        if 300 <= status < 400:  # following it could take the key to another host
            raise RemoteError("http_3xx", f"{self._where()} answered {status}, a redirect, which is not followed")
        if not 200 <= status < 300:
            raise RemoteError(f"http_{status}", f"{self._where()} answered {status}")
        if len(raw) > self.spec.max_response_bytes:
            raise RemoteError("malformed", f"response larger than {self.spec.max_response_bytes} bytes")
        if response.length:  # fewer bytes than its Content-Length: the connection dropped
            raise RemoteError("connection", f"{self._where()}: the response was cut short")
        try:
            return json.loads(raw)
        except TimeoutError:  # the caller's alarm, not a decoding error
            raise
        except Exception as err:  # noqa: BLE001 - ValueError, UnicodeError, RecursionError (deep nesting), MemoryError
            raise RemoteError("malformed", f"response is not JSON ({type(err).__name__})") from None


class RemoteFields(StrictModel):
    """How a server is called: the transport settings of `http` and of a judge's `endpoint`."""

    model_config = ConfigDict(hide_input_in_errors=True)  # a rejected URL may hold a password

    url: str = Field(
        ...,
        description="The endpoint, http:// or https://, without user info (module docstring of rewards/remote.py).",
    )
    timeout_s: float | None = Field(
        5.0,
        gt=0,
        description="Seconds one request may take, from connecting to the answer's last byte (each retry "
        "again). null: no limit of its own.",
    )
    step_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Seconds a step's requests may take together (all its groups, retries and backoffs): "
        "no request or retry starts later, and the groups not answered by then fail as `timeout`.",
    )
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
        if "@" in parts.netloc:
            # "unknown_name" errors are shown as their message alone (config/messages.py), not
            # with the value, which holds the credential
            message = (
                "a URL must not carry user info (user:password@); "
                "put the key in the environment variable that api_key_env names"
            )
            raise PydanticCustomError("unknown_name", "{message}", {"message": message})
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(f"expected an http:// or https:// URL with a host; found {v!r}")
        return v
