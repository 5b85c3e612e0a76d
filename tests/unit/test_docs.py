"""docs/configuration.md and docs/errors.md against the code they describe, so neither drifts:
every config key of the settings model, and every error code the gateway can answer."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel
from support.config_keys import config_keys

from gateway import errors

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_PLACEHOLDER = re.compile(r"<[^>]*>")


def _rows(path: Path) -> list[list[str]]:
    """The body rows of every Markdown table in `path`, as stripped cells."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|") or re.fullmatch(r"[|\-\s:]+", line):
            continue
        cells = [cell.strip() for cell in _CELL_SPLIT.split(line.strip())[1:-1]]
        if cells[0] not in {"key", "status"}:  # the header rows
            rows.append(cells)
    return rows


def _literal(cell: str) -> str | None:
    """The text of a cell that is one `code span`, else None."""
    match = re.fullmatch(r"`([^`]*)`", cell)
    return match[1] if match else None


def _plain(value: Any) -> Any:
    """A default as YAML would read it back: tuples as lists, mappings with plain values."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


# --- docs/configuration.md ----------------------------------------------------------------


def _documented_keys() -> dict[str, list[str]]:
    keys = {}
    for cells in _rows(DOCS / "configuration.md"):
        path = _literal(cells[0])
        assert path is not None, cells
        keys[_PLACEHOLDER.sub("<>", path)] = cells
    return keys


def test_every_config_key_is_documented_and_no_other() -> None:
    """Each key of the settings model has a row in docs/configuration.md, and each row names
    a key the model has."""
    model = {key.path for key in config_keys()}
    documented = set(_documented_keys())
    assert not model - documented, f"undocumented keys: {sorted(model - documented)}"
    assert not documented - model, f"documented keys the config lacks: {documented - model}"


def test_documented_defaults_are_the_models() -> None:
    """Required keys say `required`, sections `(section)`, and every default written as code
    is the model's default."""
    documented = _documented_keys()
    for key in config_keys():
        default_cell = documented[key.path][2]
        if key.required:
            assert default_cell == "required", key.path
        elif isinstance(key.default, BaseModel):
            assert default_cell == "(section)", key.path
        else:
            literal = _literal(default_cell)
            if literal is not None:
                assert yaml.safe_load(literal) == _plain(key.default), key.path


# --- docs/errors.md -----------------------------------------------------------------------


class Row(NamedTuple):
    status: str
    type: str
    code: str
    param: str
    headers: str


def _error_rows() -> list[Row]:
    return [Row(*cells[:5]) for cells in _rows(DOCS / "errors.md")]


def _error_classes(
    root: type[errors.GatewayError] = errors.GatewayError,
) -> Iterator[type[errors.GatewayError]]:
    yield root
    for child in root.__subclasses__():
        yield from _error_classes(child)


class Raised(NamedTuple):
    """An error class constructed with a literal code (and maybe a literal param)."""

    cls: type[errors.GatewayError]
    code: str
    param: str | None  # "null", a field name, or None when not a literal


def _literal_param(call: ast.Call) -> str | None:
    for keyword in call.keywords:
        if keyword.arg == "param":
            value = keyword.value
            if isinstance(value, ast.Constant):
                return "null" if value.value is None else str(value.value)
            return None
    return "null"


def _raised_codes() -> list[Raised]:
    """Every `SomeError(..., code="...")` in the gateway's source."""
    classes = {cls.__name__: cls for cls in _error_classes()}
    found = []
    for path in (ROOT / "gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            cls = classes.get(node.func.id)
            for keyword in node.keywords:
                code = keyword.value
                if cls and keyword.arg == "code" and isinstance(code, ast.Constant):
                    found.append(Raised(cls, str(code.value), _literal_param(node)))
    return found


def _rows_for(code: str) -> list[Row]:
    return [row for row in _error_rows() if _literal(row.code) == code]


def test_every_error_class_has_its_row() -> None:
    """Each error class's code has a row with the class's status, type and default headers."""
    for cls in _error_classes():
        code = cls.__dict__.get("code")
        if code is None:
            continue
        rows = _rows_for(code)
        assert rows, f"{cls.__name__}: code {code} is not in docs/errors.md"
        for row in rows:
            assert (row.status, _literal(row.type)) == (str(cls.status), cls.type), row
            for header in cls().headers:
                assert header.lower() in row.headers.lower(), (cls.__name__, header)


def test_every_code_the_gateway_raises_has_its_row() -> None:
    """Each code the source passes to an error class is in the table, with that class's status
    and type, and the param it is raised with."""
    raised = _raised_codes()
    assert len({item.code for item in raised}) > 10, "the source scan found too little"
    for item in raised:
        rows = _rows_for(item.code)
        assert rows, f"{item.cls.__name__}(code={item.code!r}) is not in docs/errors.md"
        statuses = {(row.status, _literal(row.type)) for row in rows}
        assert (str(item.cls.status), item.cls.type) in statuses, item
        if item.param is not None:
            params = {_literal(row.param) or row.param for row in rows}
            assert item.param in params, item


def test_every_code_in_the_table_exists() -> None:
    """Each code the table names as code is one the gateway has, not a stale row."""
    known = {item.code for item in _raised_codes()}
    known |= {cls.__dict__["code"] for cls in _error_classes() if cls.__dict__.get("code")}
    documented = {_literal(row.code) for row in _error_rows()} - {None}
    assert documented <= known, documented - known
