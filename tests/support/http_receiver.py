"""A real HTTP(S) receiver on loopback for outbound-request tests: it records every request it
gets (so a test can assert that a refused target saw no connection at all) and answers with
whatever the test scripts."""

from __future__ import annotations

import datetime
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0
    drip_s: float = 0.0  # send the body one byte at a time, this long apart


def _parts(answer: Answer) -> list[bytes]:
    if not answer.drip_s:
        return [answer.body]
    return [answer.body[i : i + 1] for i in range(len(answer.body))]


class Receiver:
    """``answer`` is one :class:`Answer` for every request, or a function of the request."""

    def __init__(
        self,
        answer: Answer | Callable[[Received], Answer] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.received: list[Received] = []
        self.connections = 0
        self.answer = answer or Answer()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                owner.connections += 1
                super().setup()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                got = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                owner.received.append(got)
                answer = owner.answer(got) if callable(owner.answer) else owner.answer
                time.sleep(answer.delay_s)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                try:
                    for part in _parts(answer):
                        self.wfile.write(part)
                        self.wfile.flush()
                        time.sleep(answer.drip_s)
                except OSError:  # the client hung up (a timeout or size cap under test)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(name: str, directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server TLS context with a certificate for ``name`` and a client context that trusts
    only that certificate (and checks the host name, as the default context does)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client
