"""SSRF defence: address classification, resolution and pinning."""

from __future__ import annotations

import ipaddress

import pytest

from genq import netsafe


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "127.1",
        "::1",
        "::ffff:127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "169.254.169.254",
        "10.1.2.3",
        "100.64.0.1",
        "fd00::1",
        "0.0.0.0",
    ],
)
def test_private_forms_are_not_public(host: str) -> None:
    ip = netsafe.literal_ip(host)
    assert ip is not None
    assert not netsafe.is_public(ip)


def test_public_addresses_pass_and_embedded_forms_unwrap() -> None:
    assert netsafe.is_public(ipaddress.ip_address("93.184.216.34"))
    assert netsafe.is_public(ipaddress.ip_address("2606:4700::1111"))
    assert netsafe.is_public(ipaddress.ip_address("64:ff9b::5db8:d822"))  # NAT64 of a public v4
    assert not netsafe.is_public(ipaddress.ip_address("64:ff9b::a00:1"))  # NAT64 of 10.0.0.1


async def test_resolve_checks_every_address_and_pins() -> None:
    with pytest.raises(netsafe.UnsafeURL):
        await netsafe.resolve("http://localhost:8080/x", allow_private=False)
    target = await netsafe.resolve("http://localhost:8080/x?q=1", allow_private=True)
    url, headers, ext = netsafe.pinned(target)
    assert url.startswith(("http://127.0.0.1:8080/x?q=1", "http://[::1]:8080/x?q=1"))
    assert headers == {"Host": "localhost:8080"} and ext == {}
    https = await netsafe.resolve("https://[::1]/hook", allow_private=True)
    url, headers, ext = netsafe.pinned(https)
    assert url == "https://[::1]:443/hook" and ext == {"sni_hostname": "::1"}


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "http://a@example.com/", "http:///x", "http://example.com:99999/"]
)
def test_malformed_or_disallowed_urls(url: str) -> None:
    with pytest.raises(netsafe.UnsafeURL):
        netsafe.check_plainly(url, allow_private=False)
