"""The lab on the machine: namespaces, the bridge, each host's mounts and sshd, the machines behind the
subnets, the state files; up, down, status, reboot. Runtime files of lab ID live under /run/wgmesh-lab/ID
(the hosts' /etc/wireguard among them, so no private key lands in the mesh repo); the state is in
/run/wgmesh-lab/ID/state.json and DIR/.lab/state.json."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wgmesh.lab import boot, users
from wgmesh.lab.hosts import (
    COMMANDS,
    HEADER,
    INTERFACE,
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
    Proc,
    bridge_name,
    lab_from_json,
    lab_to_json,
    machine_prefix,
    netns_prefix,
    range_conflicts,
    runtime_dir,
    state_path,
    sudoers_path,
    system_problem,
)
from wgmesh.lab.procs import alive, check, env, kill_all, pids_in_netns, proc_of, run, which
from wgmesh.lab.texts import (
    host_batch,
    render_hosts,
    render_known_hosts,
    render_mesh_yaml,
    render_sshd_config,
    render_sysctl_conf,
    setup_script,
)

SSHD_START_TIMEOUT = 5.0


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


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One lab operation at a time claims an id (other labs may be created by other processes)."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUN_ROOT, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- state


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def save(lab: Lab) -> None:
    text = lab_to_json(lab)
    write_atomic(lab.runtime / "state.json", text)
    write_atomic(lab.state_path, text)


def load(directory: Path) -> Lab:
    """The lab whose mesh repo is `directory`; LabError if there is none."""
    directory = Path(directory).resolve()
    try:
        return lab_from_json(state_path(directory).read_text())
    except FileNotFoundError:
        raise LabError(f"no lab in {directory} (start one with `wgmesh lab up --dir {directory}`)") from None
    except (ValueError, KeyError, TypeError) as e:
        raise LabError(f"{state_path(directory)}: unreadable lab state ({e})") from None


def _runtime_lab(lab_id: int) -> Lab | None:
    try:
        return lab_from_json((runtime_dir(lab_id) / "state.json").read_text())
    except (OSError, ValueError, KeyError, TypeError, LabError):
        return None


def runtime_owner(lab_id: int) -> Path | None:
    """The mesh repo folder of the lab that holds this id now, or None."""
    lab = _runtime_lab(lab_id)
    return lab.dir if lab else None


# --------------------------------------------------------------------------- network, hosts


def _links() -> dict[str, str]:
    """name -> kind of every link in the machine's namespace."""
    data = json.loads(check(["ip", "-j", "-d", "link", "show"], "ip link show") or "[]")
    return {d["ifname"]: d.get("linkinfo", {}).get("info_kind", "") for d in data}


def lab_netns(lab_id: int) -> list[str]:
    """The namespaces of lab `lab_id`: its hosts' and the machines' behind their subnets."""
    prefixes = (netns_prefix(lab_id), machine_prefix(lab_id))
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefixes))
    except FileNotFoundError:
        return []


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ns_argv(lab: Lab, host: LabHost, argv: Sequence[str], prelude: str = "") -> list[str]:
    """Run argv in the host's network namespace, a mount namespace with its own WireGuard folders, root
    home, /etc/hosts, /etc/sysctl.d (and the sudo user's home), and a UTS namespace with its name as hostname."""
    hd = lab.host_dir(host)
    mounts = [
        (hd / "etc-wireguard", Path("/etc/wireguard")),
        (hd / "run-wireguard", Path("/run/wireguard")),
        (hd / "root", Path("/root")),
        (hd / "hosts", Path("/etc/hosts")),
    ]
    if (hd / "sysctl.d").is_dir():  # (hosts of a lab made before it had one go without)
        mounts.append((hd / "sysctl.d", Path("/etc/sysctl.d")))
    if not lab.root_login:
        mounts.append((hd / "home", lab.home))
    script = "\n".join(
        [
            "set -e",
            *(f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))}" for src, dst in mounts),
            f"hostname {shlex.quote(host.name)}",
            *([prelude] if prelude else []),
            'exec "$@"',
        ]
    )
    return ["ip", "netns", "exec", host.netns, "unshare", "--uts", "sh", "-c", script, "sh", *argv]


def spawn_sshd(lab: Lab, host: LabHost, prelude: str = "") -> tuple[Proc, str]:
    """Start the host's sshd (after `prelude`); returns it and the prelude's output."""
    hd = lab.host_dir(host)
    pidfile = hd / "sshd.pid"
    pidfile.unlink(missing_ok=True)
    argv = ["/usr/sbin/sshd", "-f", str(hd / "sshd_config"), "-E", str(hd / "sshd.log")]
    out = check(ns_argv(lab, host, argv, prelude), f"{host.name}: setting up the host")
    deadline = time.monotonic() + SSHD_START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            proc = proc_of(int(pidfile.read_text()))
            if proc is not None:
                return proc, out
        time.sleep(0.005)
    log = (hd / "sshd.log").read_text().strip().splitlines() if (hd / "sshd.log").exists() else []
    raise LabError(f"{host.name}: sshd did not start{': ' + log[-1] if log else ''}")


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


def _claim(lab: Lab) -> None:
    """Under the lock: make sure the id is free (or ours), then record the lab as its owner."""
    with _lock():
        owner = runtime_owner(lab.id)
        if owner is not None and owner != lab.dir:
            raise LabInUse(
                f"lab id {lab.id} is in use by {owner}: run `wgmesh lab down --dir {owner}` or pick another --id"
            )
        if owner == lab.dir or runtime_dir(lab.id).exists():
            _down_id(lab.id)
        leftovers = [lab.bridge] if lab.bridge in _links() else []
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


def _add_user(lab: Lab) -> Lab:
    """A cloud-like lab's user and sudoers file, recorded in the state before they are made."""
    RUN_ROOT.chmod(0o755)  # the user reaches its home: sshd reads authorized_keys as the user
    lab.runtime.chmod(0o711)
    lab.home.mkdir(mode=0o755)  # where each host mounts its own home
    lab = dataclasses.replace(lab, user=lab.ssh_user, sudoers=sudoers_path(lab.id))
    save(lab)
    users.add(lab)
    return lab


def up(lab: Lab, *, install: bool = False) -> Lab:
    """Bring the lab up (replacing a lab already in lab.dir); returns it with the sshd PIDs."""
    check_system(install, lab.root_login)
    lab = dataclasses.replace(lab, dir=lab.dir.resolve(), user=None, sudoers=None)
    if lab.mesh_path.exists() and not lab.mesh_path.read_text().startswith(HEADER):
        raise LabError(f"{lab.mesh_path} exists and was not made by wgmesh lab: use another --dir")
    if state_path(lab.dir).exists():
        down(lab.dir)
    lab.dir.mkdir(parents=True, exist_ok=True)
    for d in (Path("/etc/wireguard"), Path("/run/wireguard"), Path("/run/sshd"), Path("/etc/sysctl.d")):
        d.mkdir(parents=True, exist_ok=True)
    _claim(lab)
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
    runtime_lab = _runtime_lab(lab_id)
    recorded = [h.sshd for h in runtime_lab.hosts if h.sshd] if runtime_lab else []
    namespaces = lab_netns(lab_id)
    in_ns = [p for p in (proc_of(pid) for pid in pids_in_netns(namespaces)) if p is not None]
    kill_all([*recorded, *in_ns])
    accounts = {(x.user, x.sudoers) for x in (runtime_lab, recorded_lab) if x is not None and x.id == lab_id}
    removed = [users.remove(lab_id, user, sudoers) for user, sudoers in accounts]
    links = _links()
    veth = re.compile(rf"wgl{lab_id}v\d+")
    batch = [f"link del {name}" for name, kind in links.items() if kind == "veth" and veth.fullmatch(name)]
    if links.get(bridge_name(lab_id)) == "bridge":
        batch.append(f"link del {bridge_name(lab_id)}")
    batch += [f"netns del {n}" for n in namespaces]
    if batch:
        # -force: go on past a link that went meanwhile (a veth goes with its namespace, asynchronously)
        r = run(["ip", "-force", "-batch", "-"], input="\n".join(batch) + "\n")
        left = [n for n in lab_netns(lab_id)]
        left += [name for name, kind in _links().items() if kind == "veth" and veth.fullmatch(name)]
        left += [bridge_name(lab_id)] if _links().get(bridge_name(lab_id)) == "bridge" else []
        if r.returncode != 0 and left:
            detail = (r.stderr.strip() or r.stdout.strip()).splitlines()
            raise LabError(f"removing lab {lab_id}: {', '.join(left)} still there ({detail[-1] if detail else ''})")
    found = bool(batch or recorded or any(removed) or runtime_dir(lab_id).exists())
    shutil.rmtree(runtime_dir(lab_id), ignore_errors=True)
    return found


def down(directory: Path) -> bool:
    """Take down the lab of mesh repo `directory`; False if there was none. Idempotent.

    Leaves the mesh repo files (mesh.yaml, known_hosts, id_ed25519) in place.
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
    return True


def down_id(lab_id: int) -> bool:
    """Take down lab `lab_id` whatever folder it belongs to (for leftovers). Idempotent."""
    if not 0 <= lab_id <= MAX_ID:
        raise LabError(f"lab id must be 0..{MAX_ID}, not {lab_id}")
    owner = runtime_owner(lab_id)
    found = _down_id(lab_id)
    if owner is not None:
        shutil.rmtree(owner / ".lab", ignore_errors=True)
    return found


def _wg_up(host: LabHost) -> bool:
    r = run(["ip", "-n", host.netns, "-j", "link", "show", "dev", INTERFACE])
    if r.returncode != 0:
        return False
    with contextlib.suppress(ValueError, IndexError, KeyError):
        return "UP" in json.loads(r.stdout)[0]["flags"]
    return False


def _machine_up(host: LabHost) -> bool:
    if not _netns_exists(host.machine_netns):
        return False
    r = run(["ip", "-n", host.machine_netns, "-j", "-4", "addr", "show", "dev", "eth0"])
    if r.returncode != 0:
        return False
    with contextlib.suppress(ValueError, IndexError, KeyError, TypeError):
        return any(a.get("local") == str(host.machine_ip) for a in json.loads(r.stdout)[0]["addr_info"])
    return False


def status(directory: Path) -> tuple[Lab, tuple[HostStatus, ...]]:
    lab = load(directory)
    return lab, tuple(
        HostStatus(
            h.name,
            h.ip,
            sshd=h.sshd is not None and alive(h.sshd),
            wireguard=_wg_up(h),
            machine=_machine_up(h),
        )
        for h in lab.hosts
    )


# --------------------------------------------------------------------------- reboot

BOOT_STEP_TIMEOUT = 60.0


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _in_host(lab: Lab, host: LabHost, argv: Sequence[str], phase: str) -> boot.Step:
    """Run argv in the host's namespaces, its output to a file (a daemon it starts keeps no pipe of ours)."""
    log = lab.host_dir(host) / "boot.log"
    redirect = ["sh", "-c", 'exec >"$1" 2>&1 </dev/null; shift; exec "$@"', "sh", str(log), *argv]
    try:
        r = run(ns_argv(lab, host, redirect), timeout=BOOT_STEP_TIMEOUT)
        code = r.returncode
        output = log.read_text(errors="replace") if log.exists() else ""
        output = output or r.stderr
    except LabError as e:
        code, output = -1, str(e)
    finally:
        log.unlink(missing_ok=True)
    return boot.Step(phase, tuple(argv), code, output)


def _host_links(host: LabHost) -> list[dict]:
    out = check(["ip", "-n", host.netns, "-j", "-d", "link", "show"], f"{host.name}: ip link show")
    return json.loads(out or "[]")


def reboot(directory: Path, name: str) -> boot.Reboot:
    """Simulate a reboot of host `name` (see wgmesh/lab/boot.py): stop, undo, then what boot runs."""
    lab = load(directory)
    host = lab.host(name)
    if not _netns_exists(host.netns):
        raise LabError(f"{name}: the host is not running (no namespace {host.netns}): `wgmesh lab up` again")
    hd = lab.host_dir(host)
    keep = host.sshd if host.sshd is not None and alive(host.sshd) else None
    run_wg = hd / "run-wireguard"
    sockets = [p.stem for p in run_wg.glob("*.sock")]
    before = boot.wireguard_links(_host_links(host), sockets)
    procs = [p for p in (proc_of(pid) for pid in pids_in_netns([host.netns])) if p is not None and p != keep]
    stopped = tuple(f"{_comm(p.pid)} {p.pid}" for p in procs)
    kill_all(procs)
    left = boot.wireguard_links(_host_links(host), sockets)  # wireguard-go's tun goes with its process
    for entry in run_wg.iterdir():  # /run is empty after a reboot
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    shutdown = boot.shutdown_commands(
        left,
        ipv6=Path("/proc/sys/net/ipv6/conf/all/forwarding").exists(),
        ip6tables=which("ip6tables") is not None,
    )
    steps = []
    for argv in shutdown:
        r = run(["ip", "netns", "exec", host.netns, *argv], timeout=BOOT_STEP_TIMEOUT)
        steps.append(boot.Step("shutdown", tuple(argv), r.returncode, r.stdout + r.stderr))
    sysctl_d = hd / "sysctl.d"
    files = {p.name: p.read_text(errors="replace") for p in sysctl_d.glob("*") if p.is_file()}
    confs = [p.name for p in (hd / "etc-wireguard").iterdir() if p.is_file()]
    for argv in boot.boot_commands(boot.sysctl_settings(files), boot.interfaces_to_start(confs)):
        steps.append(_in_host(lab, host, argv, "boot"))
    return boot.Reboot(name, stopped, tuple(before), tuple(steps))
