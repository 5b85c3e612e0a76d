"""The layer rule of the README's layout section, read from the imports of every gateway module:
no module imports one of a higher layer, and every module has its layer."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

# Bottom to top. A module may import its own layer and the ones below it.
LAYERS: dict[str, tuple[str, ...]] = {
    "records": (
        "gateway",
        "gateway.auth",
        "gateway.routes",
        "gateway.store",
        "gateway.upstream",
        "gateway.errors",
        "gateway.config_types",
        "gateway.vocabulary",
        "gateway.tuning",
        "gateway.auth.identity",
        "gateway.upstream.base",
        "gateway.store.base",
        "gateway.store.client",
        "gateway.store.urls",
    ),
    "config": (
        "gateway.settings",
        "gateway.environment",
        "gateway.redis_settings",
        "gateway.auth.identity_settings",
    ),
    "rules": (
        "gateway.png",
        "gateway.multipart",
        "gateway.params",
        "gateway.policy",
        "gateway.quota",
        "gateway.usage",
        "gateway.redaction",
        "gateway.metrics",
        "gateway.cache",
        "gateway.ledger",
        "gateway.admin_records",
    ),
    "components": (
        "gateway.auth.authenticator",
        "gateway.auth.oidc",
        "gateway.auth.jwks",
        "gateway.auth.proxy_headers",
        "gateway.upstream.client",
        "gateway.upstream.variations",
        "gateway.upstream.edits",
        "gateway.upstream.transport",
        "gateway.upstream.sandbox",
        "gateway.upstream.variation_art",
        "gateway.upstream.imaging",
        "gateway.upstream.hosting",
        "gateway.store.connect",
        "gateway.store.memory",
        "gateway.store.redis",
        "gateway.store.topology",
        "gateway.admission",
        "gateway.budget",
        "gateway.capacity",
        "gateway.background",
        "gateway.admin_store",
        "gateway.admin_state",
        "gateway.admin_ops",
        "gateway.admin_cli",
        "gateway.middleware",
        "gateway.protocol",
        "gateway.preflight",
        "gateway.config_report",
    ),
    "pipeline": ("gateway.container", "gateway.pipeline"),
    "routes": (
        "gateway.routes.door",
        "gateway.routes.variations",
        "gateway.routes.quotas",
        "gateway.routes.admin",
        "gateway.routes.console",
        "gateway.routes.ops",
    ),
    "top": ("gateway.services", "gateway.app", "gateway.__main__"),
}
LAYER_OF = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}
NAMES = tuple(LAYERS)


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
    rank = LAYER_OF[module]
    return [
        f"{module} ({NAMES[rank]}) imports {target} ({NAMES[LAYER_OF[target]]})"
        for target in _imported(ast.parse(source))
        if target in LAYER_OF and LAYER_OF[target] > rank
    ]


def test_every_module_has_a_layer() -> None:
    """A new module is placed in a layer before it lands; the table names no module that is gone."""
    assert set(MODULES) == set(LAYER_OF)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    """Records and the store's interfaces at the bottom, then config, rules, components, the
    pipeline, routes, and the composition root on top: nothing imports upward."""
    assert upward_imports(module, MODULES[module].read_text(encoding="utf-8")) == []


def test_an_upward_import_is_caught() -> None:
    """The check itself: the cache importing the auth stack is named as a violation."""
    source = "from gateway.auth.authenticator import Authenticator\n"
    assert upward_imports("gateway.cache", source) == [
        "gateway.cache (rules) imports gateway.auth.authenticator (components)"
    ]
