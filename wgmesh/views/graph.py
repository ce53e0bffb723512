"""The mesh as a picture: Mermaid (GitHub renders it in comments, issues and job summaries) and Graphviz dot.

Mermaid: a `flowchart LR`; node ids `n0, n1, ...` (mesh.yaml names may hold `.` and `-`, which Mermaid reads
as edges), labels in quotes with the node's name, addresses and subnets; a node behind NAT is a stadium shape
with a dashed border (class `nat`), one not enrolled is grey (class `pending`), one that could not be read is
red (class `down`), as is one whose interface does not exist. A direct pair is a solid line `---`, a relayed
pair a dotted line `-.-` labelled `via R`.
Live: each line is coloured by its handshake (`linkStyle`): green fresh, amber stale, red never or no peer (a side
that was read has no path to the other), grey unknown (neither side could be read).
Everything in a label comes from validated mesh.yaml values or wgmesh's own words.
"""

from __future__ import annotations

from wgmesh.core.graph import Edge, Graph, GraphNode, Health, PathKind

COLORS = {Health.FRESH: "#2da44e", Health.STALE: "#d29922", Health.NEVER: "#cf222e", Health.NO_PEER: "#cf222e",
          Health.UNKNOWN: "#8c959f"}
STATIC_COLOR = "#57606a"
LEGEND = (
    "Solid line: direct; dotted: relayed; dashed box: behind NAT (no endpoint). "
    "Live colours: green handshake under 3 minutes, amber older, red never or no peer, grey unknown."
)


def _lines(n: GraphNode) -> list[str]:
    head = n.name
    notes = []
    if n.nat:
        notes.append("behind NAT")
    if not n.enrolled:
        notes.append("not enrolled")
    if n.reachable is False:  # not read: unreachable, or reached and refused (the error lines say which)
        notes.append("not read")
    elif n.interface is False:
        notes.append("no interface")
    return [head, *([", ".join(notes)] if notes else []), *n.addresses, *n.subnets]


def _color(e: Edge) -> str:
    return COLORS[e.health] if e.health is not None else STATIC_COLOR


def _clean(text: str, banned: str) -> str:
    return "".join(" " if c in banned or not c.isprintable() else c for c in text)


def mermaid(graph: Graph) -> str:
    ids = {n.name: f"n{i}" for i, n in enumerate(graph.nodes)}
    out = ["flowchart LR", f"  %% wgmesh graph: mesh {_clean(graph.mesh, chr(10))} ({graph.interface})"
                              f"{', live' if graph.live else ''}"]
    for n in graph.nodes:
        label = "<br/>".join(_clean(x, '"<>') for x in _lines(n))
        shape = f'(["{label}"])' if n.nat else f'["{label}"]'
        out.append(f"  {ids[n.name]}{shape}")
    styles = []
    for i, e in enumerate(graph.edges):
        link = "-.-" if e.path is not PathKind.DIRECT else "---"
        label = _clean(e.label, '|"<>')
        out.append(f"  {ids[e.a]} {link}{'|' + label + '|' if label else ''} {ids[e.b]}")
        if e.health is not None:  # live: the handshake's colour (static lines keep Mermaid's own)
            width = "2px" if e.health is Health.FRESH else "1.5px"
            styles.append(f"  linkStyle {i} stroke:{_color(e)},stroke-width:{width}")
    out += [
        "  classDef nat stroke-dasharray: 5 5",
        "  classDef pending fill:#f6f8fa,stroke:#8c959f,color:#57606a",
        "  classDef down fill:#ffebe9,stroke:#cf222e",
    ]
    for cls, members in (
        ("nat", [n for n in graph.nodes if n.nat]),
        ("pending", [n for n in graph.nodes if not n.enrolled]),
        ("down", [n for n in graph.nodes if n.down]),
    ):
        if members:
            out.append(f"  class {','.join(ids[n.name] for n in members)} {cls}")
    out += styles
    return "\n".join(out) + "\n"


def _dot_str(text: str) -> str:
    return '"' + _clean(text, "").replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_label(lines: list[str]) -> str:
    """Lines as one dot string, joined by dot's `\\n`."""
    return '"' + "\\n".join(_dot_str(x)[1:-1] for x in lines) + '"'


def dot(graph: Graph) -> str:
    title = f"mesh {graph.mesh} ({graph.interface}){', live' if graph.live else ''}"
    out = [
        f"graph {_dot_str(graph.mesh)} {{",
        f"  graph [rankdir=LR, label={_dot_str(title)}, labelloc=t, fontname=Helvetica];",
        '  node [shape=box, style="rounded", fontname=Helvetica];',
        "  edge [fontname=Helvetica, fontsize=10];",
    ]
    for n in graph.nodes:
        styles = ["rounded"] + (["dashed"] if n.nat else []) + (["filled"] if not n.enrolled or n.down else [])
        attrs = [f"label={_dot_label(_lines(n))}",
                 f'style="{",".join(styles)}"']
        if not n.enrolled:
            attrs.append('fillcolor="#f6f8fa", color="#8c959f"')
        elif n.down:
            attrs.append('fillcolor="#ffebe9", color="#cf222e"')
        out.append(f"  {_dot_str(n.name)} [{', '.join(attrs)}];")
    for e in graph.edges:
        attrs = [f'color="{_color(e)}"']
        if e.path is not PathKind.DIRECT:
            attrs.append("style=dashed")
        if e.label:
            attrs.append(f"label={_dot_str(e.label)}")
        if e.health is Health.FRESH:
            attrs.append("penwidth=2")
        out.append(f"  {_dot_str(e.a)} -- {_dot_str(e.b)} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


FORMATS = {"mermaid": mermaid, "dot": dot}
