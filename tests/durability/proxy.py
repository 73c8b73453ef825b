"""A TCP relay between the server and PostgreSQL that a test can cut or freeze.

``cut()`` closes every relayed connection and stops listening (PostgreSQL unreachable: a
connection in use breaks without a word from the server, new ones are refused); ``freeze()``
keeps the connections open but relays nothing (a network that drops packets); ``restore()``
listens again on the same port and relays as before.
"""

from __future__ import annotations

import select
import socket
import threading
from contextlib import suppress

from tests.durability.server import free_port


class Proxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._frozen = threading.Event()
        self._closed = False

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            if listener is not self._listener:  # cut meanwhile: refuse
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.05)
                if self._frozen.is_set():
                    continue  # hold everything: nothing goes through
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (a, b):
                with suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        """Stop listening and reset every relayed connection."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            listener.close()
        for sock in sockets:
            with suppress(OSError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                sock.close()

    def freeze(self) -> None:
        self._frozen.set()

    def restore(self) -> None:
        self._frozen.clear()
        if self._listener is None:
            self.start()

    def close(self) -> None:
        self._frozen.clear()
        self.cut()
