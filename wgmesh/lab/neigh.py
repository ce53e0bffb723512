"""The kernel's neighbour (ARP) table and the labs on the machine (pure: system.py reads and writes /proc and
the record).

The kernel has one neighbour table for every network namespace, capped by
net.ipv4.neigh.default.gc_thresh3 (1024 by default): past it new entries are refused and pings fail with
`No buffer space available`. H lab hosts that all talk to each other need about H x H entries on the lab
bridges, and as many again for the mesh addresses and probes behind wg0 (a TUN device still gets an entry
per next hop); the machines and NAT routers add a few per host. So `up` makes sure of NEED(H) = 2 x (H + 1)^2
entries for the hosts of all labs up (gc_thresh1 a quarter of it, gc_thresh2 half, gc_thresh3 all), only
ever raising, and records the machine's values first; the last `down` puts them back.

IPv4 only: the lab's hosts talk to each other over IPv4 (bridge, mesh and subnets); IPv6 is only what a mesh
puts on wg0 (a dual-stack test), a handful of entries, far from net.ipv6.neigh.default.gc_thresh3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

KEYS = tuple(f"net.ipv4.neigh.default.gc_thresh{i}" for i in (1, 2, 3))
RECORD_NAME = "neigh.json"  # under RUN_ROOT, next to the labs' runtime folders


@dataclass(frozen=True)
class Record:
    """The machine's values before the first raise, and the values the labs set since (what `down` expects
    to find before it puts an original back: a value someone else changed meanwhile stays)."""

    original: dict[str, int]
    set: dict[str, int] = field(default_factory=dict)


def need(hosts: int) -> int:
    """Neighbour entries for `hosts` lab hosts on the machine: 2 x (H + 1)^2 (generous)."""
    return 2 * (hosts + 1) ** 2


def needed(hosts: int) -> dict[str, int]:
    """The thresholds `hosts` lab hosts need: gc_thresh1/2/3 = a quarter, a half, all of need(hosts)."""
    n = need(hosts)
    return dict(zip(KEYS, (n // 4, n // 2, n), strict=True))


def to_raise(current: Mapping[str, int], hosts: int) -> dict[str, int]:
    """The thresholds to write for `hosts` hosts ({} when the machine's are big enough), only ever higher.

    Too small means gc_thresh2 or gc_thresh3 below its need (gc_thresh1, the size under which the kernel
    collects nothing, never makes a ping fail: it only moves along with them).
    """
    want = needed(hosts)
    if all(current[k] >= want[k] for k in KEYS[1:]):
        return {}
    return {k: want[k] for k in KEYS if current[k] < want[k]}


def record_after_raise(record: Record | None, current: Mapping[str, int], new: Mapping[str, int]) -> Record:
    """The record once `new` is written: the originals of the first raise stay (the current values are
    already the labs' then)."""
    if record is None:
        return Record(original=dict(current), set=dict(new))
    return Record(original=dict(record.original), set={**record.set, **new})


def to_restore(record: Record, current: Mapping[str, int]) -> dict[str, int]:
    """The originals to write back when the last lab is down: for each threshold the labs set and that
    still has the value they set (one someone else changed since stays as it is)."""
    return {k: v for k, v in record.original.items() if k in record.set and current.get(k) == record.set[k] != v}


def record_to_json(record: Record) -> str:
    return json.dumps({"original": record.original, "set": record.set}, indent=2, sort_keys=True) + "\n"


def record_from_json(text: str) -> Record | None:
    """The record, or None if it is unreadable."""
    try:
        data = json.loads(text)
        original = {str(k): int(v) for k, v in data["original"].items() if k in KEYS}
        values = {str(k): int(v) for k, v in data.get("set", {}).items() if k in KEYS}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return Record(original=original, set=values)


def lab_ids(names: Iterable[str]) -> list[int]:
    """The lab ids among the names in RUN_ROOT (each lab up has a folder named by its id)."""
    return sorted(int(n) for n in names if n.isascii() and n.isdigit())


def sysctl_path(key: str) -> str:
    """`net.ipv4.neigh.default.gc_thresh3` -> `net/ipv4/neigh/default/gc_thresh3` (under /proc/sys)."""
    return key.replace(".", "/")


def raised_message(current: Mapping[str, int], new: Mapping[str, int], hosts: int) -> str:
    """The line `lab up` prints when it raised the thresholds."""
    changes = [
        f"{key if i == 0 else key.rsplit('.', 1)[1]} {current[key]} -> {new[key]}"
        for i, key in enumerate(k for k in KEYS if k in new)
    ]
    return (
        f"Raised the kernel's neighbour table ({', '.join(changes)}) for {hosts} lab hosts on this machine; "
        "the last `wgmesh lab down` puts it back"
    )
