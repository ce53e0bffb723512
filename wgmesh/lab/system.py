"""The lab on the machine: up, down and status. Runtime files of lab ID live under /run/wgmesh-lab/ID (the
hosts' /etc/wireguard among them, so no private key lands in the mesh repo); the state is in
/run/wgmesh-lab/ID/state.json and DIR/.lab/state.json. `up` raises the kernel's neighbour table thresholds
when they are too small for the hosts of every lab up (neigh.py), recording the machine's values in
/run/wgmesh-lab/neigh.json; the last lab's `down` puts them back.

state.py reads and writes the state; netns.py knows the namespaces, links and each host's sshd; reboot.py
simulates a host's reboot; move.py gives a host a new underlay address. Their public names are importable
from here too."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wgmesh.lab import neigh, users
from wgmesh.lab.hosts import (
    COMMANDS,
    HEADER,
    MAX_ID,
    PACKAGES,
    RUN_ROOT,
    SUDO_COMMANDS,
    SYSCTL_CONF,
    HostStatus,
    Lab,
    LabError,
    LabHost,
    LabInUse,
    bridge_name,
    lab_from_json,
    range_conflicts,
    runtime_dir,
    state_path,
    sudoers_path,
    system_problem,
)
from wgmesh.lab.move import Move, move
from wgmesh.lab.netns import (
    SSHD_START_TIMEOUT,
    lab_netns,
    link_kinds,
    machine_up,
    ns_argv,
    router_up,
    spawn_sshd,
    wg_up,
)
from wgmesh.lab.procs import alive, check, env, kill_all, pids_in_netns, proc_of, run, which
from wgmesh.lab.reboot import BOOT_STEP_TIMEOUT, reboot
from wgmesh.lab.state import id_lock, load, runtime_owner, runtime_state, save, write_atomic
from wgmesh.lab.texts import (
    host_batch,
    render_hosts,
    render_known_hosts,
    render_mesh_yaml,
    render_sshd_config,
    render_sysctl_conf,
    router_script,
    setup_script,
)

__all__ = [
    "BOOT_STEP_TIMEOUT",
    "SSHD_START_TIMEOUT",
    "Move",
    "check_system",
    "down",
    "down_id",
    "lab_netns",
    "load",
    "missing_packages",
    "move",
    "ns_argv",
    "reboot",
    "runtime_owner",
    "save",
    "spawn_sshd",
    "status",
    "up",
    "write_atomic",
]


def missing_packages(root_login: bool = False) -> list[str]:
    """Debian packages whose commands are missing (sudo only matters to cloud-like labs)."""
    out: list[str] = []
    for cmd, pkg in COMMANDS.items():
        if root_login and cmd in SUDO_COMMANDS:
            continue
        if which(cmd) is None and pkg not in out:
            out.append(pkg)
    return out


def check_system(install: bool = False, root_login: bool = False) -> None:
    """Raise LabError unless this is Linux, we are root and every package is there (installing on request)."""
    system, euid = platform.system(), os.geteuid() if hasattr(os, "geteuid") else -1
    missing = missing_packages(root_login) if system == "Linux" and euid == 0 else []
    if missing and install:
        apt_env = env() | {"DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
            if subprocess.run(argv, env=apt_env, check=False).returncode != 0:
                raise LabError(f"{shlex.join(argv)} failed")
        missing = missing_packages(root_login)
    problem = system_problem(system, euid, missing)
    if problem:
        raise LabError(problem)


# --------------------------------------------------------------------------- the neighbour table


PROC_SYS = Path("/proc/sys")


def _neigh_record() -> Path:
    return RUN_ROOT / neigh.RECORD_NAME


def _labs_up() -> list[int]:
    return neigh.lab_ids(p.name for p in RUN_ROOT.iterdir() if p.is_dir()) if RUN_ROOT.is_dir() else []


def _sysctls() -> dict[str, int]:
    return {k: int((PROC_SYS / neigh.sysctl_path(k)).read_text()) for k in neigh.KEYS}


def _write_sysctls(values: dict[str, int]) -> None:
    for key, value in values.items():
        (PROC_SYS / neigh.sysctl_path(key)).write_text(f"{value}\n")


def _read_record() -> neigh.Record | None:
    try:
        return neigh.record_from_json(_neigh_record().read_text())
    except OSError:
        return None


def _raise_neigh() -> str | None:
    """Under the lock, with the new lab's runtime state saved: raise the kernel's neighbour table thresholds
    if they are too small for the hosts of every lab up, recording the machine's values first (once).
    Returns the line that says so, or None."""
    hosts = sum(len(lab.hosts) for lab in map(runtime_state, _labs_up()) if lab is not None)
    try:
        current = _sysctls()
        new = neigh.to_raise(current, hosts)
        if not new:
            return None
        record = neigh.record_after_raise(_read_record(), current, new)
        write_atomic(_neigh_record(), neigh.record_to_json(record), 0o600)
        _write_sysctls(dict(sorted(new.items(), reverse=True)))  # gc_thresh3 first
    except OSError as e:  # a read-only /proc/sys: the lab works, a big one may not
        return f"Could not raise the kernel's neighbour table ({e}): {hosts} lab hosts may hit its limit"
    return neigh.raised_message(current, new, hosts)


def _restore_neigh() -> None:
    """Once no lab is up on the machine: put back the neighbour table thresholds that `up` recorded."""
    with id_lock():
        if _labs_up() or not _neigh_record().exists():
            return
        record = _read_record()
        if record is not None:
            _write_sysctls(neigh.to_restore(record, _sysctls()))
        _neigh_record().unlink(missing_ok=True)


# --------------------------------------------------------------------------- up


def _make_host(lab: Lab, host: LabHost, client_key: str) -> tuple[LabHost, str | None, str]:
    """Files, network, key and sshd of one host; returns it with sshd's PID, its WG public key, host key."""
    hd = lab.host_dir(host)
    (hd / "etc-wireguard").mkdir(parents=True, mode=0o700)
    (hd / "run-wireguard").mkdir(mode=0o755)
    (hd / "sysctl.d").mkdir(mode=0o755)
    sysctl_conf = render_sysctl_conf(lab)
    if sysctl_conf is not None:
        (hd / "sysctl.d" / SYSCTL_CONF).write_text(sysctl_conf)
    (hd / "hosts").write_text(render_hosts(lab, host))
    users.make_homes(lab, host, client_key)
    key = hd / "ssh_host_ed25519_key"
    comment = f"wgmesh-lab{lab.id}-{host.name}"
    check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], "ssh-keygen")
    (hd / "sshd_config").write_text(render_sshd_config(lab, host))
    if host.router:
        script = router_script(lab, host)
        check(["ip", "netns", "exec", host.router_netns, "sh", "-c", script], f"{host.name}: setting up its NAT router")
    proc, out = spawn_sshd(lab, host, setup_script(lab, host))
    public_key = None
    if lab.keys:
        public_key = out.strip()
        if not re.fullmatch(r"[A-Za-z0-9+/]{43}=", public_key):
            raise LabError(f"{host.name}: `wg pubkey` gave no public key")
    return dataclasses.replace(host, sshd=proc), public_key, (hd / "ssh_host_ed25519_key.pub").read_text()


def _client_key(lab: Lab) -> str:
    """The lab's SSH identity in DIR (kept across ups); returns the public key line."""
    key, pub = lab.identity_file, lab.identity_file.with_suffix(".pub")
    if not (key.exists() and pub.exists()):
        key.unlink(missing_ok=True)
        pub.unlink(missing_ok=True)
        comment = f"wgmesh-lab{lab.id}"
        check(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], "ssh-keygen")
    return pub.read_text()


def _gitignore(directory: Path) -> None:
    path = directory / ".gitignore"
    have = path.read_text().splitlines() if path.exists() else []
    want = [w for w in ("id_ed25519", ".lab/") if w not in have]
    if want:
        path.write_text("".join(f"{line}\n" for line in [*have, *want]))


def _claim(lab: Lab) -> str | None:
    """Under the lock: make sure the id is free (or ours), then record the lab as its owner and make the
    kernel's neighbour table big enough for every lab up; returns the line that says it was raised."""
    with id_lock():
        owner = runtime_owner(lab.id)
        if owner is not None and owner != lab.dir:
            raise LabInUse(
                f"lab id {lab.id} is in use by {owner}: run `wgmesh lab down --dir {owner}` or pick another --id"
            )
        if owner == lab.dir or runtime_dir(lab.id).exists():
            _down_id(lab.id)
        leftovers = [lab.bridge] if lab.bridge in link_kinds() else []
        leftovers += lab_netns(lab.id)
        if leftovers:
            raise LabInUse(
                f"lab id {lab.id}: {', '.join(leftovers)} exist but no lab owns them: "
                f"remove them with `wgmesh lab down --id {lab.id}` or pick another --id"
            )
        users.claim(lab)
        routes = json.loads(check(["ip", "-j", "-4", "route", "show", "table", "all"], "ip route") or "[]")
        conflicts = range_conflicts(lab.id, routes)
        if conflicts:
            raise LabInUse(f"{lab.network} is already in use ({'; '.join(conflicts)}): pick another --id")
        lab.runtime.mkdir(parents=True, mode=0o700)
        save(lab)
        return _raise_neigh()


def _add_user(lab: Lab) -> Lab:
    """A cloud-like lab's user and sudoers file, recorded in the state before they are made."""
    RUN_ROOT.chmod(0o755)  # the user reaches its home: sshd reads authorized_keys as the user
    lab.runtime.chmod(0o711)
    lab.home.mkdir(mode=0o755)  # where each host mounts its own home
    lab = dataclasses.replace(lab, user=lab.ssh_user, sudoers=sudoers_path(lab.id))
    save(lab)
    users.add(lab)
    return lab


def up(lab: Lab, *, install: bool = False, note: Callable[[str], object] | None = None) -> Lab:
    """Bring the lab up (replacing a lab already in lab.dir); returns it with the sshd PIDs. `note` gets the
    line that says the kernel's neighbour table was raised for the labs up, if it was."""
    check_system(install, lab.root_login)
    lab = dataclasses.replace(lab, dir=lab.dir.resolve(), user=None, sudoers=None)
    if lab.mesh_path.exists() and not lab.mesh_path.read_text().startswith(HEADER):
        raise LabError(f"{lab.mesh_path} exists and was not made by wgmesh lab: use another --dir")
    if state_path(lab.dir).exists():
        down(lab.dir)
    lab.dir.mkdir(parents=True, exist_ok=True)
    for d in (Path("/etc/wireguard"), Path("/run/wireguard"), Path("/run/sshd"), Path("/etc/sysctl.d")):
        d.mkdir(parents=True, exist_ok=True)
    raised = _claim(lab)
    if raised is not None and note is not None:
        note(raised)
    try:
        check(["ip", "-batch", "-"], "creating the lab network", input=host_batch(lab))
        client_key = _client_key(lab)
        if not lab.root_login:
            lab = _add_user(lab)
        with ThreadPoolExecutor(max_workers=min(16, len(lab.hosts))) as pool:
            made = list(pool.map(lambda h: _make_host(lab, h, client_key), lab.hosts))
        for host, _, _ in made:
            lab = lab.with_host(host)
        save(lab)
        public_keys = {h.name: k for h, k, _ in made if k is not None}
        write_atomic(lab.known_hosts, render_known_hosts(lab, {h.name: hk for h, _, hk in made}))
        write_atomic(lab.mesh_path, render_mesh_yaml(lab, public_keys))
        _gitignore(lab.dir)
    except BaseException:
        # take down whatever was made: _down_id finds processes by namespace, accounts by the state
        with contextlib.suppress(Exception):
            _down_id(lab.id, lab)
        with contextlib.suppress(Exception):
            _restore_neigh()
        shutil.rmtree(lab.dir / ".lab", ignore_errors=True)
        raise
    return lab


# --------------------------------------------------------------------------- down, status


def _down_id(lab_id: int, recorded_lab: Lab | None = None) -> bool:
    """Stop every process of lab `lab_id`, delete its namespaces, links and runtime files, and the user and
    sudoers file the state records (the runtime state, or `recorded_lab`: /run is gone after a reboot).

    Works from the names alone (the state only adds recorded PIDs), so it also cleans a half-made lab.
    Returns whether anything was there.
    """
    runtime_lab = runtime_state(lab_id)
    recorded = [h.sshd for h in runtime_lab.hosts if h.sshd] if runtime_lab else []
    namespaces = lab_netns(lab_id)
    in_ns = [p for p in (proc_of(pid) for pid in pids_in_netns(namespaces)) if p is not None]
    kill_all([*recorded, *in_ns])
    accounts = {(x.user, x.sudoers) for x in (runtime_lab, recorded_lab) if x is not None and x.id == lab_id}
    removed = [users.remove(lab_id, user, sudoers) for user, sudoers in accounts]
    links = link_kinds()
    veth = re.compile(rf"wgl{lab_id}v\d+")
    batch = [f"link del {name}" for name, kind in links.items() if kind == "veth" and veth.fullmatch(name)]
    if links.get(bridge_name(lab_id)) == "bridge":
        batch.append(f"link del {bridge_name(lab_id)}")
    batch += [f"netns del {n}" for n in namespaces]
    if batch:
        # -force: go on past a link that went meanwhile (a veth goes with its namespace, asynchronously)
        r = run(["ip", "-force", "-batch", "-"], input="\n".join(batch) + "\n")
        left = [n for n in lab_netns(lab_id)]
        left += [name for name, kind in link_kinds().items() if kind == "veth" and veth.fullmatch(name)]
        left += [bridge_name(lab_id)] if link_kinds().get(bridge_name(lab_id)) == "bridge" else []
        if r.returncode != 0 and left:
            detail = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise LabError(f"removing lab {lab_id}: {', '.join(left)} still there ({detail[-1] if detail else ''})")
    found = bool(batch or recorded or any(removed) or runtime_dir(lab_id).exists())
    shutil.rmtree(runtime_dir(lab_id), ignore_errors=True)
    return found


def down(directory: Path) -> bool:
    """Take down the lab of mesh repo `directory`; False if there was none. Idempotent.

    Leaves the mesh repo files (mesh.yaml, known_hosts, id_ed25519) in place; the last lab on the machine to
    go down puts back the kernel's neighbour table thresholds that `up` raised.
    """
    directory = Path(directory).resolve()
    path = state_path(directory)
    if not path.exists():
        return False
    try:
        lab: Lab | None = lab_from_json(path.read_text())
    except (ValueError, KeyError, TypeError, LabError):
        lab = None
    # only when the id still belongs to this folder (else another lab reuses it)
    if lab is not None and runtime_owner(lab.id) in (directory, None):
        _down_id(lab.id, lab)
    shutil.rmtree(directory / ".lab", ignore_errors=True)
    _restore_neigh()
    return True


def down_id(lab_id: int) -> bool:
    """Take down lab `lab_id` whatever folder it belongs to (for leftovers). Idempotent."""
    if not 0 <= lab_id <= MAX_ID:
        raise LabError(f"lab id must be 0..{MAX_ID}, not {lab_id}")
    owner = runtime_owner(lab_id)
    found = _down_id(lab_id)
    if owner is not None:
        shutil.rmtree(owner / ".lab", ignore_errors=True)
    _restore_neigh()
    return found


def status(directory: Path) -> tuple[Lab, tuple[HostStatus, ...]]:
    lab = load(directory)
    return lab, tuple(
        HostStatus(
            h.name,
            h.ip,
            sshd=h.sshd is not None and alive(h.sshd),
            wireguard=wg_up(h),
            machine=machine_up(h),
            router=router_up(h),
        )
        for h in lab.hosts
    )
