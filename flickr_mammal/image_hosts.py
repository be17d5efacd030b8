"""Where image URLs may point: Flickr's image hosts, plus the hosts a build names.

One allow-list serves three checks (docs/safety.md): a metadata-dump row's URL when its record
enters the catalog (:mod:`flickr_mammal.dump.rows`), every URL the download stage is about to
fetch, and every redirect it is about to follow (:mod:`flickr_mammal.fetch`). A URL must be
``http`` or ``https``; ``user:password@`` credentials are stripped where records enter and
refused at fetch time, so they never reach the catalog, the manifest or a shard's JSON.

A host pattern is ``host`` (the scheme's default port), ``host:port``, or ``*.domain`` (any
subdomain, default ports).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

# Flickr's hosts for photos (static CDN hosts; www.flickr.com for its redirects).
FLICKR_HOSTS: tuple[str, ...] = ("flickr.com", "*.flickr.com", "*.staticflickr.com")
URL_REFUSED = "url_refused"  # the failure reason of a URL outside the allow-list
DEFAULT_PORTS = {"http": 80, "https": 443}


def check_patterns(hosts: Iterable[object], where: str) -> tuple[str, ...]:
    """``hosts`` as a tuple of host patterns; raises ValueError naming ``where`` otherwise."""
    out = tuple(hosts)
    for host in out:
        if not isinstance(host, str) or not host or any(c in host for c in "/@ ?#"):
            raise ValueError(f"{where}: {host!r} is not a host name; write 'cdn.example.org', "
                             "'cdn.example.org:8443' or '*.example.org'")
    return out


def host_port(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, lower-cased; port None when it is not a number
    (and ``("", "", None)`` for text that is no URL at all, such as ``http://[::1``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", "", None
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        port = None
    return scheme, (parts.hostname or "").lower().rstrip("."), port


def _matches(host: str, port: int, scheme: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        name, _, want_port = pattern.lower().partition(":")
        if want_port and str(port) != want_port:
            continue
        if not want_port and port != DEFAULT_PORTS[scheme]:
            continue
        if host == name or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


def has_credentials(url: str) -> bool:
    if "@" not in url:  # no netloc can hold one (and no parse: every record's URL is checked)
        return False
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


def host_allowed(url: str, extra_hosts: Iterable[str] = ()) -> bool:
    """Is ``url`` an http(s) URL, without credentials, on Flickr's hosts or ``extra_hosts``?"""
    scheme, host, port = host_port(url)
    if scheme not in DEFAULT_PORTS or not host or port is None or has_credentials(url):
        return False
    return _matches(host, port, scheme, (*FLICKR_HOSTS, *extra_hosts))


def url_allowed(url: str, extra_hosts: Iterable[str] = (), any_host: bool = False) -> bool:
    """The fetch rule: :func:`host_allowed`, or with ``any_host`` (``FetchConfig.any_image_host``)
    any http(s) URL without credentials."""
    if any_host:
        scheme, host, port = host_port(url)
        return scheme in DEFAULT_PORTS and bool(host) and port is not None \
            and not has_credentials(url)
    return host_allowed(url, extra_hosts)


def redirect_allowed(origin: str, target: str, extra_hosts: Iterable[str] = ()) -> bool:
    """May a fetch of ``origin`` follow a redirect to ``target``? To the same server (its port,
    or the scheme's default port), or to an allowed host (:func:`host_allowed`)."""
    scheme, host, port = host_port(target)
    if scheme not in DEFAULT_PORTS or not host or port is None or has_credentials(target):
        return False
    _, origin_host, origin_port = host_port(origin)
    if host == origin_host and (port == origin_port or port == DEFAULT_PORTS[scheme]):
        return True
    return _matches(host, port, scheme, (*FLICKR_HOSTS, *extra_hosts))


def strip_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (anything else unchanged)."""
    if "@" not in url:  # nothing to strip, and no parse (a dump scan strips every hit's URL)
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # no URL: host_allowed refuses it anyway
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def endpoint_host(url: str) -> str:
    """The ``host:port`` pattern of an endpoint URL: the images a custom API endpoint (a mirror,
    a test server) names on its own server are allowed like Flickr's."""
    scheme, host, port = host_port(url)
    return f"{host}:{port}" if host and port is not None else ""
