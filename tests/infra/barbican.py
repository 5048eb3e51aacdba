"""A small Barbican (OpenStack Key Manager) on 127.0.0.1 for tests: containers and secrets.

Serves the part of Barbican's v1 REST API that python-barbicanclient uses to
read a container and its secrets' payloads, so the client runs for real
against it:

* ``GET /`` version discovery (``key-manager`` microversions 1.0-1.1),
* ``GET /v1/containers/<id>``,
* ``GET /v1/secrets/<id>`` (metadata) and ``GET /v1/secrets/<id>/payload``.

Every request must carry the token given to :class:`FakeBarbican`
(``X-Auth-Token``; with ``token=None`` any token), as keystone middleware
would require; a wrong or missing one is 401.  Unknown ids are 404 with
Barbican's error body.  ``requests`` records what was asked (method and
path) and ``tokens`` the tokens sent, for tests that check what a client did.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeBarbican:
    """Start with ``with FakeBarbican(token) as barbican:``; ``barbican.url`` is the endpoint."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self.containers: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        #: The X-Auth-Token of each request after version discovery.
        self.tokens: list[str | None] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content ------------------------------------------------------------------------

    def add_secret(self, payload: bytes, name: str = '',
                   content_type: str = 'application/octet-stream') -> str:
        secret_id = str(uuid.uuid4())
        self.secrets[secret_id] = {'payload': payload, 'name': name,
                                   'content_type': content_type}
        return f'{self.url}/v1/secrets/{secret_id}'

    def add_container(self, secrets: dict[str, bytes], name: str = 'pdk') -> str:
        """A generic container whose secrets have these names and payloads; its reference."""
        container_id = str(uuid.uuid4())
        refs = [{'name': secret_name, 'secret_ref': self.add_secret(payload, secret_name)}
                for secret_name, payload in secrets.items()]
        self.containers[container_id] = {'name': name, 'secret_refs': refs}
        return f'{self.url}/v1/containers/{container_id}'

    # -- server -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, 'start the server first'
        host, port = self._server.server_address[:2]
        return f'http://{host}:{port}'

    def __enter__(self) -> FakeBarbican:
        self._server = ThreadingHTTPServer(('127.0.0.1', 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


def _handler(barbican: FakeBarbican) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:      # quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header('Content-Type', content_type)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, document: Any) -> None:
            self._send(status, json.dumps(document).encode('utf-8'), 'application/json')

        def _error(self, status: int, title: str, description: str) -> None:
            self._json(status, {'code': status, 'title': title, 'description': description})

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split('?', 1)[0].rstrip('/')
            barbican.requests.append(('GET', path))
            base = barbican.url
            if path == '':
                self._json(300, {'versions': {'values': [{
                    'id': 'v1', 'status': 'CURRENT', 'min_version': '1.0',
                    'max_version': '1.1',
                    'links': [{'rel': 'self', 'href': f'{base}/v1/'}],
                    'media-types': [{'base': 'application/json',
                                     'type': 'application/vnd.openstack.key-manager-v1+json'}],
                }]}})
                return
            token = self.headers.get('X-Auth-Token')
            barbican.tokens.append(token)
            if not token or barbican.token is not None and token != barbican.token:
                self._error(401, 'Unauthorized', 'The request you have made requires '
                                                 'authentication.')
                return
            parts = path.strip('/').split('/')
            if len(parts) == 3 and parts[:2] == ['v1', 'containers']:
                container = barbican.containers.get(parts[2])
                if container is None:
                    self._error(404, 'Not Found', 'Container not found.')
                    return
                self._json(200, {
                    'container_ref': f'{base}/v1/containers/{parts[2]}',
                    'name': container['name'], 'type': 'generic', 'status': 'ACTIVE',
                    'secret_refs': container['secret_refs'], 'consumers': [],
                    'created': '2026-01-01T00:00:00', 'updated': '2026-01-01T00:00:00',
                    'creator_id': 'user'})
                return
            if len(parts) in (3, 4) and parts[:2] == ['v1', 'secrets']:
                secret = barbican.secrets.get(parts[2])
                if secret is None:
                    self._error(404, 'Not Found', 'Secret not found.')
                    return
                if len(parts) == 4 and parts[3] == 'payload':
                    self._send(200, secret['payload'], secret['content_type'])
                    return
                if len(parts) == 3:
                    self._json(200, {
                        'secret_ref': f'{base}/v1/secrets/{parts[2]}', 'name': secret['name'],
                        'status': 'ACTIVE', 'secret_type': 'opaque', 'algorithm': None,
                        'bit_length': None, 'mode': None, 'expiration': None,
                        'content_types': {'default': secret['content_type']},
                        'created': '2026-01-01T00:00:00', 'updated': '2026-01-01T00:00:00',
                        'creator_id': 'user'})
                    return
            self._error(404, 'Not Found', f'No resource at {path}.')

    return Handler
