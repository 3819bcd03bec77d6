"""A TCP proxy between the service and PostgreSQL that can cut and hang connections (issue 13, finding 3).

- `cut()`: closes every connection through it and refuses new ones (closed at once): a database
  that went away, a restart, a failover.
- `hang()`: keeps every connection open but delivers nothing either way, and accepts new ones
  without connecting them: a hung server or a black-holed network, which acknowledges bytes and
  answers none (TCP keepalives and PostgreSQL's own timeouts do not end such a wait).
- `heal()`: everything passes again (connections cut stay cut).
"""

from __future__ import annotations

import select
import socket
import threading


class DbProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="db-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            mode = self.mode
            if mode == "cut":
                client.close()
                continue
            with self._lock:
                self._conns.append(client)
            if mode == "hang":
                continue  # accepted, never connected: the client waits for an answer that never comes
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.append(server)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closed:
                if self.mode == "hang":
                    select.select([], [], [], 0.05)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.05)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except OSError:
            return
        finally:
            if self.mode != "hang":
                a.close()
                b.close()

    def cut(self) -> None:
        self.mode = "cut"
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def hang(self) -> None:
        self.mode = "hang"

    def heal(self) -> None:
        self.mode = "pass"

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()
