"""Typer's option values without pydantic at run time, for the plain types wgmesh's options use.

typer (0.2x) converts every non-flag option value through a pydantic TypeAdapter, built on first use: pydantic's
import and the adapters cost ~80 ms, more than the rest of a `wgmesh validate`. `install()` puts a plain
converter in front of typer's own for the value shapes whose result is certain: a `bool`; a `str`; digits for
an `int`; digits with an optional fraction for a `float`; a string that is already a normal path for a
`pathlib.Path` (then typer's own path checks); a list of strings. The bounds (`min=`, `max=`) are checked the
same way. Anything else (a value out of bounds, `1_000`, ` 10`, `1e3`, a type not listed) goes to typer's
pydantic converter, unchanged: the same results and the same error messages, pydantic imported only then.

typer's internals change between versions: if the hook is not where this expects it, nothing is patched and
typer works as it does without this module (slower, never different).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NO = object()  # "not certain: ask typer"
_installed = False


def _bounded(info: Any, value: Any) -> Any:
    lo, hi = info.min, info.max
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return _NO  # typer clamps or words the error
    return value


def _int(info: Any) -> Callable[[Any], Any]:
    def conv(value: Any) -> Any:
        if type(value) is int:
            return _bounded(info, value)
        if type(value) is str and value.isascii() and value.isdigit():
            return _bounded(info, int(value))
        return _NO

    return conv


def _float(info: Any) -> Callable[[Any], Any]:
    def conv(value: Any) -> Any:
        if type(value) is float:
            return _bounded(info, value)
        if type(value) is str and value.isascii():
            whole, _, frac = value.partition(".")
            if whole.isdigit() and (not frac or frac.isdigit()):
                return _bounded(info, float(value))
        return _NO

    return conv


def _bool(info: Any) -> Callable[[Any], Any]:
    return lambda value: value if type(value) is bool else _NO


def _str(info: Any) -> Callable[[Any], Any]:
    return lambda value: value if type(value) is str else _NO


def _str_list(info: Any) -> Callable[[Any], Any]:
    def conv(value: Any) -> Any:
        if isinstance(value, (list, tuple)) and all(type(v) is str for v in value):
            return list(value)
        return _NO

    return conv


def _converter(descriptor: Any) -> Callable[..., Any] | None:
    """A certain converter for this parameter's annotation, or None (typer's own then)."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or getattr(info, "parser", None) is not None:
        return None
    if getattr(info, "clamp", False):
        return None
    ann = descriptor.annotation
    if ann is int:
        return _int(info)
    if ann is float:
        return _float(info)
    if ann is str:
        return _str(info)
    if ann is bool:  # a flag: typer asks for the converter even when the value is None (no conversion then)
        return _bool(info)
    if ann == list[str]:
        return _str_list(info)
    if ann is Path and getattr(info, "path_type", None) in (None, Path):
        return "path"  # type: ignore[return-value]  # needs param and ctx: see _Plain
    return None


def install() -> None:
    """Put the plain converter in front of typer's (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    try:
        from typer import _coercion, _param_types
        from typer import core as typer_core
    except ImportError:
        return
    original = getattr(typer_core, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    coerce_path = getattr(_param_types, "coerce_cli_path", None)
    if original is None or base is None or coerce_path is None:
        return

    @dataclass(frozen=True)
    class _Plain(base):  # type: ignore[misc, valid-type]
        descriptor: Any = None
        convert: Any = None

        def _slow(self) -> Any:
            slow = self.__dict__.get("_slow_param")
            if slow is None:
                slow = original(self.descriptor)
                object.__setattr__(self, "_slow_param", slow)
            return slow

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.convert == "path":
                if type(value) is str and str(Path(value)) == value:  # else typer's messages quote the raw text
                    return coerce_path(Path(value), self.parameter_info, path_type=Path, param=param, ctx=ctx)
                got = _NO
            else:
                got = self.convert(value)
            if got is _NO:
                return self._slow()._coerce_value(value, param=param, ctx=ctx)
            return got

    def build_runtime_param(descriptor: Any) -> Any:
        try:
            convert = _converter(descriptor)
        except Exception:  # a descriptor this does not understand: typer's own
            convert = None
        if convert is None:
            return original(descriptor)
        return _Plain(
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation,
            descriptor=descriptor, convert=convert,
        )

    typer_core.build_runtime_param = build_runtime_param
