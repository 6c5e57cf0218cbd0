"""The layout keeps its promises: plugins answer for themselves, modules say what they hold."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("opsconsole", "alerts", "backups", "deployments", "dr", "demo")
# Each registry, and the package where its kinds may be named.
REGISTRIES = {
    "backups.engines:ENGINES": "backups/engines",
    "backups.storages:STORAGE_KINDS": "backups/storages",
    "alerts.channels:CHANNEL_KINDS": "alerts/channels",
    "alerts.sources:SOURCE_KINDS": "alerts/sources",
    "deployments.providers:PROVIDERS": "deployments/providers",
    "dr.checks:CHECK_KINDS": "dr/checks",
    "dr.failover:ACTION_KINDS": "dr/failover",
}


def product_files():
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/" not in rel and "/management/commands/demo" not in rel:
                yield rel, ast.parse(path.read_text(), filename=rel)


def registry(spec):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("spec", sorted(REGISTRIES))
def test_no_code_outside_a_registry_asks_which_kind_it_has(spec, db):
    home = REGISTRIES[spec]
    kinds = set(registry(spec))
    classes = {cls.__name__ for cls in registry(spec).values()}
    found = []
    for rel, tree in product_files():
        if rel.startswith(home):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node.args[1]) if isinstance(n, ast.Attribute)}
                if names & classes:
                    found.append(f"{rel}:{node.lineno} isinstance on {names & classes}")
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                attrs = {getattr(s, "attr", "") for s in sides}
                values = {s.value for s in sides if isinstance(s, ast.Constant)}
                if attrs & {"kind", "engine", "provider"} and values & kinds:
                    found.append(f"{rel}:{node.lineno} compares a kind with {values & kinds}")
    assert not found, "\n".join(found)
