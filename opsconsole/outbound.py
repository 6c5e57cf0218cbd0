"""The outbound policy: which addresses the console may connect to for the people who
configure it.

An operator who can set a URL, a host or a database address can aim the
console inside the network. So every connection the console makes for them —
HTTP through `opsconsole.http`, TCP, PostgreSQL and Redis health checks —
resolves the host itself, checks every address it resolves to, and connects
to the address it checked (no second lookup an attacker's DNS could answer
differently).

- Never: link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
  fd00:ec2::254 …), unspecified and multicast addresses. No setting allows them.
- Loopback and private ranges (127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12,
  192.168.0.0/16, 100.64.0.0/10, ::1, fc00::/7): only the networks listed in
  OPSCONSOLE_OUTBOUND_ALLOW (CIDRs, comma-separated; empty by default). Health
  checks of internal services, self-hosted providers and failover targets
  need their networks listed there.
- Everything else (public addresses): allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache

import httpcore
import httpx
from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

NEVER = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # link-local, where cloud metadata services answer
        "fe80::/10",
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "255.255.255.255/32",
    )
)
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "198.18.0.0/15",
        "::1/128",
        "fc00::/7",
    )
)


NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class OutboundRefused(Exception):
    """The policy refuses this destination; the message says which address and why."""


@cache
def _allowed(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in spec if n.strip())


def refusal(address: Address) -> str | None:
    """Why the console may not connect to `address`, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address carried in IPv6 is judged as itself (mapped, 6to4, NAT64, compat).
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address in IPV4_COMPATIBLE and int(address) > 1:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            address = embedded
    if any(address in net for net in NEVER):
        return "a link-local or metadata address, never reachable"
    if any(address in net for net in PRIVATE) and not any(
        address in net
        for net in _allowed(tuple(settings.OPSCONSOLE_OUTBOUND_ALLOW))
        if net.version == address.version
    ):
        return "a private or loopback address not in OPSCONSOLE_OUTBOUND_ALLOW"
    return None


def resolve(host: str, port: int) -> list[tuple[int, Address]]:
    """Every address `host` resolves to, each checked; OutboundRefused if any is refused
    (a name that resolves to an internal address as well is not a public name)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundRefused(f"cannot resolve {host}: {exc}") from None
    found: list[tuple[int, Address]] = []
    for family, *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if why := refusal(address):
            raise OutboundRefused(f"{host} resolves to {address}: {why}")
        if (family, address) not in found:
            found.append((family, address))
    return found


def connect(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to `host` on a checked address (for checks that speak TCP)."""
    last: OSError | None = None
    for family, address in resolve(host, port):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((str(address), port))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"no address for {host}")


def checked_host(host: str, port: int) -> str:
    """The first checked address of `host`, for a client library that connects by itself
    (PostgreSQL, Redis): connect it to this address, keep `host` for TLS."""
    return str(resolve(host, port)[0][1])


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows, and to the very address it checked."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve(host, port)
        except OutboundRefused as exc:
            raise httpcore.ConnectError(str(exc)) from None
        error: Exception | None = None
        for _family, address in addresses:
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(self, *args, **kwargs):
        raise httpcore.ConnectError("unix sockets are not reachable from the console")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, whose connections go through the outbound policy (TLS still
    checks the certificate against the host name)."""

    def __init__(self, *, verify) -> None:
        super().__init__(verify=verify, trust_env=False)
        # The one change to httpx's default: its connection pool's network backend.
        self._pool = httpcore.ConnectionPool(ssl_context=verify, network_backend=_GuardedBackend())


def pinned_conninfo(dsn: str, **extra) -> dict:
    """Connection parameters for psycopg with `hostaddr` set to the checked address of the
    URL's host (the host name stays, for TLS). Unix sockets are refused: they are local."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = {**conninfo_to_dict(dsn), **extra}
    except psycopg.ProgrammingError:
        # libpq's message quotes the string, password included: say only that it is wrong.
        raise OutboundRefused("the connection URL cannot be parsed") from None
    host = str(params.get("host") or "")
    if not host or host.startswith("/") or "," in host:
        raise OutboundRefused("give one host name or address (not a socket path or a list)")
    params["hostaddr"] = checked_host(host, int(params.get("port") or 5432))
    return params


def checked_redis_url(url: str) -> str:
    """A redis:// URL whose host is the checked address (rediss:// keeps its name for TLS,
    after every address it resolves to was checked)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.hostname:
        raise OutboundRefused("the Redis URL names no host")
    address = checked_host(parts.hostname, parts.port or 6379)
    if parts.scheme == "rediss":
        return url
    shown = f"[{address}]" if ":" in address else address
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{userinfo}{shown}{port}", parts.path, parts.query, ""))
