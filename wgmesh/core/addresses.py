"""The lowest free address of each mesh network (for `wgmesh node add` without --address). Pure."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from wgmesh.core.model import IPAddress, IPNetwork, Mesh


class NetworkFull(ValueError):
    """A mesh network has no free host address left; the message names it and the fix."""


def _host_range(net: IPNetwork) -> tuple[int, int]:
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.num_addresses > 2:
        first += 1
        if net.version == 4:
            last -= 1
    return first, last


def lowest_free(net: IPNetwork, used: Iterable[IPAddress]) -> IPAddress | None:
    """The lowest host address of `net` not in `used` (skips the network address, and IPv4 broadcast)."""
    taken = {int(a) for a in used if a.version == net.version and a in net}
    first, last = _host_range(net)
    candidate = first
    while candidate <= last:
        if candidate not in taken:
            return ipaddress.ip_address(candidate) if net.version == 4 else ipaddress.IPv6Address(candidate)
        candidate += 1
    return None


def free_addresses(mesh: Mesh) -> tuple[IPAddress, ...]:
    """One free address in each mesh network, lowest first. NetworkFull (a ValueError) when one is full."""
    used = [a for n in mesh.nodes for a in n.addresses]
    out: list[IPAddress] = []
    for net in mesh.networks:
        addr = lowest_free(net, used)
        if addr is None:
            raise NetworkFull(f"no free address left in {net}: pass --address or widen mesh.network")
        out.append(addr)
    return tuple(out)
