"""Views: one `View` protocol (views/base.py), a human (rich) and a JSON implementation; the `Environment`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wgmesh.views.base import View
    from wgmesh.views.env import Environment


def make_view(env: Environment, json: bool = False) -> View:
    """The JSON view with --json, else the human one."""
    if json:
        from wgmesh.views.json import JsonView

        return JsonView(env)
    from wgmesh.views.human import HumanView

    return HumanView(env)
