"""An SSH farm for benchmarks: one process, many nodes, each an SSH server on its own loopback port.

    python bench/sshfarm.py N HOST_KEY OUT_DIR      # prints the N ports, one per line, then "ready"

Each node is a paramiko server on 127.0.0.1:PORT with the same host key (HOST_KEY, an ed25519 key file); any
public key logs in. A command on a node gets what a node would print: the farm reads the script from stdin to
its end, then answers READY_MARK (as wgmesh's shell does) and the contents of OUT_DIR/PORT.out, exit status 0.
It runs until it is killed. It is a stand-in for hundreds of lab hosts: the controller cannot tell the
difference in what it does per node (connect, key exchange, host key check, authentication, one command, parse,
plan), only the node side is cheaper.
"""

from __future__ import annotations

import logging
import selectors
import socket
import sys
import threading
from pathlib import Path

import paramiko

READY = b"@@wgmesh:ready\n"


class _Node(paramiko.ServerInterface):
    def __init__(self, output: Path) -> None:
        self.output = output

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=self._answer, args=(channel,), daemon=True).start()
        return True

    def _answer(self, channel: paramiko.Channel) -> None:
        try:
            while channel.recv(65536):  # the script, to its end
                pass
            channel.sendall(READY + self.output.read_bytes())
            channel.send_exit_status(0)
            channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            channel.close()


def serve(count: int, host_key: Path, out_dir: Path) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(host_key))
    sel = selectors.DefaultSelector()
    ports = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        s.setblocking(False)
        ports.append(s.getsockname()[1])
        sel.register(s, selectors.EVENT_READ)
    print("\n".join(map(str, ports)), flush=True)
    print("ready", flush=True)
    while True:
        for sk, _ in sel.select():
            listener = sk.fileobj
            assert isinstance(listener, socket.socket)
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            conn.setblocking(True)
            port = listener.getsockname()[1]
            transport = paramiko.Transport(conn)
            transport.add_server_key(key)
            # with an event, the handshake runs in the transport's thread: accepting goes on meanwhile
            transport.start_server(event=threading.Event(), server=_Node(out_dir / f"{port}.out"))


if __name__ == "__main__":
    # a client that closes its connection once it has read its answer (plan does) can leave the server's last
    # packets unread: paramiko logs each "Socket exception: Connection reset by peer" (no handler: to stderr)
    logging.getLogger("paramiko.transport").addHandler(logging.NullHandler())
    logging.getLogger("paramiko.transport").propagate = False
    serve(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
