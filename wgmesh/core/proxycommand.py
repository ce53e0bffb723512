"""`ssh.proxy_command`: the grammar of OpenSSH's ProxyCommand tokens, and their expansion. Pure.

A proxy command is a shell command run on the controller (as OpenSSH runs `ProxyCommand`: `sh -c 'exec CMD'`)
whose standard input and output carry the SSH connection: `aws ssm start-session --target i-0abc
--document-name AWS-StartSSHSession --parameters portNumber=%p`, `gcloud compute start-iap-tunnel %h %p
--listen-on-stdin --zone europe-west1-b`, `cloudflared access ssh --hostname %h`.

Tokens: `%h` the node's ssh.host, `%p` its ssh.port, `%r` its ssh.user, `%%` a literal `%`. Any other `%x`
is refused when mesh.yaml is loaded. Each substituted value is shell-quoted, so a value can never become
shell syntax; the rest of the command is written by the mesh repo and reviewed like code.
"""

from __future__ import annotations

import shlex

TOKENS = {"h": "the node's ssh.host", "p": "its ssh.port", "r": "its ssh.user", "%": "a literal %"}
MAX_LENGTH = 4096
_HINT = "use %h (host), %p (port), %r (user), or %% for a literal %"


def parse_proxy_command(text: str) -> str:
    """A proxy command as written in mesh.yaml; raises ValueError saying what to write instead."""
    if not text.strip():
        raise ValueError("empty: write the command that connects to the node, e.g. `nc %h %p`")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"longer than {MAX_LENGTH} characters: put the command in a script and run that")
    if "\0" in text:
        raise ValueError("contains a NUL character: remove it")
    if "\n" in text or "\r" in text:
        raise ValueError("must be one line: join the command into one line (or run a script)")
    i = 0
    while i < len(text):
        if text[i] == "%":
            token = text[i + 1 : i + 2]
            if not token:
                raise ValueError(f"a lone % at the end: {_HINT}")
            if token not in TOKENS:
                shown = token if token.isprintable() and not token.isspace() else repr(token)
                raise ValueError(f"unknown token %{shown}: {_HINT}")
            i += 2
        else:
            i += 1
    return text


def expand_proxy_command(template: str, *, host: str, port: int, user: str) -> str:
    """The command with its tokens replaced; each value shell-quoted (`%%` becomes `%`)."""
    values = {"h": shlex.quote(host), "p": shlex.quote(str(port)), "r": shlex.quote(user), "%": "%"}
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template) and template[i + 1] in values:
            out.append(values[template[i + 1]])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)
