"""The SSRF guard: connections pinned to the checked address, redirects re-checked, IPv6 forms
that embed an IPv4 address refused, the allow-list by host:port, refusals that name no address.

Real loopback HTTP(S) servers; a resolver that answers differently on each lookup stands in
for a DNS server that rebinds (issue 12, "SSRF").
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl

import httpx
import pytest

from providers import http as guard
from providers.http import (
    TooManyRedirects,
    UnsafeURL,
    check_public_url,
    is_public_address,
    open_public_stream,
    parse_allowed_private_hosts,
    resolve_checked,
)
from providers.images import ImageUnavailable, fetch_image


class ChangingResolver:
    """Answers lookup N with ``answers[N]`` (the last answer repeats); records every lookup."""

    def __init__(self, *answers: list[str]):
        self.answers = answers
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        return list(self.answers[min(len(self.lookups), len(self.answers)) - 1])


# --- pinning ------------------------------------------------------------------------------
def test_the_connection_goes_to_the_checked_address_with_the_original_host(servers):
    """An allowed host resolves to the server first, then elsewhere: the one lookup is what is connected to."""
    server = servers({"/frame.png": (200, {"Content-Type": "image/png"}, b"pixels")})
    resolver = ChangingResolver(["127.0.0.1"], ["127.0.0.2"])  # nothing listens on 127.0.0.2
    allowed = [f"rebind.test:{server.port}"]
    with open_public_stream(f"http://rebind.test:{server.port}/frame.png", allowed_private_hosts=allowed,
                            resolver=resolver, timeout=5) as response:
        assert response.status_code == 200 and response.read() == b"pixels"
    assert resolver.lookups == [("rebind.test", server.port)]
    assert server.seen == [("/frame.png", f"rebind.test:{server.port}")]


def test_a_rebinding_answer_after_the_check_never_reaches_loopback(servers):
    """Public on the first lookup, loopback on every later one: the old check-then-connect
    connected to loopback; now the connection is pinned to the public answer."""
    server = servers({"/secret": (200, {}, b"internal")})
    resolver = ChangingResolver(["8.8.8.8"], ["127.0.0.1"])
    url = f"http://rebind.test:{server.port}/secret"
    with pytest.raises(httpx.TransportError):  # 8.8.8.8 on this port: no answer within the connect timeout
        with open_public_stream(url, resolver=resolver, timeout=httpx.Timeout(5, connect=0.5)):
            pass
    assert resolver.lookups == [("rebind.test", server.port)]
    assert server.seen == []


def test_a_check_made_earlier_does_not_vouch_for_the_connection(servers):
    """check_public_url saw a public answer; the fetch looks up again, sees loopback, refuses."""
    server = servers({"/secret": (200, {}, b"internal")})
    resolver = ChangingResolver(["8.8.8.8"], ["127.0.0.1"])
    url = f"http://rebind.test:{server.port}/secret"
    assert check_public_url(url, resolver=resolver) == ["8.8.8.8"]
    with pytest.raises(UnsafeURL) as refused:
        with open_public_stream(url, resolver=resolver, timeout=5):
            pass
    assert str(refused.value) == "the host 'rebind.test' resolves to a non-public address"
    assert server.seen == []


def test_tls_goes_to_the_pinned_address_with_the_original_server_name(servers, tmp_path):
    """Over TLS the ClientHello names the URL's host (SNI) and the certificate is checked for it,
    although the socket goes to the pinned address."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("other.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    names: list[str | None] = []
    context.sni_callback = lambda sock, server_name, ctx: names.append(server_name)
    server = servers({"/x": (200, {}, b"x")}, tls_context=context)
    resolver = ChangingResolver(["127.0.0.1"])
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        with open_public_stream(f"https://cdn.test:{server.port}/x", allowed_private_hosts=[f"cdn.test:{server.port}"],
                                resolver=resolver, timeout=5):
            pass
    assert names == ["cdn.test"]
    assert resolver.lookups == [("cdn.test", server.port)]


# --- redirects ----------------------------------------------------------------------------
def test_redirects_are_followed_by_hand_each_hop_checked(servers):
    inner = servers({"/secret": (200, {}, b"internal")})
    outer = servers({
        "/start": (302, {"Location": "/middle"}, b""),
        "/middle": (307, {"Location": "/frame.png"}, b""),
        "/frame.png": (200, {}, b"pixels"),
        "/to-inner": (302, {"Location": f"http://127.0.0.1:{inner.port}/secret"}, b""),
        "/to-rebinder": (301, {"Location": f"http://rebind.test:{inner.port}/secret"}, b""),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
    })
    allowed = [f"127.0.0.1:{outer.port}"]  # the outer server's port only
    with open_public_stream(f"http://127.0.0.1:{outer.port}/start", allowed_private_hosts=allowed, timeout=5) as response:
        assert response.read() == b"pixels"
    assert [path for path, _host in outer.seen] == ["/start", "/middle", "/frame.png"]

    with pytest.raises(UnsafeURL, match="'127.0.0.1' resolves to a non-public address"):
        with open_public_stream(f"http://127.0.0.1:{outer.port}/to-inner", allowed_private_hosts=allowed, timeout=5):
            pass
    # The redirect's host is looked up when its hop connects, with the same resolver:
    resolver = ChangingResolver(["127.0.0.1"], ["127.0.0.1"])
    with pytest.raises(UnsafeURL, match="^the host 'rebind.test' resolves to a non-public address$"):
        with open_public_stream(f"http://127.0.0.1:{outer.port}/to-rebinder", allowed_private_hosts=allowed,
                                resolver=resolver, timeout=5):
            pass
    assert resolver.lookups == [("127.0.0.1", outer.port), ("rebind.test", inner.port)]
    assert inner.seen == []

    with pytest.raises(UnsafeURL, match="only http and https URLs are fetched, not 'file'"):
        with open_public_stream(f"http://127.0.0.1:{outer.port}/to-file", allowed_private_hosts=allowed, timeout=5):
            pass
    with pytest.raises(TooManyRedirects, match="more than 3 redirects"):
        with open_public_stream(f"http://127.0.0.1:{outer.port}/loop", allowed_private_hosts=allowed,
                                max_redirects=3, timeout=5):
            pass
    assert [path for path, _host in outer.seen].count("/loop") == 4


def test_fetch_image_refuses_a_redirect_to_an_unlisted_port_without_naming_the_address(servers, monkeypatch):
    """The image fetch uses the same guard; the module-level resolver hook stands in for DNS."""
    inner = servers({"/secret.png": (200, {}, b"internal")})
    outer = servers({"/frame.png": (302, {"Location": f"http://images.test:{inner.port}/secret.png"}, b"")})
    resolver = ChangingResolver(["127.0.0.1"])
    monkeypatch.setattr(guard, "RESOLVER", resolver)
    with pytest.raises(ImageUnavailable) as refused:
        fetch_image(f"http://images.test:{outer.port}/frame.png", allowed_private_hosts={f"images.test:{outer.port}"})
    assert str(refused.value) == "the image URL is refused: the host 'images.test' resolves to a non-public address"
    assert "127.0.0.1" not in str(refused.value)
    assert [path for path, _ in outer.seen] == ["/frame.png"] and inner.seen == []


# --- addresses ----------------------------------------------------------------------------
EMBEDDING_LOOPBACK_OR_PRIVATE = [
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:0:127.0.0.1",  # IPv4-translated
    "64:ff9b::7f00:1",  # NAT64 well-known prefix → 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 → 169.254.169.254 (cloud metadata)
    "64:ff9b:1::a00:1",  # NAT64 local-use prefix → 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (obfuscated)
    "2600::5efe:7f00:1",  # ISATAP identifier embedding 127.0.0.1
    "2600::200:5efe:a00:1",  # ISATAP (universal bit) embedding 10.0.0.1
]
# Transition forms are refused even around a public IPv4: what they reach depends on a translator.
TRANSITION_AROUND_PUBLIC = ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7"]
OTHER_NON_PUBLIC = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
    "fec0::1", "ff02::1", "2001:db8::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "2600::5efe:808:808"]


@pytest.mark.parametrize("address", EMBEDDING_LOOPBACK_OR_PRIVATE + TRANSITION_AROUND_PUBLIC + OTHER_NON_PUBLIC)
def test_non_public_and_ipv4_embedding_addresses_are_refused_without_naming_them(address):
    assert not is_public_address(ipaddress.ip_address(address))
    with pytest.raises(UnsafeURL) as refused:
        resolve_checked("cdn.example", 443, resolver=ChangingResolver([address]))
    assert str(refused.value) == "the host 'cdn.example' resolves to a non-public address"


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert resolve_checked("cdn.example", 443, resolver=ChangingResolver([address])) == [address]


def test_one_private_answer_among_public_ones_refuses_the_host():
    with pytest.raises(UnsafeURL, match="non-public address"):
        resolve_checked("cdn.example", 443, resolver=ChangingResolver(["8.8.8.8", "64:ff9b::7f00:1"]))


def test_a_host_that_does_not_resolve_is_refused():
    def nxdomain(host, port):
        raise OSError("no such host")

    with pytest.raises(UnsafeURL, match="^the host 'nowhere.example' does not resolve$"):
        check_public_url("https://nowhere.example/x.png", resolver=nxdomain)


# --- the allow-list -------------------------------------------------------------------------
def test_the_allow_list_takes_host_port_pairs():
    assert parse_allowed_private_hosts(["127.0.0.1:8801", "LocalHost:8802", "[::1]:8803", "sandbox.internal:*", " "]) == {
        ("127.0.0.1", 8801), ("localhost", 8802), ("::1", 8803), ("sandbox.internal", None)}
    for bad in ["127.0.0.1", "localhost", "::1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", ":8801"]:
        with pytest.raises(ValueError):
            parse_allowed_private_hosts([bad])
    loopback = ChangingResolver(["127.0.0.1"])
    allowed = parse_allowed_private_hosts(["localhost:8801"])
    assert resolve_checked("localhost", 8801, allowed=allowed, resolver=loopback) == ["127.0.0.1"]
    with pytest.raises(UnsafeURL, match="non-public"):
        resolve_checked("localhost", 8802, allowed=allowed, resolver=loopback)


def test_an_allowed_host_on_another_port_cannot_be_probed(servers):
    """With the sandbox's port allowed, an image URL cannot reach any other local port."""
    other = servers({"/": (200, {}, b"admin console")})
    with pytest.raises(ImageUnavailable) as refused:
        fetch_image(f"http://localhost:{other.port}/", allowed_private_hosts={"localhost:8801"})
    assert "non-public address" in str(refused.value) and "127.0.0.1" not in str(refused.value)
    assert other.seen == []
