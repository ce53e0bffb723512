"""The fault suite of issue 14: each finding of the hardening review (findings/hardening.md, F1-F11) and the
two guarantees built on them (item 4: overlapping applies; item 5: confirm or revert), replayed against lab
hosts with the real `wgmesh` command. Each test asserts the behaviour, so it fails if the fix goes away.

One 3-host lab (aws, azure, gcp; no NAT) for the module, converged once; every test leaves mesh.yaml as it
found it and the mesh converged (the `mesh` fixture checks). One host is made hostile for a test, in its own
mount namespace only (`labkit.bind_in_host`, as its sshd and every new login see it): a script over /usr/bin/wg
or /usr/bin/ip that prints escapes, floods, hangs or slows down, and runs the real tool otherwise.

Packet loss on one host's link: `tc qdisc ... netem loss 100%` in the host's network namespace when the kernel
has netem; otherwise iptables DROP of everything in and out of that namespace (the same 100% loss).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e import labkit as labmod
from wgmesh.lab.procs import proc_of

pytestmark = pytest.mark.e2e

WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
NAMES = ("aws", "azure", "gcp")
HOSTILE = "gcp"
NO_CHANGES = "No changes. Your mesh matches the configuration."
LOCK = "/run/wireguard/wgmesh-wg0.lock"
# what the hostile node prints: clear the screen, a green fake "No changes.", then concealed text (printf format)
ESC_PRINTF = r"\033[2J\033[H\033[1;32mNo changes. Your mesh matches the configuration.\033[0m\033[8m\n"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ----------------------------------------------------------------------------------------- helpers


def _exec(lab: labmod.Lab, node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return labmod.host_exec(lab.dir, node, list(argv))


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n--- stdout\n{r.stdout}--- stderr\n{r.stderr}"
    return r.stdout


def _results(stdout: str) -> dict[str, str]:
    """`NODE  outcome (message)` lines of apply."""
    out = {}
    for ln in stdout.splitlines():
        m = re.match(r"^(\S+)\s+(changed|unchanged|failed)\b(.*)$", ln)
        if m:
            out[m.group(1)] = m.group(2) + m.group(3)
    return out


def _node_block(text: str, name: str) -> str:
    m = re.search(rf"^  {re.escape(name)}:\n(?:    .*\n)*", text, flags=re.M)
    assert m is not None, name
    return m.group(0)


def _add_to_node(text: str, name: str, lines: str) -> str:
    block = _node_block(text, name)
    return text.replace(block, block + lines)


def _add_subnet(text: str, name: str, prefix: str) -> str:
    block = _node_block(text, name)
    new = re.sub(r"^(    subnets: \[)(.*)\]$", rf"\g<1>\g<2>, {prefix}]", block, count=1, flags=re.M)
    assert new != block, block
    return text.replace(block, new)


def _set_mesh(text: str, line: str) -> str:
    """mesh.yaml with `line` (e.g. `mtu: 1380`) added to its `mesh:` section."""
    assert "\nmesh:\n" in text
    return text.replace("\nmesh:\n", f"\nmesh:\n  {line}\n", 1)


def _conf_sha(lab: labmod.Lab, node: str) -> str:
    return _ok(_exec(lab, node, "sha256sum", "/etc/wireguard/wg0.conf")).split()[0]


def _mtu(lab: labmod.Lab, node: str) -> int:
    return int(json.loads(_ok(_exec(lab, node, "ip", "-j", "link", "show", "dev", "wg0")))[0]["mtu"])


def _peer_ips(lab: labmod.Lab, node: str) -> dict[str, set[str]]:
    out = _ok(_exec(lab, node, "wg", "show", "wg0", "allowed-ips"))
    return {ln.split("\t")[0]: set(ln.split("\t")[1].split()) for ln in out.splitlines() if "\t" in ln}


def _wg_routes(lab: labmod.Lab, node: str) -> set[str]:
    data = json.loads(_ok(_exec(lab, node, "ip", "-j", "-4", "route", "show", "dev", "wg0")) or "[]")
    return {r["dst"] for r in data}


def _assert_nothing_left(lab: labmod.Lab) -> None:
    """F10: no file of an apply run outlives it (but the empty mark a node's own revert leaves for a controller
    that could not reach it: the next apply there removes it), and no file but the key file holds the key."""
    for node in NAMES:
        files = _ok(_exec(lab, node, "ls", "-A", "/run/wireguard", "/etc/wireguard")).split()
        runs = [f for f in files if re.fullmatch(r"wgmesh-wg0\.[a-z0-9]+\..+", f) or "wgmesh-tmp" in f]
        marks = [f for f in runs if f.endswith(".reverted")]
        assert runs == marks, (node, files)
        for mark in marks:
            assert _ok(_exec(lab, node, "cat", f"/run/wireguard/{mark}")) == "", (node, mark)
        key = _ok(_exec(lab, node, "cat", "/etc/wireguard/wg0.key")).strip()
        leaks = _exec(lab, node, "sh", "-c", f"grep -rlF -- {shlex.quote(key)} /run/wireguard /etc/wireguard")
        assert leaks.stdout.split() == ["/etc/wireguard/wg0.key"], (node, leaks.stdout)


def _plan(run: WgmeshRunner, lab: labmod.Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return run(lab.dir, "plan", "--detailed-exitcode", "--no-color", *args)


def _converge(run: WgmeshRunner, lab: labmod.Lab) -> None:
    r = run(lab.dir, "apply", "--auto-approve", "--lock-timeout", "90", timeout=300)
    _ok(r)
    r = _plan(run, lab)
    assert r.returncode == 0 and NO_CHANGES in r.stdout, r.stdout + r.stderr


@contextlib.contextmanager
def _hostile(lab: labmod.Lab, tool: str, body: str, node: str = HOSTILE) -> Iterator[Path]:
    """`tool` (wg or ip) replaced on `node` by a /bin/sh script; in it $REAL is the real tool and $HERE a folder
    for its notes. A `*.pid` file it leaves there is a process it started, killed at the end."""
    real = os.path.realpath(shutil.which(tool, path=SBIN_PATH) or f"/usr/bin/{tool}")
    here = lab.dir / f"hostile-{node}-{tool}"
    here.mkdir(exist_ok=True)
    copy = here / f"real-{tool}"
    shutil.copy2(real, copy)
    script = here / tool
    script.write_text(f"#!/bin/sh\nREAL={shlex.quote(str(copy))}\nHERE={shlex.quote(str(here))}\n{body}")
    script.chmod(0o755)
    try:
        with labmod.bind_in_host(lab.dir, node, script, real):
            yield here
    finally:
        for pidfile in here.glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            pidfile.unlink()


def _popen_wgmesh(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")} | {
        "NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "wgmesh", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _sshd_sessions(lab: labmod.Lab, node: str) -> list[int]:
    """The per-connection sshd processes of a host (not its listener)."""
    listener = labmod.load(lab.dir).host(node).sshd
    pids = []
    for pid in labmod.pids_in_netns([lab.host(node).netns]):
        comm = labmod.comm(pid)
        if comm is not None and comm.startswith("sshd") and (listener is None or pid != listener.pid):
            pids.append(pid)
    return pids


# ----------------------------------------------------------------------------------------- the lab


@pytest.fixture(scope="module")
def trio(lab) -> labmod.Lab:  # type: ignore[no-untyped-def]
    return lab(names=NAMES, nat=())


@pytest.fixture(scope="module")
def original(trio: labmod.Lab, run_wgmesh: WgmeshRunner) -> str:
    text = trio.mesh_path.read_text()
    _converge(run_wgmesh, trio)
    return text


@pytest.fixture
def mesh(trio: labmod.Lab, original: str, run_wgmesh: WgmeshRunner) -> Iterator[labmod.Lab]:
    """The converged lab; after the test, its own mesh.yaml again, converged, and nothing left on the nodes."""
    yield trio
    trio.mesh_path.write_text(original)
    _converge(run_wgmesh, trio)
    _assert_nothing_left(trio)


# ----------------------------------------------------------------------------------------- F1, F7, F8: inputs


def test_f1_known_hosts_outside_the_repo_is_refused_without_quoting_it(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    bad = original.replace("  known_hosts: known_hosts\n", "  known_hosts: /proc/self/environ\n", 1)
    assert bad != original
    mesh.mesh_path.write_text(bad)
    secret = "ghp_THIS_IS_A_FAKE_TOKEN_f1"
    for command in ("validate", "plan"):
        r = run_wgmesh(mesh.dir, command, env={"SECRET_TOKEN": secret})
        assert r.returncode == 1, r.stdout + r.stderr
        assert re.search(r"mesh\.yaml:\d+:\d+", r.stderr), r.stderr
        assert secret not in r.stdout + r.stderr and "internal error" not in r.stderr
    assert not _sshd_sessions(mesh, "aws"), "refused before connecting"


def test_f7_an_alias_bomb_is_refused_at_once(mesh: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    levels = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    bomb = mesh.dir / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nnodes:\n  n1:\n    post_up: *a9\n")
    started = time.monotonic()
    r = run_wgmesh(mesh.dir, "validate", "-f", "bomb.yaml", timeout=60)
    took = time.monotonic() - started
    assert r.returncode == 1 and re.search(r"bomb\.yaml:\d+", r.stderr), r.stderr
    assert took < 5, took  # 2 s of its own; the rest is Python starting up on a busy machine


def test_f8_a_bad_proxy_jump_is_a_validation_error_not_a_crash(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    host = mesh.host(HOSTILE).ip
    bad = original.replace(f"ssh: {{host: {host}}}", f"ssh: {{host: {host}, proxy_jump: 'admin@bastion:abc'}}")
    assert bad != original
    mesh.mesh_path.write_text(bad)
    for command in ("validate", "plan", "apply"):
        r = run_wgmesh(mesh.dir, command, *(["--auto-approve"] if command == "apply" else []))
        assert r.returncode == 1 and re.search(r"mesh\.yaml:\d+:\d+", r.stderr), r.stderr
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------------------- F6: escapes


def test_f6_escapes_from_a_node_never_reach_the_terminal(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    body = f"""case "$1 $3" in
"show dump") printf '{ESC_PRINTF}' >&2; exit 7 ;;
"show public-key") printf '{ESC_PRINTF}' >&2; exit 7 ;;
"syncconf /dev/stdin") cat >/dev/null; printf '{ESC_PRINTF}' >&2; exit 1 ;;
esac
exec "$REAL" "$@"
"""
    with _hostile(mesh, "wg", body):
        plan = _plan(run_wgmesh, mesh)
        out = plan.stdout + plan.stderr
        assert plan.returncode == 1, out
        assert "\x1b" not in out
        assert f"node {HOSTILE}:" in out
        assert "Plan:" in out and not re.search(r"^No changes", out, flags=re.M)
        # apply: the failing step's stderr comes back, escaped
        mesh.mesh_path.write_text(_add_subnet(original, "aws", "192.168.61.0/24"))
    with _hostile(mesh, "wg", body.replace('"show dump")', '"never dump")').replace('"show public-key")',
                                                                                      '"never public-key")')):
        r = run_wgmesh(mesh.dir, "apply", "--auto-approve", "--no-color")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "\x1b" not in out
    line = _results(r.stdout)[HOSTILE]
    assert line.startswith("failed (apply failed (exit 1): \\x1b[2J\\x1b[H\\x1b[1;32mNo changes."), line
    assert "this apply's steps were undone; read again: as before the apply" in line


# ----------------------------------------------------------------------------------------- F9: floods


def test_f9_a_flooding_node_is_stopped_at_16_mib_and_memory_stays_bounded(
    mesh: labmod.Lab, run_wgmesh: WgmeshRunner
) -> None:
    body = """case " $* " in
*" -j addr show "*) "$REAL" "$@"; head -c 120000000 /dev/zero | tr '\\000' A; exit 0 ;;
esac
exec "$REAL" "$@"
"""
    with _hostile(mesh, "ip", body), (mesh.dir / "f9.out").open("w+") as sink:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")} | {"NO_COLOR": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "wgmesh", "plan", "--no-color"], cwd=mesh.dir, env=env,
                                stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
        sink.seek(0)
        out = sink.read()
    assert proc.returncode == 1, out
    assert re.search(rf"node {HOSTILE}: .*output over 16 MiB", out), out
    assert "node aws:" not in out and "node azure:" not in out  # the others were planned
    peak_mb = usage.ru_maxrss / 1024
    assert peak_mb < 250, f"controller peak RSS {peak_mb:.0f} MB for a 120 MB flood"


# ----------------------------------------------------------------------------------------- F4: hangs, loss


def test_f4_a_hanging_node_is_named_with_its_deadline(mesh: labmod.Lab, run_wgmesh: WgmeshRunner) -> None:
    body = """case "$1 $3" in
"show dump") echo $$ > "$HERE/hang.pid"; exec sleep 600 ;;
esac
exec "$REAL" "$@"
"""
    with _hostile(mesh, "wg", body) as here:
        started = time.monotonic()
        r = run_wgmesh(mesh.dir, "plan", "--json", "--command-timeout", "4", timeout=60)
        took = time.monotonic() - started
        # the node stops the abandoned read itself, the hung `wg` with it, NODE_GRACE (5 s) after the deadline
        hung = int((here / "hang.pid").read_text())
        while proc_of(hung) is not None and time.monotonic() - started < 4 + 5 + 10:
            time.sleep(0.2)
        stopped = time.monotonic() - started
        assert proc_of(hung) is None, f"the hung `wg show` still runs on {HOSTILE} {stopped:.0f}s after the plan began"
    assert r.returncode == 1, r.stdout + r.stderr
    assert took < 15, took
    assert stopped >= 4 + 5 - 1, f"stopped after {stopped:.1f}s: before the controller's deadline and its grace"
    errors = {n["node"]: n["error"] for n in json.loads(r.stdout)["nodes"]}
    assert errors == {"aws": None, "azure": None, HOSTILE: "no answer within 4s (--command-timeout)"}


@contextlib.contextmanager
def _loss(lab: labmod.Lab, node: str) -> Iterator[str]:
    """100% packet loss on the host's link, both ways; yields how."""
    ns = lab.host(node).netns
    netem = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "loss",
                            "100%"], capture_output=True, text=True, check=False)
    rules = [["INPUT", "-i", "eth0"], ["OUTPUT", "-o", "eth0"]]
    if netem.returncode != 0:  # no netem in this kernel: drop everything instead
        for chain, *dev in rules:
            subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "5", "-I", chain, *dev, "-m", "comment",
                            "--comment", "wgmesh-test-loss", "-j", "DROP"], check=True)
    try:
        yield "netem" if netem.returncode == 0 else "iptables"
    finally:
        if netem.returncode == 0:
            subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
        else:
            for chain, *dev in rules:
                subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "5", "-D", chain, *dev, "-m", "comment",
                                "--comment", "wgmesh-test-loss", "-j", "DROP"], check=False)


def _hold_lock(lab: labmod.Lab, node: str, seconds: float) -> threading.Thread:
    t = threading.Thread(target=_exec, args=(lab, node, "flock", LOCK, "sleep", str(seconds)), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while _exec(lab, node, "flock", "-n", LOCK, "true").returncode == 0:
        assert time.monotonic() < deadline, "the lock was never taken"
        time.sleep(0.05)
    return t


def test_f4_packet_loss_on_one_link_mid_apply_names_that_node_within_the_deadline(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    """gcp's link drops every packet while apply waits for gcp's lock: apply ends within its deadline, gcp
    failed and named, azure changed (aws, whose subnet it is, has nothing to change); gcp changed nothing (its
    script never got its `go`)."""
    mesh.mesh_path.write_text(_add_subnet(original, "aws", "192.168.62.0/24"))
    before = _conf_sha(mesh, HOSTILE)
    holder = _hold_lock(mesh, HOSTILE, 6)
    proc = _popen_wgmesh(mesh.dir, "apply", "--auto-approve", "--command-timeout", "45")
    try:
        deadline = time.monotonic() + 30
        while not labmod.waiting_for_lock(mesh, HOSTILE):
            assert proc.poll() is None and time.monotonic() < deadline, "apply never reached gcp's lock"
            time.sleep(0.05)
        with _loss(mesh, HOSTILE):
            started = time.monotonic()
            out, err = proc.communicate(timeout=120)
            took = time.monotonic() - started
            holder.join()
            assert _conf_sha(mesh, HOSTILE) == before, "no `go` reached gcp: nothing changed there"
    finally:
        if proc.poll() is None:
            proc.kill()
    for pid in _sshd_sessions(mesh, HOSTILE):  # the dead connection's session: its script ends (end of input)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 1, out + err
    assert took < 45 + 15, took
    results = _results(out)
    assert results["azure"].startswith("changed") and not results["aws"].startswith("failed"), out
    assert results[HOSTILE].startswith("failed (connection to gcp lost") or "no answer within" in results[HOSTILE]
    assert f"apply failed on 1 node(s): {HOSTILE}" in err and "Traceback" not in err


# ----------------------------------------------------------------------------------------- F5, F11: MTU


def test_f5_a_failed_verification_after_an_mtu_change_rolls_the_mtu_back(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    """gcp's `ip` pretends to add one route: verification fails there, and the rollback restores everything
    this run changed, the MTU included (the rollback used to abort on the MTU)."""
    before = (_mtu(mesh, HOSTILE), _conf_sha(mesh, HOSTILE), _wg_routes(mesh, HOSTILE))
    mesh.mesh_path.write_text(_set_mesh(_add_subnet(original, "aws", "192.168.63.0/24"), "mtu: 1380"))
    body = """case " $* " in
*" route add 192.168.63.0/24 "*) exit 0 ;;
esac
exec "$REAL" "$@"
"""
    with _hostile(mesh, "ip", body):
        r = run_wgmesh(mesh.dir, "apply", "--auto-approve")
    assert r.returncode == 1, r.stdout + r.stderr
    line = _results(r.stdout)[HOSTILE]
    assert "verification failed (+ route 192.168.63.0/24)" in line
    assert line.endswith("rolled back to the previous config)"), line
    assert (_mtu(mesh, HOSTILE), _conf_sha(mesh, HOSTILE), _wg_routes(mesh, HOSTILE)) == before
    assert _mtu(mesh, "aws") == 1380
    _assert_nothing_left(mesh)


def test_f11_removing_mtu_is_planned_and_applied(mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner) -> None:
    mesh.mesh_path.write_text(_set_mesh(original, "mtu: 1380"))
    _converge(run_wgmesh, mesh)
    assert {n: _mtu(mesh, n) for n in NAMES} == dict.fromkeys(NAMES, 1380)
    mesh.mesh_path.write_text(original)
    plan = _plan(run_wgmesh, mesh)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert len(re.findall(r"~ mtu\s+= 1380 -> 1420", plan.stdout)) == len(NAMES), plan.stdout
    _converge(run_wgmesh, mesh)
    for n in NAMES:
        assert _mtu(mesh, n) == 1420
        assert "MTU" not in _ok(_exec(mesh, n, "cat", "/etc/wireguard/wg0.conf"))


# ----------------------------------------------------------------------------------------- F2 / item 4


def test_f2_two_applies_at_once_from_two_checkouts(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner, tmp_path: Path
) -> None:
    """A adds 192.168.12.0/24 to aws, B adds 192.168.13.0/24; azure's `wg syncconf` is slowed so that they
    overlap there. B leaves azure: its plan was made while A changed azure ("another wgmesh apply (run RUN) is
    changing this node right now"), or before, and under the lock B finds azure moved ("changed since this
    plan (...)"). No node is left half-applied: on each, the runtime peers, the routes and the config file come
    from one apply."""
    checkouts = {}
    for name, prefix in (("A", "192.168.12.0/24"), ("B", "192.168.13.0/24")):
        d = tmp_path / name
        d.mkdir()
        for f in ("known_hosts", "id_ed25519", "id_ed25519.pub"):
            if (mesh.dir / f).exists():
                shutil.copy2(mesh.dir / f, d / f)
        (d / "mesh.yaml").write_text(_add_subnet(original, "aws", prefix))
        checkouts[name] = d
    body = """case "$1" in syncconf) sleep 6 ;; esac
exec "$REAL" "$@"
"""
    with _hostile(mesh, "wg", body, node="azure"):
        a = _popen_wgmesh(checkouts["A"], "apply", "--auto-approve")
        time.sleep(2)
        b = _popen_wgmesh(checkouts["B"], "apply", "--auto-approve", "--lock-timeout", "60")
        out_a, err_a = a.communicate(timeout=180)
        out_b, err_b = b.communicate(timeout=180)
    assert a.returncode == 0, out_a + err_a
    assert b.returncode == 1, out_b + err_b
    res_b = _results(out_b)
    assert re.fullmatch(r"failed \(changed since this plan \([a-z_, ]+: another apply, a rotate or a change by "
                        r"hand\): run plan again\)|failed \(another wgmesh apply \(run [a-z0-9]+\) is changing "
                        r"this node right now: run wgmesh plan again when it has ended\)", res_b["azure"]), out_b
    for out, err in ((out_a, err_a), (out_b, err_b)):
        assert "rolled back" not in out and "Traceback" not in err
    aws_key = _ok(_exec(mesh, "aws", "wg", "show", "wg0", "public-key")).strip()
    for node in ("azure", "gcp"):
        ips = _peer_ips(mesh, node)[aws_key] & {"192.168.12.0/24", "192.168.13.0/24"}
        routes = _wg_routes(mesh, node) & {"192.168.12.0/24", "192.168.13.0/24"}
        conf = _ok(_exec(mesh, node, "cat", "/etc/wireguard/wg0.conf"))
        in_conf = {p for p in ("192.168.12.0/24", "192.168.13.0/24") if p in conf}
        assert len(ips) == 1 and ips == routes == in_conf, (node, ips, routes, in_conf)
    assert _peer_ips(mesh, "azure")[aws_key] >= {"192.168.12.0/24"}, "azure has A's change, whole"
    _assert_nothing_left(mesh)
    # B, planned again, converges the mesh to its mesh.yaml
    _ok(run_wgmesh(checkouts["B"], "apply", "--auto-approve"))
    r = run_wgmesh(checkouts["B"], "plan", "--detailed-exitcode")
    assert r.returncode == 0 and NO_CHANGES in r.stdout, r.stdout + r.stderr


# ----------------------------------------------------------------------------------------- item 5


def test_a_post_up_that_fails_in_wg_quick_up_is_reported_with_what_it_left(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    """gcp's interface down and its forwarding off; its new post_up fails in `wg-quick up`, which deletes the
    interface without running PostDown: the PostUp lines before it (forwarding on, wgmesh's FORWARD rules) stay.
    The result says so from a read after the undo, not that the node is as it was."""
    _ok(_exec(mesh, HOSTILE, "wg-quick", "down", "wg0"))
    _ok(_exec(mesh, HOSTILE, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"))
    mesh.mesh_path.write_text(_add_to_node(original, HOSTILE, '    post_up: "false"\n'))
    try:
        r = run_wgmesh(mesh.dir, "apply", "--auto-approve", "--no-color", timeout=180)
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        line = _results(r.stdout)[HOSTILE]
        assert "this apply's steps were undone; read again, the node still differs from before the apply (" in line
        assert "forwarding" in line.rpartition("(")[2], line
        assert _ok(_exec(mesh, HOSTILE, "sysctl", "-n", "net.ipv4.ip_forward")).strip() == "1"  # as it says
    finally:
        mesh.mesh_path.write_text(original)
        _converge(run_wgmesh, mesh)


# the controller killed (SIGKILL) at the moment it would confirm a node's verified change
_KILLED_AT_CONFIRM = """
import os, signal
from wgmesh.commands import converge
converge._confirm = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
from wgmesh.cli.entry import run
run()
"""


def test_a_change_left_unconfirmed_by_a_killed_controller_is_planned_and_confirmed(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    """A controller killed between gcp's verified change and its confirmation: gcp would undo the change by
    itself. plan shows that as a change (before, it said "No changes" until the node reverted), and the next
    apply confirms it over its own connection, so the change outlives the first run's revert timer."""
    mesh.mesh_path.write_text(_add_to_node(original, HOSTILE, "    mtu: 1380\n"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")} | {"NO_COLOR": "1"}
        killed = subprocess.run([sys.executable, "-c", _KILLED_AT_CONFIRM, "apply", "--auto-approve",
                                 "--confirm-timeout", "20", "-t", HOSTILE], cwd=mesh.dir, env=env,
                                capture_output=True, text=True, timeout=120)
        reverts_at = time.monotonic() + 20
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
        assert _mtu(mesh, HOSTILE) == 1380  # changed, awaiting its confirmation
        plan = _plan(run_wgmesh, mesh)
        assert plan.returncode == 2 and re.search(r"~ pending apply [a-z0-9]+", plan.stdout), plan.stdout
        assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout, plan.stdout
        applied = run_wgmesh(mesh.dir, "apply", "--auto-approve", "--no-color")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert _results(applied.stdout)[HOSTILE].startswith("changed (confirmed the pending apply "), applied.stdout
        time.sleep(max(0.0, reverts_at - time.monotonic()) + 3)
        assert _mtu(mesh, HOSTILE) == 1380, "the first run's revert timer undid a confirmed change"
        assert _plan(run_wgmesh, mesh).returncode == 0
        _assert_nothing_left(mesh)
    finally:
        mesh.mesh_path.write_text(original)
        _converge(run_wgmesh, mesh)


def test_ctrl_c_during_apply_lets_the_started_node_finish_and_starts_no_other(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    """SIGINT (Ctrl-C) while aws is being applied, one node at a time: as Terraform, apply says so, aws finishes
    (verified and confirmed), azure and gcp are not started and are reported so, exit 1; their change is still in
    the next plan, and nothing of a run is left on any node."""
    slow = original
    for name in NAMES:
        slow = _add_to_node(slow, name, '    post_up: ["sleep 3"]\n')
    mesh.mesh_path.write_text(slow)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WGMESH_")} | {"NO_COLOR": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "wgmesh", "apply", "--auto-approve", "--parallelism", "1"],
                                cwd=mesh.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # the signal goes to this process only
        deadline = time.monotonic() + 60
        while not re.search(r"wgmesh-wg0\.[a-z0-9]+\.prev", _ok(_exec(mesh, "aws", "ls", "-A", "/run/wireguard"))):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # aws is being changed (its run's files are there), its hook sleeps
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert "Interrupt received: the nodes being applied finish" in out, out
        results = _results(out)
        assert results["aws"].startswith("changed"), out
        assert results["azure"] == results["gcp"] == (
            "failed (not applied: the apply was interrupted (Ctrl-C) before it started this node)"), out
        assert "apply was interrupted: azure, gcp not applied; run wgmesh apply again to apply them." in err, err
        plan = _plan(run_wgmesh, mesh)
        assert plan.returncode == 2 and "# node aws" not in plan.stdout, plan.stdout
        assert "# node azure" in plan.stdout and "# node gcp" in plan.stdout, plan.stdout
        _assert_nothing_left(mesh)
    finally:
        mesh.mesh_path.write_text(original)
        _converge(run_wgmesh, mesh)


def test_a_hook_that_blocks_ssh_is_reverted_by_the_node(
    mesh: labmod.Lab, original: str, run_wgmesh: WgmeshRunner
) -> None:
    """gcp's new post_up drops TCP 22 in its namespace (its post_down removes the rule): the change locks the
    controller out, so the node reverts it by itself; apply says so within --confirm-timeout + 30 s, and gcp
    is reachable again, on its previous config, with the change still pending."""
    rule = "INPUT -p tcp --dport 22 -j DROP"
    hooked = _add_to_node(original, HOSTILE, f'    post_up: ["iptables -I {rule}"]\n'
                                             f'    post_down: ["iptables -D {rule}"]\n')
    before = _conf_sha(mesh, HOSTILE)
    mesh.mesh_path.write_text(hooked)
    started = time.monotonic()
    r = run_wgmesh(mesh.dir, "apply", "--auto-approve", "--confirm-timeout", "20", timeout=180)
    took = time.monotonic() - started
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert took < 20 + 30, (took, out)
    results = _results(r.stdout)
    assert results[HOSTILE].startswith("failed (reverted: the controller could not reach it after the change"), out
    assert results["aws"] == "unchanged" and results["azure"] == "unchanged", out
    assert f"apply failed on 1 node(s): {HOSTILE}" in r.stderr
    # reachable again, on its previous config, the rule gone
    assert _conf_sha(mesh, HOSTILE) == before
    assert "dport 22" not in _ok(_exec(mesh, HOSTILE, "iptables", "-S", "INPUT"))
    plan = _plan(run_wgmesh, mesh)
    assert plan.returncode == 2, plan.stdout + plan.stderr  # the change is still pending, nothing unreachable
    assert f"# node {HOSTILE}" in plan.stdout and "iptables -I INPUT -p tcp --dport 22 -j DROP" in plan.stdout
    assert "# node aws" not in plan.stdout and "Error" not in plan.stderr
    _assert_nothing_left(mesh)
