"""remote/read_parsers.py: the values of a peer line are checked and parsed once per distinct value, shared by
every node that reports them; the results and the errors are those of a parse without memos."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from wgmesh.remote import read_parsers
from wgmesh.remote.read_parsers import ParseError, parse_dump

P1 = "aj6Hv5ZOCpNOowMFVU7K9L53JCmRmhi5P9FMXuUkmiY="
P2 = "B/9Ach88bIF3MgaBbLZ/U9T1FrJ+dq7N2jAFwDLBZh8="
P3 = "5LPci42qbheKBQbqAqaK2+YCPoprzF4FR+1SZLTllhQ="
HEAD = f"(hidden)\t{P1}\t51820\toff\n"


def peer(endpoint: str = "192.0.2.10:51820", allowed: str = "10.0.0.2/32,fd00::2/128", handshake: str = "0") -> str:
    return f"{P2}\t(none)\t{endpoint}\t{allowed}\t{handshake}\t10\t20\toff\n"


def test_two_nodes_reporting_a_peer_share_its_parsed_prefixes() -> None:
    _, a = parse_dump(HEAD + peer(handshake="1700000000"))
    _, b = parse_dump(HEAD + peer(handshake="1700000099"))
    assert a[P2].allowed_ips == frozenset({ip_network("10.0.0.2/32"), ip_network("fd00::2/128")})
    assert a[P2].allowed_ips is b[P2].allowed_ips  # one immutable set for both
    assert (a[P2].latest_handshake, b[P2].latest_handshake) == (1700000000, 1700000099)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (peer(allowed="10.0.0.300/32"), "allowed-ips '10.0.0.300/32' is not a list of prefixes"),
        (peer(endpoint="192.0.2.10"), "endpoint '192.0.2.10' is not address:port"),
        (peer(endpoint="[192.0.2.10]:51820"), "endpoint"),
        (peer(endpoint="192.0.2.10:65536"), "endpoint"),
    ],
)
def test_a_bad_value_fails_every_time_with_its_own_line(line: str, message: str) -> None:
    other = peer().replace(P2, P3)
    for text, line_no in ((HEAD + line, 2), (HEAD + other + line, 3), (HEAD + line, 2)):  # the memo knows it by now
        with pytest.raises(ParseError, match=f"wg dump line {line_no}: {message}"):
            parse_dump(text)


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("+7", 7), (" 8", 8), ("0012", 12)])
def test_counters_parse_as_int_does(value: str, expected: int) -> None:
    _, peers = parse_dump(HEAD + peer(handshake=value))
    assert peers[P2].latest_handshake == expected


@pytest.mark.parametrize("value", ["-1", "", "1.5", "x"])
def test_bad_counters_are_refused(value: str) -> None:
    with pytest.raises(ParseError, match="latest handshake"):
        parse_dump(HEAD + peer(handshake=value))


def test_the_memos_never_see_the_interface_private_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "cGhvbnkgcHJpdmF0ZSBrZXkgZm9yIHRoZSB0ZXN0cyE="
    seen: list[str] = []
    for name in ("_is_public_key", "_is_endpoint", "_prefixes"):
        memo = getattr(read_parsers, name)
        monkeypatch.setattr(read_parsers, name, lambda value, memo=memo: seen.append(value) or memo(value))
    parse_dump(f"{secret}\t{P1}\t51820\toff\n" + peer().replace("(none)", "(hidden)", 1))
    assert seen and secret not in seen and "(hidden)" not in seen


@pytest.mark.parametrize("value", ["9" * 5000, str(1 << 64), "1" + "0" * 400, "+" + "9" * 25])
def test_counters_beyond_64_bits_are_refused_not_a_crash(value: str) -> None:
    """Review E: a node's 5,000-digit handshake stopped every command (int() refuses over 4,300 digits); a
    400-digit byte counter crashed status (float() of it). wg's numbers are 64-bit."""
    with pytest.raises(ParseError, match="latest handshake is too large for a 64-bit number"):
        parse_dump(HEAD + peer(handshake=value))


def test_the_largest_64_bit_counter_is_read() -> None:
    _, peers = parse_dump(HEAD + peer(handshake=str((1 << 64) - 1)))
    assert peers[P2].latest_handshake == (1 << 64) - 1


def test_a_huge_fwmark_is_refused() -> None:
    with pytest.raises(ParseError, match=r"fwmark .* is not a number"):
        parse_dump(f"(hidden)\t{P1}\t51820\t0x{'f' * 5000}\n")
