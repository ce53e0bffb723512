"""remote/channel.py on its own: reading a command's channel (the transport's tests are in test_ssh.py)."""

from __future__ import annotations

import threading
import time

import pytest

from wgmesh.remote import channel


class _Firehose:
    """A channel that never stops sending: how much does the controller take before it stops?"""

    closed = False
    eof_received = False

    def __init__(self) -> None:
        self.taken = 0
        self.status_event = threading.Event()
        self.exit_status = -1

    def fileno(self) -> int:
        return 0

    def send_ready(self) -> bool:
        return True

    def send(self, data: bytes) -> int:
        return len(data)

    def shutdown_write(self) -> None:
        pass

    def recv_ready(self) -> bool:
        return True

    def recv(self, n: int) -> bytes:
        self.taken += n
        return b"@@wgmesh:ready\n" if self.taken == n else b"x" * n

    def recv_stderr_ready(self) -> bool:
        return False

    def exit_status_ready(self) -> bool:
        return False


def test_memory_stays_bounded_by_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel, "OUTPUT_CAP", 4 * 1024 * 1024)
    chan = _Firehose()
    with pytest.raises(channel.OverCap):
        channel.exchange(chan, b"echo\n", time.monotonic() + 30)  # type: ignore[arg-type]
    assert chan.taken <= 4 * 1024 * 1024 + 65536
