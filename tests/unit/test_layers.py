"""The layer rule of the README's layout section, read from the imports of every gateway module:
no module imports one of a higher layer, and every module has its layer.

Layers are given by folder: a module is in the layer of the longest entry that names it or
a folder above it, so a new module takes its folder's layer. A family's `base.py` (its
interface and records) sits at the bottom, whatever its folder's layer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

# Bottom to top. A module may import its own layer and the ones below it.
LAYERS: dict[str, tuple[str, ...]] = {
    "records": ("gateway", "errors", "vocabulary", "store"),
    "settings": ("settings",),
    "rules": (
        "png",
        "multipart",
        "params",
        "image_params",
        "image_inputs",
        "redaction",
        "quota",
        "metrics",
        "cache",
        "uploads",
        "background",
        "tracing",
    ),
    "components": ("auth", "upstream", "admin", "notify", "door", "middleware"),
    "pipeline": ("services", "pipeline", "streaming"),
    "routes": ("routes",),
    # What `config check` prints (settings.report) reads the quota policy: a command's part.
    "top": ("lifespan", "app", "server", "settings.report", "__main__"),
}
NAMES = tuple(LAYERS)
_RANK = {
    ("gateway." + entry if entry != "gateway" else entry): rank
    for rank, entries in enumerate(LAYERS.values())
    for entry in entries
}


def layer_of(module: str) -> int | None:
    """The layer of `module`: a family's base.py is a record; else its longest entry's."""
    if module.endswith(".base"):
        return 0
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        rank = _RANK.get(".".join(parts[:end]))
        if rank is not None:
            return rank
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(GATEWAY.rglob("*.py"))}


def _imported(tree: ast.AST) -> Iterator[str]:
    """Every gateway module `tree` imports, anywhere in it (also inside functions)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from gateway import metrics` imports a module
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in MODULES else node.module


def upward_imports(module: str, source: str) -> list[str]:
    """The imports of `module` (whose text is `source`) that reach a higher layer."""
    rank = layer_of(module)
    assert rank is not None, module
    found = []
    for target in _imported(ast.parse(source)):
        target_rank = layer_of(target) if target in MODULES else None
        if target_rank is not None and target_rank > rank:
            found.append(f"{module} ({NAMES[rank]}) imports {target} ({NAMES[target_rank]})")
    return found


def test_every_module_has_a_layer() -> None:
    """A module lands in a folder or a flat module the table names; every entry is still there."""
    assert [module for module in MODULES if layer_of(module) is None] == []
    named = {name for name in _RANK if name not in MODULES}
    folders = {name for name in named if any(m.startswith(name + ".") for m in MODULES)}
    assert named == folders


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    """Records and the store at the bottom, then settings, rules, components, the pipeline,
    routes, and the composition root on top: nothing imports upward."""
    assert upward_imports(module, MODULES[module].read_text(encoding="utf-8")) == []


def test_an_upward_import_is_caught() -> None:
    """The check itself: the cache importing the auth stack is named as a violation."""
    source = "from gateway.auth.authenticator import Authenticator\n"
    assert upward_imports("gateway.cache", source) == [
        "gateway.cache (rules) imports gateway.auth.authenticator (components)"
    ]
