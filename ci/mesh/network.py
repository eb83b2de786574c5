"""Where a mesh check's programs listen: a network namespace of its own, or the shared loopback.

In a cluster every pod has its own network namespace, so every sidecar binds Istio's fixed
ports (15001, 15006, 15090, ...) and the gateway port 80. On one machine two runs (or a run and
anything else) would clash on those. As root the check therefore runs in a private network
namespace (unshare(CLONE_NEWNET), loopback only): Istio's own ports, nothing shared, and
whatever it leaves behind goes with the namespace. Otherwise it shares the machine's loopback:
each workload gets a random 127.x.y.z address, every port that can move is a free one, and
the gateway port 80, which only root may bind, moves to a free port in the check's own copy of
bookinfo-gateway.yaml. Two ports cannot move there: Istio 1.10 binds every sidecar's virtual
inbound listener to *:15006, and the sidecar's outbound listener for Bookinfo's port 9080 to
127.0.0.1:9080; a shared run needs both free.

The check runs in a child process (os.fork), so that the namespace never becomes the caller's:
`invoke build mesh publish` must still reach the network after the check.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import pickle
import random
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ci.e2e.report import ChecksFailed
from ci.errors import UserError

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"
# Istio 1.10's fixed sidecar ports that cannot move on a shared loopback (see above).
VIRTUAL_INBOUND = ("0.0.0.0", 15006)
BOOKINFO_PORT = 9080
# Where each workload lives in a private namespace: the measured layout, pod-like.
PRIVATE_ADDRESSES = {
    "reviews-v1": "127.0.0.11",
    "reviews-v2": "127.0.0.12",
    "reviews-v3": "127.0.0.13",
    "productpage": "127.0.0.100",
    "gateway": "127.0.0.200",
}


def can_be_private() -> bool:
    """Whether this process may make a network namespace: root, and allowed to (a container
    without CAP_SYS_ADMIN is not). Tried in a throwaway child."""
    if os.geteuid() != 0:
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _unshare_network() == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _unshare_network() -> int:
    """unshare(CLONE_NEWNET) for this process: 0, or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    return 0 if libc.unshare(CLONE_NEWNET) == 0 else ctypes.get_errno()


def choose(setting: str) -> bool:
    """Whether the run gets a private namespace: `network` auto, private or shared."""
    if setting == "shared":
        return False
    if can_be_private():
        return True
    if setting == "private":
        raise UserError(
            "--network private needs root allowed to unshare a network namespace "
            "(CAP_SYS_ADMIN); run as root or use --network shared"
        )
    return False


@dataclass
class Network:
    private: bool
    handed_out: set[int] = field(default_factory=set)

    def describe(self) -> str:
        if self.private:
            return "a private network namespace (loopback only): Istio's own ports"
        return "the machine's loopback, shared: random 127.x.y.z addresses and free ports"

    def address(self, workload: str) -> str:
        if self.private:
            return PRIVATE_ADDRESSES[workload]
        # Another run may draw the same address: harmless, its ports are its own.
        return f"127.{random.randint(128, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"

    def port(self, canonical: int, host: str = "127.0.0.1") -> int:
        """Istio's own port in a private namespace (once), else a free one on `host`."""
        if self.private and canonical not in self.handed_out:
            self.handed_out.add(canonical)
            return canonical
        return free_port(host)

    def check_fixed_ports(self) -> None:
        """On a shared loopback, the two ports no setting moves must be free."""
        if self.private:
            return
        for host, port in (VIRTUAL_INBOUND, ("127.0.0.1", BOOKINFO_PORT)):
            if not bindable(host, port):
                raise UserError(
                    f"{host}:{port} is in use, and Istio 1.10 binds every sidecar there (another"
                    " mesh check or a sidecar on this machine?); run as root for a private "
                    "network namespace (--network private), or once that port is free"
                )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def enter_private_namespace() -> None:
    """Move this process into a new network namespace and bring its loopback up."""
    error = _unshare_network()
    if error:
        raise UserError(
            f"unshare(CLONE_NEWNET) failed: {os.strerror(error)}; run as root with "
            "CAP_SYS_ADMIN, or use --network shared"
        )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0)))
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags[1] | IFF_UP))


def _interrupt_once(signum, frame):
    # The first Ctrl-C (or SIGTERM) stops the check; any later one must not cut its cleanup
    # short, so it is ignored from here on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def in_child(private: bool, body: Callable[[], T]) -> T:
    """`body()` in a forked child (in a private network namespace when `private`); its result
    or its UserError (a ChecksFailed with its report) comes back to the caller, Ctrl-C and
    SIGTERM included."""
    sys.stdout.flush()
    sys.stderr.flush()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        _child(private, body, writer)
    os.close(writer)
    interrupted = False
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    chunks: list[bytes] = []
    try:
        # Read to the end first: the child writes its outcome as it exits.
        while True:
            try:
                chunk = os.read(reader, 1 << 16)
            except KeyboardInterrupt:
                # The child stops everything it started; a Ctrl-C that reached only this
                # process is passed on (one from a terminal reached both: the child ignores a
                # second).
                interrupted = True
                os.kill(pid, signal.SIGINT)
                continue
            if not chunk:
                break
            chunks.append(chunk)
        _reap(pid)
    finally:
        os.close(reader)
        signal.signal(signal.SIGTERM, previous)
    data = b"".join(chunks)
    outcome = pickle.loads(data) if data else ("crash", "the check's process died")  # noqa: S301 - our own child
    if outcome[0] == "result" and not interrupted:
        return outcome[1]
    if outcome[0] == "failed":
        raise ChecksFailed(outcome[1], outcome[2])
    if outcome[0] == "error":
        raise UserError(outcome[1], detail=outcome[2])
    if outcome[0] == "crash":
        raise RuntimeError(f"the mesh check crashed:\n{outcome[1]}")
    raise KeyboardInterrupt


def _reap(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except KeyboardInterrupt:
            os.kill(pid, signal.SIGINT)
        except ChildProcessError:
            return


def _child(private: bool, body: Callable[[], object], writer: int) -> None:
    """Run `body` and write its outcome to `writer`; never returns."""
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    code, outcome = 1, None
    try:
        if private:
            enter_private_namespace()
        outcome, code = ("result", body()), 0
    except ChecksFailed as exc:
        outcome = ("failed", str(exc), exc.report)
    except UserError as exc:
        outcome = ("error", str(exc), exc.detail)
    except KeyboardInterrupt:
        outcome, code = ("interrupted",), 130
    except BaseException:
        outcome = ("crash", traceback.format_exc())
    finally:
        try:
            data = pickle.dumps(outcome)
        except Exception:
            data = pickle.dumps(("crash", traceback.format_exc()))
        try:
            with os.fdopen(writer, "wb") as out:
                out.write(data)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
