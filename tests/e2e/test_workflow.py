"""The generated workflow, run (issue 15, item 5): every step of `.github/workflows/wgmesh.yml` and of the composite
action it uses (`wgmesh init` writes both), in order, as GitHub's runner runs them, against lab hosts, for a
pull_request, a push and a schedule event.

The runner here is small and strict: bash with GITHUB_ENV, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files;
`${{ ... }}` expressions (contexts github, secrets, vars, steps, inputs; ==, !=, &&, ||, !, always(),
success(), failure()) evaluated from a dict for the event; job and step `if:`; an environment's secrets only for
a job in that environment. `actions/checkout` and `actions/setup-python` are skipped (the repo is already the
working directory, Python is this one); the step "Install wgmesh" is replaced by this venv's `wgmesh` on PATH.
A recording fake `gh` on PATH keeps comments, issues and labels in a JSON file and answers `--jq` with jq.

What is asserted: each job's exit, its summary, the pull request comment (one, found by its marker, updated on
the second push, a look-alike comment from someone else left alone), the drift issue (opened, updated, closed
when the mesh matches again), and from every lab host's sshd log that the plan and drift jobs only ever logged
in with the read-only plan key while the admin key was offered to them too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from e2e import labkit as labmod
from wgmesh import scaffold
from wgmesh.lab import Lab

pytestmark = pytest.mark.e2e

WgmeshRunner = Callable[..., "subprocess.CompletedProcess[str]"]
VENV_BIN = Path(sys.executable).parent
REPOSITORY = "acme/mesh"
PR = 7
MARKER = "<!-- wgmesh-plan -->"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

if shutil.which("jq") is None:
    pytest.skip("the workflow's steps use jq (preinstalled on GitHub's runners): apt-get install jq",
                allow_module_level=True)


# ---------------------------------------------------------------------------------------------- expressions

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+)|(?P<op>==|!=|&&|\|\||!|\(|\)|,)|(?P<id>[A-Za-z_][A-Za-z0-9_.-]*))"
)


class Expression:
    """GitHub's expression language, the part workflows like this one use."""

    def __init__(self, text: str, context: Mapping[str, Any], failed: bool = False) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"cannot read the expression {text!r} at {pos}")
            kind = m.lastgroup
            assert kind is not None
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
            while pos < len(text) and text[pos].isspace():
                pos += 1
        self.i = 0
        self.context = context
        self.failed = failed

    def value(self) -> Any:
        v = self._or()
        if self.i != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.i]}")
        return v

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        self.i += 1
        return self.tokens[self.i - 1]

    def _or(self) -> Any:
        v = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            v = v or right
        return v

    def _and(self) -> Any:
        v = self._cmp()
        while self._peek() == "&&":
            self._take()
            right = self._cmp()
            v = v and right
        return v

    def _cmp(self) -> Any:
        v = self._unary()
        if self._peek() in ("==", "!="):
            op = self._take()[1]
            right = self._unary()
            same = _loose(v) == _loose(right)
            return same if op == "==" else not same
        return v

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not self._unary()
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return int(text)
        if text == "(":
            v = self._or()
            assert self._take()[1] == ")"
            return v
        if kind == "id" and self._peek() == "(":
            self._take()
            assert self._take()[1] == ")", "functions with arguments are not used here"
            return {"always": True, "success": not self.failed, "failure": self.failed, "cancelled": False}[text]
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        v: Any = self.context
        for part in text.split("."):
            v = v.get(part) if isinstance(v, Mapping) else None
        return v


def _loose(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def interpolate(text: str, context: Mapping[str, Any]) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _text(Expression(m.group(1), context).value()), text)


def condition(value: Any, context: Mapping[str, Any], failed: bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    result = Expression(text, context, failed).value()
    return bool(result)


# ---------------------------------------------------------------------------------------------- the fake gh

FAKE_GH = r'''
import json, os, re, subprocess, sys

state_file, log_file = os.environ["FAKE_GH_STATE"], os.environ["FAKE_GH_LOG"]
with open(state_file) as f:
    state = json.load(f)
argv = sys.argv[1:]
entry = {"argv": argv, "token": bool(os.environ.get("GH_TOKEN"))}

def done(result=None, status=0, error=None):
    entry["status"] = status
    if error:
        entry["error"] = error
        sys.stderr.write(f"gh: {error}\n")
    with open(log_file, "a") as f:
        f.write(json.dumps(entry) + "\n")
    with open(state_file, "w") as f:
        json.dump(state, f)
    if status == 0 and result is not None:
        out = json.dumps(result)
        if jq is not None:
            out = subprocess.run(["jq", "-r", jq], input=out, capture_output=True, text=True, check=True).stdout
        else:
            out += "\n"
        sys.stdout.write(out)
    sys.exit(status)

if not argv or argv[0] != "api":
    jq = None
    done(status=1, error=f"only `gh api` is faked, not {argv[:1]}")
method, jq, path, fields = "GET", None, None, {}
args = iter(argv[1:])
for a in args:
    if a in ("-X", "--method"):
        method = next(args)
    elif a in ("-q", "--jq"):
        jq = next(args)
    elif a == "--paginate":
        pass
    elif a in ("-f", "--raw-field", "-F", "--field"):
        key, _, value = next(args).partition("=")
        if a in ("-F", "--field") and value.startswith("@"):
            with open(value[1:]) as f:
                value = f.read()
        if key.endswith("[]"):
            fields.setdefault(key[:-2], []).append(value)
        else:
            fields[key] = value
    elif a.startswith("-"):
        done(status=1, error=f"unknown option {a}")
    else:
        path = a
entry.update(method=method, path=path, fields=fields)
if not os.environ.get("GH_TOKEN"):
    done(status=4, error="set the GH_TOKEN environment variable")

def new_id():
    state["next_id"] += 1
    return state["next_id"]

route, _, query = (path or "").partition("?")
params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
repo = f"repos/{os.environ['FAKE_GH_REPOSITORY']}"
bot = {"login": "github-actions[bot]"}
issues = state["issues"]
if m := re.fullmatch(rf"{repo}/issues/(\d+)/comments", route):
    comments = state["comments"].setdefault(m.group(1), [])
    if method == "GET":
        done(comments)
    if method == "POST":
        c = {"id": new_id(), "user": bot, "body": fields["body"]}
        comments.append(c)
        done(c)
elif m := re.fullmatch(rf"{repo}/issues/comments/(\d+)", route):
    for comments in state["comments"].values():
        for c in comments:
            if c["id"] == int(m.group(1)) and method == "PATCH":
                if c["user"] != bot:
                    done(status=1, error="403: Resource not accessible by integration")
                c["body"] = fields["body"]
                done(c)
    done(status=1, error="404: Not Found")
elif route == f"{repo}/issues" and method == "GET":
    label = params.get("labels")
    done([i for i in issues if i["state"] == params.get("state", "open") and (not label or label in i["labels"])])
elif route == f"{repo}/issues" and method == "POST":
    missing = [x for x in fields.get("labels", []) if x not in state["labels"]]
    if missing:
        done(status=1, error=f"422: label {missing} does not exist")
    i = {"number": new_id(), "title": fields["title"], "labels": fields.get("labels", []), "state": "open",
         "body": fields.get("body", ""), "pull_request": None}
    issues.append(i)
    done(i)
elif (m := re.fullmatch(rf"{repo}/issues/(\d+)", route)) and method == "PATCH":
    for i in issues:
        if i["number"] == int(m.group(1)):
            i.update({k: v for k, v in fields.items() if k in ("body", "state", "state_reason", "title")})
            done(i)
    done(status=1, error="404: Not Found")
elif route == f"{repo}/labels" and method == "POST":
    if fields["name"] in state["labels"]:
        done(status=1, error="422: Validation Failed (already_exists)")
    state["labels"].append(fields["name"])
    done({"name": fields["name"]})
else:
    done(status=1, error=f"no fake for {method} {path}")
'''


@dataclass
class FakeGh:
    directory: Path

    def __post_init__(self) -> None:
        self.bin = self.directory / "bin"
        self.bin.mkdir(parents=True)
        gh = self.bin / "gh"
        gh.write_text(f"#!{sys.executable}\n{FAKE_GH}")
        gh.chmod(0o755)
        self.state_file = self.directory / "state.json"
        self.log_file = self.directory / "calls.jsonl"
        self.state_file.write_text(json.dumps({"comments": {}, "issues": [], "labels": [], "next_id": 100}))

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    def seed(self, **kw: Any) -> None:
        self.state_file.write_text(json.dumps({**self.state, **kw}))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def take_calls(self) -> list[dict[str, Any]]:
        found = self.calls()
        self.log_file.unlink(missing_ok=True)
        return found

    def env(self) -> dict[str, str]:
        return {"FAKE_GH_STATE": str(self.state_file), "FAKE_GH_LOG": str(self.log_file),
                "FAKE_GH_REPOSITORY": REPOSITORY}


# ---------------------------------------------------------------------------------------------- the runner


@dataclass
class StepRun:
    name: str
    status: int | None  # None: skipped or replaced
    note: str = ""
    output: str = ""


@dataclass
class JobRun:
    name: str
    steps: list[StepRun] = field(default_factory=list)
    summary: str = ""
    identities: list[str] = field(default_factory=list)  # the key files' contents, as each step saw them
    key_file_left: bool = False

    @property
    def ok(self) -> bool:
        return all(s.status in (None, 0) for s in self.steps)

    def step(self, name: str) -> StepRun:
        return next(s for s in self.steps if s.name == name)

    def log(self) -> str:
        return "\n".join(f"--- {s.name}: {s.status} {s.note}\n{s.output}" for s in self.steps)


_yaml = YAML(typ="safe")


def _parse_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines and KEY<<DELIMITER blocks, as GITHUB_ENV and GITHUB_OUTPUT hold them."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            block = []
            i += 1
            while lines[i] != delim:
                block.append(lines[i])
                i += 1
            out[key] = "\n".join(block)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
        i += 1
    return out


class Runner:
    """One event of the workflow in `repo`; `secrets` are the repository's, `environments` each environment's."""

    def __init__(self, repo: Path, work: Path, gh: FakeGh, event_name: str, event: dict[str, Any],
                 secrets: dict[str, str], environments: dict[str, dict[str, str]], variables: dict[str, str],
                 sha: str | None = None) -> None:
        self.repo, self.work, self.gh = repo, work, gh
        self.workflow = _yaml.load((repo / scaffold.WORKFLOW_PATH).read_text())
        self.github = {
            "event_name": event_name, "event": event, "repository": REPOSITORY, "token": "ghs_fake_token",
            "sha": sha or _git(repo, "rev-parse", "HEAD"), "ref": "refs/heads/main", "ref_name": "main",
            "run_id": "4242",
        }
        self.secrets, self.environments, self.variables = secrets, environments, variables

    def jobs(self) -> list[str]:
        ctx = {"github": self.github, "vars": self.variables}
        return [name for name, job in self.workflow["jobs"].items() if condition(job.get("if", True), ctx, False)]

    def run(self, name: str) -> JobRun:
        job = self.workflow["jobs"][name]
        secrets = {**self.secrets, **self.environments.get(job.get("environment", ""), {})}
        ctx: dict[str, Any] = {"github": self.github, "secrets": secrets, "vars": self.variables, "steps": {},
                               "inputs": {}}
        run = JobRun(name)
        temp = self.work / f"{name}-runner-temp"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        files = {"GITHUB_ENV": temp / "github_env", "GITHUB_STEP_SUMMARY": temp / "step_summary"}
        base = {
            "PATH": f"{self.gh.bin}:{VENV_BIN}:{SYSTEM_PATH}", "HOME": str(home), "LANG": "C.UTF-8",
            "CI": "true", "GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(self.repo),
            "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_RUN_ID": "4242", "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_SHA": self.github["sha"], "GITHUB_EVENT_NAME": self.github["event_name"],
            **{k: str(v) for k, v in files.items()}, **self.gh.env(),
        }
        job_env: dict[str, str] = {}
        for step in job["steps"]:
            self._step(step, ctx, base, job_env, run, temp)
        run.key_file_left = (temp / "wgmesh_ssh_key").exists()
        return run

    def _failed(self, run: JobRun) -> bool:
        return any(s.status not in (None, 0) for s in run.steps)

    def _step(self, step: dict[str, Any], ctx: dict[str, Any], base: dict[str, str], job_env: dict[str, str],
              run: JobRun, temp: Path, action_dir: Path | None = None) -> None:
        name = step.get("name") or step.get("uses") or step.get("run", "").split("\n")[0]
        if not condition(step.get("if", "success()"), ctx, self._failed(run)):
            run.steps.append(StepRun(name, None, "skipped by its if:"))
            return
        uses = step.get("uses")
        if uses is not None:
            if uses.startswith(("actions/checkout@", "actions/setup-python@")):
                run.steps.append(StepRun(name, None, "skipped: the runner's own setup"))
                return
            assert uses.startswith("./"), f"an action this test cannot run: {uses}"
            directory = self.repo / uses
            action = _yaml.load((directory / "action.yml").read_text())
            assert action["runs"]["using"] == "composite"
            given = {k: interpolate(str(v), ctx) for k, v in (step.get("with") or {}).items()}
            assert set(given) <= set(action["inputs"]), f"unknown inputs {set(given) - set(action['inputs'])}"
            inputs = {k: given.get(k, str(spec.get("default", ""))) for k, spec in action["inputs"].items()}
            for k, spec in action["inputs"].items():
                assert not spec.get("required") or k in given, f"{uses}: required input {k} not given"
            inner = {**ctx, "inputs": inputs}
            for sub in action["runs"]["steps"]:
                self._step(sub, inner, base, job_env, run, temp, directory)
            return
        script = step["run"]
        if name == "Install wgmesh":
            assert 'pip install "$WGMESH_PIP_SPEC"' in script
            run.steps.append(StepRun(name, None, f"replaced by {VENV_BIN / 'wgmesh'}"))
            return
        env = {**base, **job_env}
        env.update({k: interpolate(str(v), ctx) for k, v in (step.get("env") or {}).items()})
        if action_dir is not None:
            env["GITHUB_ACTION_PATH"] = str(action_dir)
        output = temp / "github_output"
        output.write_text("")
        env["GITHUB_OUTPUT"] = str(output)
        script_file = temp / "step.sh"
        script_file.write_text(interpolate(script, ctx))
        shell = step.get("shell")
        argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail"] if shell == "bash" else ["bash", "-e"]
        done = subprocess.run([*argv, str(script_file)], cwd=self.repo, env=env, capture_output=True, text=True,
                              timeout=900)
        run.steps.append(StepRun(name, done.returncode, output=done.stdout + done.stderr))
        if "id" in step:
            ctx["steps"][step["id"]] = {"outputs": _parse_env_file(output)}
        job_env.update(_parse_env_file(Path(base["GITHUB_ENV"])))
        identity = job_env.get("WGMESH_SSH_IDENTITY")
        if identity and Path(identity).exists():
            run.identities.append(Path(identity).read_text())
        summary = Path(base["GITHUB_STEP_SUMMARY"])
        if summary.exists():
            run.summary += summary.read_text()
            summary.unlink()


# ---------------------------------------------------------------------------------------------- the lab, the repo


def _fingerprint(public_key_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key_file)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


@dataclass
class World:
    lab: Lab
    gh: FakeGh
    work: Path
    plan_key: Path
    admin_fp: str
    plan_fp: str
    secrets: dict[str, str]
    environments: dict[str, dict[str, str]]
    offsets: dict[str, int] = field(default_factory=dict)

    def runner(self, event_name: str, event: dict[str, Any], sha: str | None = None) -> Runner:
        """The event for the commit `sha` (default: the repo's newest)."""
        return Runner(self.lab.dir, self.work, self.gh, event_name, event, self.secrets, self.environments,
                      {"WGMESH_PIP_SPEC": "git+https://github.com/acme/wgmesh@v0.1.0"}, sha)

    def _logs(self) -> dict[str, Path]:
        lab = labmod.load(self.lab.dir)
        return {h.name: lab.host_dir(h) / "sshd.log" for h in lab.hosts}

    def mark_logs(self) -> None:
        self.offsets = {name: (p.stat().st_size if p.exists() else 0) for name, p in self._logs().items()}

    def logins(self) -> list[str]:
        """The key fingerprint of every login accepted on any host since mark_logs()."""
        found = []
        for name, path in self._logs().items():
            with path.open("rb") as f:
                f.seek(self.offsets.get(name, 0))
                text = f.read().decode(errors="replace")
            found += re.findall(r"Accepted publickey for \S+ from \S+ port \d+ ssh2: \S+ (SHA256:\S+)", text)
        return found


@pytest.fixture(scope="module")
def world(lab: Callable[..., Lab], run_wgmesh: WgmeshRunner, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    made = lab()  # cloud-like: aws, azure, gcp, aliyun (NAT), a sudo user
    # the repo: the lab's mesh.yaml and known_hosts, and what `wgmesh init` writes under .github
    for path, text in scaffold.starter_files(made.dir).items():
        if ".github" in path.parts:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    r = run_wgmesh(made.dir, "apply", "--auto-approve", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path_factory.mktemp("workflow")
    # a git repo with its remote, as actions/checkout leaves one (the apply job compares its commit with main's)
    _git(made.dir, "init", "-q", "-b", "main")
    _git(made.dir, "add", "mesh.yaml", ".github")
    _git(made.dir, "commit", "-q", "-m", "the mesh")
    _git(work, "init", "-q", "--bare", "origin.git")
    _git(made.dir, "remote", "add", "origin", str(work / "origin.git"))
    _git(made.dir, "push", "-q", "origin", "main")
    plan_key = work / "plan_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f", str(plan_key)], check=True)
    r = run_wgmesh(made.dir, "plan-key", str(plan_key.with_suffix(".pub")))
    assert r.returncode == 0, r.stdout + r.stderr
    admin = made.identity_file.read_text()
    w = World(
        made, FakeGh(work / "gh"), work, plan_key,
        admin_fp=_fingerprint(made.identity_file.with_suffix(".pub")),
        plan_fp=_fingerprint(plan_key.with_suffix(".pub")),
        # the admin key is offered to every job too, as if someone had made it a repository secret: the plan
        # and drift jobs must not touch it
        secrets={"WGMESH_PLAN_SSH_KEY": plan_key.read_text(), "WGMESH_SSH_KEY": admin},
        environments={"wgmesh-apply": {"WGMESH_SSH_KEY": admin}},
    )
    try:
        yield w
    finally:
        run_wgmesh(made.dir, "plan-key", "--remove", str(plan_key.with_suffix(".pub")))
        with_text = Path("/etc/sudoers.d/wgmesh-plan")
        if with_text.exists() and f"plan key of {made.ssh_user} " in with_text.read_text():
            with_text.unlink()


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args], cwd=repo,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _pull_request_event(sha: str) -> dict[str, Any]:
    return {"action": "synchronize", "number": PR,
            "pull_request": {"number": PR, "head": {"sha": sha, "repo": {"full_name": REPOSITORY}}}}


def _only_plan_key(w: World, run: JobRun) -> None:
    assert run.identities and {i.strip() for i in run.identities} == {w.plan_key.read_text().strip()}
    logins = w.logins()
    assert logins, "the job logged in nowhere"
    assert set(logins) == {w.plan_fp}, f"logins other than the plan key's: {set(logins) - {w.plan_fp}}"
    assert not run.key_file_left


def _edit(lab: Lab, old: str, new: str) -> None:
    text = lab.mesh_path.read_text()
    assert old in text
    lab.mesh_path.write_text(text.replace(old, new, 1))


# ---------------------------------------------------------------------------------------------- the events


def test_pull_request_plans_with_the_plan_key_and_keeps_one_comment(world: World) -> None:
    w = world
    _edit(w.lab, "persistent_keepalive: 25", "persistent_keepalive: 21")  # the pull request's change
    w.gh.seed(comments={str(PR): [{"id": 1, "user": {"login": "mallory"}, "body": f"{MARKER}\nlooks fine, merge"}]})
    runner = w.runner("pull_request", _pull_request_event("a" * 40))
    assert runner.jobs() == ["plan"]

    w.mark_logs()
    run = runner.run("plan")
    assert run.ok, run.log()
    assert [s.name for s in run.steps if s.status is not None] == [
        "SSH key", "Validate", "Plan", "Comment on the pull request", "Result", "Remove SSH key"]
    _only_plan_key(w, run)

    comments = w.gh.state["comments"][str(PR)]
    assert comments[0]["body"] == f"{MARKER}\nlooks fine, merge"  # someone else's look-alike: untouched
    ours = [c for c in comments if c["user"]["login"] == "github-actions[bot]"]
    assert len(ours) == 1
    body = ours[0]["body"]
    assert body.startswith(f"{MARKER}\n### wgmesh plan: Plan: 0 to add, ")
    assert "Commit aaaaaaaaaaaa" in body and "/acme/mesh/actions/runs/4242" in body
    assert "```mermaid\nflowchart LR\n" in body and "aliyun<br/>behind NAT" in body
    assert "<pre>\n" in body and "persistent_keepalive" in body and "-&gt; 21" in body
    assert "Made with the read-only plan key" in body
    assert run.summary.count(MARKER) == 1 and "persistent_keepalive" in run.summary
    calls = w.gh.take_calls()
    assert [(c["method"], c["path"]) for c in calls] == [
        ("GET", f"repos/{REPOSITORY}/issues/{PR}/comments"), ("POST", f"repos/{REPOSITORY}/issues/{PR}/comments")]
    assert all(c["token"] and c["status"] == 0 for c in calls)
    assert calls[1]["fields"]["body"] == body

    # a second push: the same comment, updated
    w.mark_logs()
    run = w.runner("pull_request", _pull_request_event("b" * 40)).run("plan")
    assert run.ok, run.log()
    _only_plan_key(w, run)
    calls = w.gh.take_calls()
    assert [(c["method"], c["path"]) for c in calls] == [
        ("GET", f"repos/{REPOSITORY}/issues/{PR}/comments"),
        ("PATCH", f"repos/{REPOSITORY}/issues/comments/{ours[0]['id']}")]
    ours = [c for c in w.gh.state["comments"][str(PR)] if c["user"]["login"] == "github-actions[bot]"]
    assert len(ours) == 1 and "Commit bbbbbbbbbbbb" in ours[0]["body"]


def test_a_failing_plan_still_comments_and_fails_the_job(world: World) -> None:
    w = world
    text = w.lab.mesh_path.read_text()
    try:
        _edit(w.lab, f"host: {w.lab.host('gcp').ip}", "host: 10.250.254.254")  # nobody there
        run = w.runner("pull_request", _pull_request_event("c" * 40)).run("plan")
    finally:
        w.lab.mesh_path.write_text(text)
    assert not run.ok and run.step("Result").status == 1 and run.step("Remove SSH key").status == 0
    body = next(c for c in w.gh.state["comments"][str(PR)] if c["user"]["login"] == "github-actions[bot]")["body"]
    assert "### wgmesh plan: the plan failed (exit status 1)" in body and "node gcp" in body
    w.gh.take_calls()


def test_push_applies_with_the_admin_key_and_writes_a_table(world: World, run_wgmesh: WgmeshRunner) -> None:
    w = world
    runner = w.runner("push", {"ref": "refs/heads/main"})
    assert runner.jobs() == ["apply"]
    w.mark_logs()
    run = runner.run("apply")
    assert run.ok, run.log()
    assert {i.strip() for i in run.identities} == {w.lab.identity_file.read_text().strip()}
    assert w.plan_fp not in w.logins() and w.admin_fp in w.logins()
    assert not run.key_file_left
    summary = run.summary
    assert "### wgmesh apply complete: 0 added, " in summary
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| node")]
    nodes = {row.split("|")[1].strip(): row for row in rows}
    assert set(nodes) == {"aws", "azure", "gcp", "aliyun"}
    assert "| changed |" in nodes["aliyun"] and re.search(r"\| \+0 ~[1-9]\d* -0 \|", nodes["aliyun"])
    assert "| unchanged |" in nodes["aws"]
    assert "```mermaid\nflowchart LR\n" in summary and "linkStyle" in summary  # the live picture
    assert w.gh.take_calls() == []
    r = run_wgmesh(w.lab.dir, "plan", "--detailed-exitcode")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_rerun_of_an_older_apply_run_changes_nothing(world: World) -> None:
    """Re-running the apply run of a commit that is no longer main's newest would take the nodes back to it: the
    job stops before any key is installed, naming both commits; the newest commit's run applies."""
    w = world
    old = _git(w.lab.dir, "rev-parse", "HEAD")
    _git(w.lab.dir, "commit", "-q", "--allow-empty", "-m", "a newer commit")
    _git(w.lab.dir, "push", "-q", "origin", "main")
    new = _git(w.lab.dir, "rev-parse", "HEAD")
    w.mark_logs()
    run = w.runner("push", {"ref": "refs/heads/main"}, sha=old).run("apply")
    check = run.step("Newest commit only")
    assert check.status == 1 and f"{old} is no longer the newest commit of main ({new} is)" in check.output, run.log()
    assert not run.identities and not run.key_file_left and w.logins() == []
    again = w.runner("push", {"ref": "refs/heads/main"}).run("apply")
    assert again.ok and again.step("Newest commit only").status == 0, again.log()


def test_schedule_opens_updates_and_closes_one_drift_issue(world: World, run_wgmesh: WgmeshRunner) -> None:
    w = world
    peer = next(line.split(": ", 1)[1] for line in w.lab.mesh_path.read_text().splitlines()
                if "public_key:" in line and line.strip().startswith("public_key"))
    drift = labmod.host_exec(w.lab.dir, "gcp", ["wg", "set", "wg0", "peer", peer.strip(),
                                                 "persistent-keepalive", "9"])
    assert drift.returncode == 0, drift.stderr
    runner = w.runner("schedule", {"schedule": "17 3 * * *"})
    assert runner.jobs() == ["drift"]

    w.mark_logs()
    run = runner.run("drift")
    assert not run.ok and run.step("Result").status == 2, run.log()  # drift fails the run, so someone looks
    assert run.step("Drift issue").status == 0 and run.step("Remove SSH key").status == 0
    _only_plan_key(w, run)
    issues = w.gh.state["issues"]
    assert len(issues) == 1 and issues[0]["labels"] == ["wgmesh-drift"] and issues[0]["state"] == "open"
    assert issues[0]["body"].startswith("### wgmesh: the live mesh differs from mesh.yaml: Plan: 0 to add, ")
    assert "persistent_keepalive" in issues[0]["body"] and "```mermaid" in issues[0]["body"]
    calls = [(c["method"], c["path"].split("?")[0]) for c in w.gh.take_calls()]
    assert calls == [("GET", f"repos/{REPOSITORY}/issues"), ("POST", f"repos/{REPOSITORY}/labels"),
                     ("POST", f"repos/{REPOSITORY}/issues")]

    # still drifted the next night: the same issue, updated
    run = w.runner("schedule", {}).run("drift")
    assert run.step("Result").status == 2
    calls = [(c["method"], c["path"].split("?")[0]) for c in w.gh.take_calls()]
    number = issues[0]["number"]
    assert calls == [("GET", f"repos/{REPOSITORY}/issues"), ("PATCH", f"repos/{REPOSITORY}/issues/{number}")]
    assert len(w.gh.state["issues"]) == 1

    # someone applies; the next night the issue is closed with a comment
    r = run_wgmesh(w.lab.dir, "apply", "--auto-approve", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    w.mark_logs()
    run = w.runner("workflow_dispatch", {}).run("drift")
    assert run.ok, run.log()
    _only_plan_key(w, run)
    assert "### wgmesh: the mesh matches mesh.yaml" in run.summary
    calls = [(c["method"], c["path"].split("?")[0], c["fields"]) for c in w.gh.take_calls()]
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", f"repos/{REPOSITORY}/issues"), ("POST", f"repos/{REPOSITORY}/issues/{number}/comments"),
        ("PATCH", f"repos/{REPOSITORY}/issues/{number}")]
    assert calls[2][2] == {"state": "closed", "state_reason": "completed"}
    assert w.gh.state["issues"][0]["state"] == "closed"


def test_the_runner_reads_expressions_as_github_does() -> None:
    ctx = {"github": {"event_name": "push", "event": {"pull_request": None}, "repository": "a/b"},
           "steps": {"plan": {"outputs": {"exitcode": "2"}}}, "inputs": {"ssh-key": "K"}}
    assert condition("github.event_name == 'push'", ctx, False)
    assert not condition("github.event_name == 'pull_request' && github.repository == 'a/b'", ctx, False)
    assert condition("${{ github.event_name == 'schedule' || github.event_name == 'PUSH' }}", ctx, False)
    assert condition("always()", ctx, True) and not condition("success()", ctx, True)
    assert interpolate("x=${{ steps.plan.outputs.exitcode }} k=${{ inputs.ssh-key }} n=${{ github.nope.x }}",
                       ctx) == "x=2 k=K n="
    env = textwrap.dedent("""\
        A=1
        B<<EOF
        two
        lines
        EOF
        """)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"wgmesh-env-{os.getpid()}"
    path.write_text(env)
    try:
        assert _parse_env_file(path) == {"A": "1", "B": "two\nlines"}
    finally:
        path.unlink()
