"""The fleet inventory: which Hyper-V hosts one management node runs nova-compute for.

A YAML file (see the README, "A fleet of hosts from one management node")::

    fleet:                        # optional; where the generated files go
      common_config: /etc/nova/nova.conf
    defaults:                     # optional; any host key
      auth: negotiate
      username: EXAMPLE\\nova-hyperv
      instances_path: C:\\OpenStack\\Instances
      share: OpenStackInstances
    hosts:
      - name: hv01
        address: hv01.example.org
        credentials: /etc/nova/fleet/credentials/hv01.conf

The inventory never holds a secret: ``credentials`` is the path of a root-only
oslo.config fragment (``[powershell] psrp_password = ...``) that systemd hands
to the host's service.  An inventory with a password (or any key that looks
like one) is refused.  Every error names the file and the line.
"""

from __future__ import annotations

import dataclasses
import ntpath
import re
from pathlib import Path
from typing import Any

import yaml

#: ``[powershell] psrp_auth`` choices (psdriver.conf).
AUTH_METHODS = ('negotiate', 'ntlm', 'kerberos', 'credssp', 'certificate', 'basic')
#: Methods that need a password (so a credentials file).
PASSWORD_AUTH = ('negotiate', 'ntlm', 'credssp', 'basic')
ENCRYPTION = ('auto', 'always', 'never')
TRANSPORTS = ('psrp', 'sim')
#: A host name usable as a nova service host, a systemd instance name and a file name.
NAME_RE = re.compile(r'^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$')
#: Keys that would hold a secret: refused wherever they appear.
SECRET_RE = re.compile(r'pass(word|wd|phrase)?$|secret|token|(^|_)key$', re.IGNORECASE)

FLEET_DEFAULTS: dict[str, str] = {
    'common_config': '/etc/nova/nova.conf',
    'config_dir': '/etc/nova/fleet',
    'unit_dir': '/etc/systemd/system',
    'state_dir': '/var/lib/nova/fleet',
    'nova_compute': '/usr/bin/nova-compute',
    'user': 'nova',
    'group': 'nova',
}

#: Host keys: name -> (type, default).  None as default: required or optional (see below).
HOST_KEYS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    'name': (str, None),
    'address': (str, None),
    'port': (int, None),
    'ssl': (bool, True),
    'cert_validation': ((str, bool), True),
    'auth': (str, 'negotiate'),
    'username': (str, None),
    'credentials': (str, None),
    'certificate_pem': (str, None),
    'certificate_key_pem': (str, None),
    'message_encryption': (str, 'auto'),
    'instances_path': (str, 'C:\\OpenStack\\Instances'),
    'share': (str, None),
    'cluster': (str, None),
    'transport': (str, 'psrp'),
    'sim_state_file': (str, None),
}


class InventoryError(ValueError):
    """A mistake in the inventory; the message names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f'{path}:{line}' if line else path
        super().__init__(f'{where}: {message}')


@dataclasses.dataclass(frozen=True)
class Host:
    """One Hyper-V host and the nova-compute service that manages it."""

    name: str
    address: str
    port: int
    ssl: bool
    cert_validation: str | bool
    auth: str
    username: str | None
    credentials: str | None
    certificate_pem: str | None
    certificate_key_pem: str | None
    message_encryption: str
    instances_path: str
    share: str | None
    cluster: str | None
    transport: str
    sim_state_file: str | None
    #: Line of the host's entry in the inventory (for messages).
    line: int = dataclasses.field(default=0, compare=False)


@dataclasses.dataclass(frozen=True)
class Fleet:
    """A validated inventory."""

    path: str
    hosts: tuple[Host, ...]
    common_config: str
    config_dir: str
    unit_dir: str
    state_dir: str
    nova_compute: str
    user: str
    group: str

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def state_path(self, host: Host) -> str:
        """The host's nova ``state_path``: where nova keeps its node identity (compute_id)."""
        return f'{self.state_dir}/{host.name}'


# -- YAML with line numbers -------------------------------------------------------------------

class _Node:
    """A composed YAML node and its Python value, with its (1-based) line."""

    def __init__(self, node: yaml.Node, loader: yaml.SafeLoader) -> None:
        self.node, self.line, self._loader = node, node.start_mark.line + 1, loader

    def mapping(self, path: str, what: str) -> dict[str, tuple[_Node, _Node]]:
        if not isinstance(self.node, yaml.MappingNode):
            raise InventoryError(path, self.line, f'{what} must be a mapping (key: value)')
        items: dict[str, tuple[_Node, _Node]] = {}
        for key_node, value_node in self.node.value:
            key = _Node(key_node, self._loader)
            name = key.scalar()
            if not isinstance(name, str):
                raise InventoryError(path, key.line, f'{what}: key {name!r} is not text')
            if name in items:
                raise InventoryError(path, key.line, f'{what}: {name!r} given twice (first on '
                                     f'line {items[name][0].line})')
            items[name] = (key, _Node(value_node, self._loader))
        return items

    def sequence(self, path: str, what: str) -> list[_Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise InventoryError(path, self.line, f'{what} must be a list')
        return [_Node(n, self._loader) for n in self.node.value]

    def scalar(self) -> Any:
        if not isinstance(self.node, yaml.ScalarNode):
            return self.node   # the caller reports the wrong type
        return self._loader.construct_object(self.node)


def _compose(path: str) -> _Node | None:
    try:
        text = Path(path).read_text(encoding='utf-8')
    except OSError as exc:
        raise InventoryError(path, None, f'cannot read the inventory: {exc.strerror}') from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InventoryError(path, mark.line + 1 if mark else None,
                             f'not valid YAML: {exc.problem or exc.context}') from None
    except yaml.YAMLError as exc:
        raise InventoryError(path, None, f'not valid YAML: {exc}') from None
    finally:
        loader.dispose()
    return _Node(node, loader) if node is not None else None


# -- validation -------------------------------------------------------------------------------

def _refuse_secret(path: str, key: _Node, name: str, what: str) -> None:
    if SECRET_RE.search(name) and name not in ('certificate_key_pem',):
        raise InventoryError(
            path, key.line,
            f'{what}: {name!r} looks like a secret; the inventory must not hold one. Put the '
            'password in the host\'s credentials file ([powershell] psrp_password, mode 0600) '
            'and give its path as "credentials"')


def _typed(path: str, key: _Node, value: _Node, name: str, what: str) -> Any:
    expected, _ = HOST_KEYS[name]
    data = value.scalar()
    if isinstance(data, yaml.Node):
        raise InventoryError(path, value.line, f'{what}: {name} must be a single value')
    types = expected if isinstance(expected, tuple) else (expected,)
    if int in types and isinstance(data, bool):
        types = ()   # YAML true/false is not a port number
    if not isinstance(data, types) or data is None:
        shown = 'empty' if data is None else f'{type(data).__name__} {data!r}'
        want = ' or '.join({str: 'text', int: 'a number', bool: 'true/false'}[t]
                           for t in (expected if isinstance(expected, tuple) else (expected,)))
        raise InventoryError(path, value.line, f'{what}: {name} must be {want}, not {shown}')
    return data


def _windows_path(text: str) -> bool:
    """An absolute Windows path: ``C:\\...`` or ``\\\\server\\share\\...``."""
    drive, rest = ntpath.splitdrive(text)
    return bool(drive) and (drive.startswith('\\\\') or rest.startswith(('\\', '/')))


def _check_host(path: str, line: int, values: dict[str, Any], lines: dict[str, int],
                what: str) -> None:
    def fail(key: str, message: str) -> None:
        raise InventoryError(path, lines.get(key, line), f'{what}: {message}')

    if not NAME_RE.match(values['name']):
        fail('name', f'name {values["name"]!r} must be letters, digits, "." and "-" (it '
             'becomes nova\'s service host, a systemd instance and a file name)')
    if values['transport'] not in TRANSPORTS:
        fail('transport', f'transport must be one of {", ".join(TRANSPORTS)}')
    if values['auth'] not in AUTH_METHODS:
        fail('auth', f'auth {values["auth"]!r} is not one of {", ".join(AUTH_METHODS)}')
    if values['message_encryption'] not in ENCRYPTION:
        fail('message_encryption', f'message_encryption must be one of {", ".join(ENCRYPTION)}')
    port = values['port']
    if port is not None and not 0 < port < 65536:
        fail('port', f'port {port} is not between 1 and 65535')
    if not _windows_path(values['instances_path']):
        fail('instances_path', f'instances_path {values["instances_path"]!r} is not an '
             'absolute Windows path (C:\\... or \\\\server\\share\\...)')
    share = values['share']
    if share is not None and not re.match(r'^[^\\/:*?"<>|]{1,80}$', share):
        fail('share', f'share {share!r} must be an SMB share name (no \\ / : * ? " < > |)')
    if values['transport'] == 'sim':
        if not values['sim_state_file']:
            fail('transport', 'transport sim needs sim_state_file (the simulated host\'s '
                 'state file)')
        return
    if not values['address']:
        fail('name', 'address is required (the host name or IP address WinRM listens on)')
    for key in ('credentials', 'certificate_pem', 'certificate_key_pem', 'sim_state_file'):
        if values[key] is not None and not values[key].startswith('/'):
            fail(key, f'{key} must be an absolute path, not {values[key]!r}')
    auth = values['auth']
    if auth in PASSWORD_AUTH:
        if not values['username']:
            fail('auth', f'auth {auth} needs username')
        if not values['credentials']:
            fail('auth', f'auth {auth} needs credentials: the path of a root-only file '
                 'holding [powershell] psrp_password')
    if auth == 'certificate' and not (values['certificate_pem'] and
                                      values['certificate_key_pem']):
        fail('auth', 'auth certificate needs certificate_pem and certificate_key_pem')
    if auth in ('basic', 'certificate') and not values['ssl']:
        fail('ssl', f'auth {auth} is only allowed over HTTPS (ssl: true)')


def _host(path: str, entry: _Node, defaults: dict[str, tuple[_Node, Any]], index: int
          ) -> Host:
    items = entry.mapping(path, f'hosts[{index}]')
    name_value = items.get('name', (None, None))[1]
    label = (f'host {name_value.scalar()!r}' if name_value is not None
             and isinstance(name_value.scalar(), str) else f'hosts[{index}]')
    values: dict[str, Any] = {k: default for k, (_, default) in HOST_KEYS.items()}
    lines: dict[str, int] = {}
    for key, (key_node, value) in defaults.items():
        values[key] = value
        lines[key] = key_node.line
    for key, (key_node, value_node) in items.items():
        _refuse_secret(path, key_node, key, label)
        if key not in HOST_KEYS:
            raise InventoryError(path, key_node.line, f'{label}: unknown key {key!r} (known: '
                                 f'{", ".join(HOST_KEYS)})')
        values[key] = _typed(path, key_node, value_node, key, label)
        lines[key] = value_node.line
    if not values['name']:
        raise InventoryError(path, entry.line, f'{label}: name is required')
    if values['port'] is None:
        values['port'] = 5986 if values['ssl'] else 5985
    _check_host(path, entry.line, values, lines, label)
    if values['transport'] == 'sim':
        values['address'] = values['address'] or values['name']
    return Host(line=entry.line, **values)


def load(path: str | Path) -> Fleet:
    """Read and validate the inventory at ``path``; raise :class:`InventoryError`."""
    path = str(path)
    root = _compose(path)
    if root is None:
        raise InventoryError(path, None, 'the inventory is empty; it needs a hosts: list')
    top = root.mapping(path, 'the inventory')
    for name, (key, _) in top.items():
        if name not in ('fleet', 'defaults', 'hosts'):
            raise InventoryError(path, key.line, f'unknown top-level key {name!r} (known: '
                                 'fleet, defaults, hosts)')
    settings = dict(FLEET_DEFAULTS)
    if 'fleet' in top:
        for name, (key, value) in top['fleet'][1].mapping(path, 'fleet').items():
            _refuse_secret(path, key, name, 'fleet')
            if name not in FLEET_DEFAULTS:
                raise InventoryError(path, key.line, f'fleet: unknown key {name!r} (known: '
                                     f'{", ".join(FLEET_DEFAULTS)})')
            data = value.scalar()
            if not isinstance(data, str) or not data:
                raise InventoryError(path, value.line, f'fleet: {name} must be text')
            if name not in ('user', 'group') and not data.startswith('/'):
                raise InventoryError(path, value.line, f'fleet: {name} must be an absolute '
                                     f'path, not {data!r}')
            settings[name] = data.rstrip('/') or '/'
    defaults: dict[str, tuple[_Node, Any]] = {}
    if 'defaults' in top:
        for name, (key, value) in top['defaults'][1].mapping(path, 'defaults').items():
            _refuse_secret(path, key, name, 'defaults')
            if name not in HOST_KEYS or name in ('name', 'address', 'sim_state_file'):
                raise InventoryError(path, key.line, f'defaults: {name!r} cannot have a '
                                     'default' if name in HOST_KEYS else
                                     f'defaults: unknown key {name!r}')
            defaults[name] = (key, _typed(path, key, value, name, 'defaults'))
    if 'hosts' not in top:
        raise InventoryError(path, root.line, 'the inventory needs a hosts: list')
    hosts: list[Host] = []
    seen: dict[str, Host] = {}
    endpoints: dict[tuple[str, int], Host] = {}
    for index, entry in enumerate(top['hosts'][1].sequence(path, 'hosts')):
        host = _host(path, entry, defaults, index)
        other = seen.get(host.name.lower())
        if other:
            raise InventoryError(path, host.line, f'host {host.name!r} is listed twice (first '
                                 f'on line {other.line}); names are compared ignoring case')
        seen[host.name.lower()] = host
        if host.transport == 'psrp':
            endpoint = (host.address.lower(), host.port)
            if endpoint in endpoints:
                raise InventoryError(
                    path, host.line, f'host {host.name!r} has the same address and port as '
                    f'{endpoints[endpoint].name!r} (line {endpoints[endpoint].line}): one '
                    'Hyper-V host must have exactly one nova-compute service')
            endpoints[endpoint] = host
        hosts.append(host)
    if not hosts:
        raise InventoryError(path, top['hosts'][1].line, 'hosts: the list is empty')
    return Fleet(path=path, hosts=tuple(hosts), **settings)
