"""Whether a dataset's download hosts answer, asked in seconds before tfds tries.

Without internet, tfds retries every download with backoff for minutes (216 s and 59
warning lines for MNIST) before it gives up. One TCP connection per host, bounded by a
timeout that covers the DNS lookup too, tells the same thing up front. Only the hosts
are asked (or the proxy the environment names for them), nothing is downloaded.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
import urllib.request
from typing import Iterable

PROBE_TIMEOUT_S = 5.0  # a reachable host answers in well under a second
_DEFAULT_PORTS = {"https": 443, "http": 80}


def download_hosts(urls: Iterable[str]) -> list[tuple[str, int]]:
    """The distinct ``(host, port)`` that downloading ``urls`` connects to: the proxy the
    environment sets for a URL's scheme (``https_proxy``, ``http_proxy``, ``all_proxy``;
    ``no_proxy`` respected), else the URL's own host. URLs that are not http(s) are left
    out (tfds reads those through other clients)."""
    proxies, hosts = urllib.request.getproxies(), []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            continue
        proxy = proxies.get(parts.scheme) or proxies.get("all")
        if proxy and not urllib.request.proxy_bypass(parts.hostname):
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host = (parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80))
        if host not in hosts:
            hosts.append(host)
    return hosts


def unreachable(hosts: Iterable[tuple[str, int]], timeout: float = PROBE_TIMEOUT_S
                ) -> str | None:
    """None when a TCP connection to every one of ``hosts`` opens within ``timeout``
    seconds, else why the first that failed did (``host:port is not reachable (...)``).

    Each host is tried on a daemon thread: a DNS lookup has no timeout of its own, and
    one that hangs must neither hold this call past ``timeout`` nor the process at exit.
    """
    hosts = list(hosts)
    errors: dict[tuple[str, int], str | None] = {}

    def connect(host: tuple[str, int]) -> None:
        try:
            socket.create_connection(host, timeout=timeout).close()
            errors[host] = None
        except OSError as e:
            errors[host] = str(e) or type(e).__name__

    threads = [threading.Thread(target=connect, args=(h,), daemon=True) for h in hosts]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:  # in parallel: all of them within one timeout
        t.join(max(0.0, deadline - time.monotonic()))
    for host in hosts:
        reason = errors.get(host, f"no answer within {timeout:g} s")
        if reason is not None:
            return f"{host[0]}:{host[1]} is not reachable ({reason})"
    return None
