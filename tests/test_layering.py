"""DESIGN §2 layering: kms ← models ← web, workers; web and workers never import
each other; only kms/cli.py (the composition root) imports web/ and workers/;
only kms/crypto/ touches cryptography.hazmat."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kms", "models", "workers", "web")

FORBIDDEN: dict[str, set[str]] = {
    "kms": {"models", "workers", "web", "aiohttp", "dramatiq", "sqlmodel", "sqlalchemy", "alembic", "redis"},
    "models": {"workers", "web", "aiohttp", "dramatiq"},
    "workers": {"web", "aiohttp"},
    "web": {"workers"},
}
#: The composition root may import anything.
EXEMPT = {"kms/cli.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def source_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_layering(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel in EXEMPT:
        return
    package = rel.split("/")[0]
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN[package])
    assert not bad, f"{rel} (package {package}) must not import {bad}"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_kms_crypto_touches_primitives(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    if rel.startswith("kms/crypto/"):
        return
    assert not [m for m in imported_modules(path) if m.startswith("cryptography")], rel


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("import workers.engine\nfrom web.app import create_app\n")
    assert {"workers.engine", "web.app"} <= imported_modules(bad)
