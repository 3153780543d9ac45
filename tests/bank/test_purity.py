"""bank/ knows batteries, never Home Assistant, and never reads the clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    *sorted((ROOT / "custom_components/rack_battery/bank").rglob("*.py")),
    ROOT / "simulator/faults.py",
    ROOT / "simulator/bank.py",
]
CLOCKS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "sleep"}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_home_assistant_and_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            assert not name.startswith("homeassistant"), f"{path}: imports {name}"
            assert name not in {"time", "asyncio"}, f"{path}: imports {name}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in CLOCKS, f"{path}:{node.lineno}: calls .{node.func.attr}()"
