"""The smallest useful TCP relay in Python: a reference for what one relay hop costs.

``python bench/reference_relay.py UPSTREAM_PORT`` listens on 127.0.0.1 (a free port, printed
as ``PORT=<n>``) and relays every accepted connection to 127.0.0.1:UPSTREAM_PORT with one
thread per direction doing blocking ``recv``/``sendall``. No framing, no auth, no limits:
bench_ws_proxy.py puts it beside neon_proxy to show the cost of a Python hop by itself.
"""

from __future__ import annotations

import socket
import sys
import threading


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve(client: socket.socket, upstream_port: int) -> None:
    upstream = socket.create_connection(("127.0.0.1", upstream_port))
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main() -> None:
    upstream_port = int(sys.argv[1])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"PORT={listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve, args=(client, upstream_port), daemon=True).start()


if __name__ == "__main__":
    main()
