"""gunicorn's gevent worker, hardened against slow and hostile clients.

One worker holds thousands of connections as greenlets, so slow clients cost memory, not the
threads everyone else waits for. On top of gunicorn's gevent worker:

- a request head (request line and headers) must arrive within HEADER_TIMEOUT, the same
  limit that closes an idle keep-alive connection: slowloris connections are closed;
- every send and every body read must make progress within SEND_TIMEOUT: a client that
  stops reading (or stops sending its upload) is dropped;
- files go out with the kernel's sendfile, cooperatively (gevent's own socket.sendfile
  copies 8 KiB at a time through Python); a client that proves fast gets the rest of its
  file from one blocking sendfile in a native thread of the worker;
- `Expect: 100-continue` is answered only when the app first reads the body, so a PUT
  without a valid token gets its 401 without being invited to send gigabytes first.

The timeouts are set by `configure()` in the master before it forks the workers.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import time

import gevent
from gevent import socket as gsocket
from gevent.threadpool import ThreadPool
from gunicorn.http.errors import NoMoreData
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

HEADER_TIMEOUT = 10.0
SEND_TIMEOUT = 60.0
_SENDFILE_CHUNK = 4 * 1024 * 1024
# TCP_NOTSENT_LOWAT (Linux): unsent bytes the kernel queues before a send waits. 0 is "no
# limit of the socket's own" (the system's, unlimited by default).
_TCP_NOTSENT_LOWAT = getattr(gsocket, "TCP_NOTSENT_LOWAT", 25)
SLOW_UNSENT = 128 * 1024
_FAST_WAIT = 0.01
_SLOW_WAIT = 1.0
# A client that has taken _FAST_AFTER bytes at _FAST_RATE bytes/s or more gets the rest of its
# file from a native thread: one blocking sendfile, where the event loop wakes this worker
# (greenlet switch, timer, Python) each time the socket buffer has room again, some 30 times
# per 64 MiB, which cost 50 ms of CPU per GiB sent (issue 24). Slow clients never qualify:
# they stay on the event loop and cannot tie up the _THREADS threads of a worker.
_FAST_AFTER = 4 * 1024 * 1024
_FAST_RATE = 4 * 1024 * 1024
_THREADS = 8
_THREAD_CHUNK = 1024 * 1024 * 1024
_STALL_CHECK_TIMEVAL = struct.pack("ll", 0, 250_000)  # 0.25 s, as struct timeval


def configure(header_timeout: float, send_timeout: float) -> None:
    global HEADER_TIMEOUT, SEND_TIMEOUT
    HEADER_TIMEOUT, SEND_TIMEOUT = header_timeout, send_timeout


class _Socket(gsocket.socket):
    # Waits go through gevent's own socket internals (_wait on _write_event): the socket's
    # one write watcher and its timeout (SEND_TIMEOUT), not a new watcher and Timeout per wait.
    __slots__ = ("_pacing",)

    def pace(self) -> None:
        """Start with at most SLOW_UNSENT bytes of a response queued unsent (TCP).

        The kernel queues a non-blocking send up to the socket's send buffer, which it
        grows by the connection's speed and, on loopback (64 KiB segments), to 0.6-4 MiB at
        once. A slow reader holds all of it for minutes: 1,000 of them took the machine's
        TCP memory past tcp_mem's pressure mark, where the kernel drops packets and new
        connections (the health probes) wait for retransmissions, seconds at a time.
        """
        self._pacing = None
        if self.family in (gsocket.AF_INET, gsocket.AF_INET6):
            self._limit_unsent(SLOW_UNSENT)

    def _limit_unsent(self, limit: int) -> None:
        self.setsockopt(gsocket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, limit)
        self._pacing = limit

    def _wait_writable(self) -> None:
        started = time.monotonic()
        self._wait(self._write_event)
        if self._pacing is None:
            return
        waited = time.monotonic() - started
        # A reader that took the queued bytes at once gets the kernel's own sizing back (no
        # limit: as fast as before); one that stalls for long is limited again.
        if waited < _FAST_WAIT and self._pacing:
            self._limit_unsent(0)
        elif waited > _SLOW_WAIT and not self._pacing:
            self._limit_unsent(SLOW_UNSENT)

    def sendfile(self, file, offset: int = 0, count: int | None = None) -> int:
        out, source = self.fileno(), file.fileno()
        remaining = count if count is not None else os.fstat(source).st_size - offset
        sent = 0
        started = time.monotonic()
        while remaining > 0:
            fast = sent >= _FAST_AFTER and sent >= _FAST_RATE * (time.monotonic() - started)
            if fast and _threads.free():
                return sent + _threads.send(self, source, offset, remaining)
            wanted = min(remaining, _SENDFILE_CHUNK)
            try:
                n = os.sendfile(out, source, offset, wanted)
            except BlockingIOError:
                self._wait_writable()
                continue
            if n == 0:  # the file is shorter than announced
                break
            offset += n
            sent += n
            remaining -= n
            if n < wanted and remaining > 0:
                # A short send means the socket buffer is full: wait for room rather than
                # pay for a call that can only fail.
                self._wait_writable()
        return sent


class _SendThreads:
    """The worker's native threads for fast clients' sendfile, made in the worker (after the
    fork) when first needed."""

    def __init__(self) -> None:
        self._pool: ThreadPool | None = None

    def free(self) -> bool:
        # Tasks count until their thread is done, also those whose greenlet was killed.
        return self._pool is None or len(self._pool) < _THREADS

    def send(self, sock: _Socket, source: int, offset: int, count: int) -> int:
        if self._pool is None:
            self._pool = ThreadPool(_THREADS)
        # A blocking send returns after _STALL_CHECK without progress (the kernel's
        # SO_SNDTIMEO), so that the thread can drop a client stalled for SEND_TIMEOUT: counted
        # from the end of the last send that moved bytes, which may itself have waited out a
        # few of those checks first (a second at most, measured).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _STALL_CHECK_TIMEVAL)
        # The thread sends on descriptors of its own, and closes them: were this greenlet
        # killed and its socket closed, the number could go to another connection mid-send.
        out, source = os.dup(sock.fileno()), os.dup(source)
        try:
            task = self._pool.spawn(_send_blocking, out, source, offset, count, SEND_TIMEOUT)
        except BaseException:
            os.close(out)
            os.close(source)
            raise
        return task.get()


def _send_blocking(out: int, source: int, offset: int, count: int, timeout: float) -> int:
    """In a native thread: sendfile `count` bytes with the socket in blocking mode; closes
    both descriptors. O_NONBLOCK is shared with the event loop's descriptor (one open file):
    it is back on before the greenlet resumes."""
    flags = fcntl.fcntl(out, fcntl.F_GETFL)
    sent = 0
    progressed = time.monotonic()
    try:
        fcntl.fcntl(out, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        while count > 0:
            try:
                n = os.sendfile(out, source, offset, min(count, _THREAD_CHUNK))
            except BlockingIOError:  # _STALL_CHECK passed without a byte sent
                if time.monotonic() - progressed >= timeout:
                    raise TimeoutError("timed out") from None
                continue
            if n == 0:  # the file is shorter than announced
                break
            progressed = time.monotonic()
            offset += n
            sent += n
            count -= n
    finally:
        fcntl.fcntl(out, fcntl.F_SETFL, flags)
        os.close(out)
        os.close(source)
    return sent


_threads = _SendThreads()


class _ContinueOnRead:
    """The request body; sends `100 Continue` before the first read, and only then."""

    def __init__(self, body, sock) -> None:
        self._body = body
        self._sock = sock
        self.invited = False

    def _invite(self) -> None:
        if not self.invited:
            self.invited = True
            self._sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def read(self, size=None):
        self._invite()
        return self._body.read(size)

    def readline(self, size=None):
        self._invite()
        return self._body.readline(size)

    def readlines(self, size=None):
        self._invite()
        return self._body.readlines(size)

    def __iter__(self):
        self._invite()
        return iter(self._body)


class _HeadWait:
    """Waiting for a request head: at most HEADER_TIMEOUT, and known to a stopping worker."""

    def __init__(self, waiting: set) -> None:
        self._waiting = waiting
        self._timeout = gevent.Timeout(HEADER_TIMEOUT, False)

    def __enter__(self):
        self._waiting.add(gevent.getcurrent())
        return self._timeout.__enter__()

    def __exit__(self, *exc):
        self._waiting.discard(gevent.getcurrent())
        return self._timeout.__exit__(*exc)


class HardenedWorker(GeventWorker):
    def init_process(self):
        # Connections waiting for their next request head: a graceful stop closes them at
        # once, as nginx does, instead of waiting out their keep-alive time.
        self._waiting_for_head: set[gevent.Greenlet] = set()
        super().init_process()

    def timeout_ctx(self):
        # gunicorn wraps the reading of every request head in this: a silent Timeout ends
        # the connection.
        if not self.alive:
            raise StopIteration("the worker is stopping")  # gunicorn closes the connection
        return _HeadWait(self._waiting_for_head)

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        # Out of the signal handler, like gunicorn's own handle_quit. NoMoreData is what
        # gunicorn quietly takes as the client having gone: no error page, no traceback.
        waiting = list(self._waiting_for_head)
        gevent.spawn(gevent.killall, waiting, exception=NoMoreData(b""), block=False)

    def handle(self, listener, client, addr):
        client = _Socket(fileno=client.detach())
        client.settimeout(SEND_TIMEOUT)
        client.pace()
        AsyncWorker.handle(self, listener, client, addr)

    def handle_request(self, listener_name, req, sock, addr):
        gate = None
        if req._expected_100_continue:
            req._expected_100_continue = False  # gunicorn would send it straight away
            gate = req.body = _ContinueOnRead(req.body, sock)
        super().handle_request(listener_name, req, sock, addr)
        if gate is not None and not gate.invited:
            # The client still holds the body it never was invited to send: the connection
            # cannot carry another request.
            raise StopIteration()
