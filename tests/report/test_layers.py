"""kd_lightning/report/ in two layers (issue 30): analysis returns data and imports no rendering module; no module
names a distilling method; the import graph stays shallow and every function short."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from kd_lightning import methods, report

ROOT = Path(report.__file__).parent
MODULES = {p.stem: ast.parse(p.read_text()) for p in ROOT.glob("*.py")}


def _imports(tree: ast.Module) -> set[str]:
    """The report modules a module imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "kd_lightning.report":
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kd_lightning.report."):
            found.add(node.module.split(".")[2])
    return found


GRAPH = {name: _imports(tree) - {name} for name, tree in MODULES.items()}


@functools.cache
def floor(name: str) -> int:
    """1 for a module importing no other report module; else one above the highest it imports."""
    return 1 + max((floor(m) for m in GRAPH[name]), default=0)


def test_every_module_is_in_one_layer():
    assert set(report.ANALYSIS).isdisjoint(report.RENDERING)
    assert set(MODULES) - {"__init__"} == set(report.ANALYSIS) | set(report.RENDERING)


def test_analysis_imports_no_rendering_module():
    assert {m: GRAPH[m] & set(report.RENDERING) for m in report.ANALYSIS} == {m: set() for m in report.ANALYSIS}


def test_no_module_names_a_distilling_method():
    """Students come from the records and conf/method/; the paper's from paper.yaml."""
    students = set(methods.distilling_methods())
    named = {
        (name, node.value)
        for name, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in students
    }
    assert not named


def test_the_graph_is_shallow_and_functions_short():
    """Three floors: the bases import no report module, the analyses and the renderers import only bases (what one
    needs of another comes in as an argument), the writer and the other composers stand on those; the command
    line one floor above the writer."""
    deep = {m: floor(m) for m in GRAPH if m not in ("__init__", "__main__", "cli") and floor(m) > 3}
    assert not deep and floor("cli") <= 4, deep
    lengths = {
        f"{name}.{node.name}": node.end_lineno - node.lineno + 1
        for name, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
    }
    assert max(lengths.values()) <= 60, sorted(lengths.items(), key=lambda kv: -kv[1])[:3]
