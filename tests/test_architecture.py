"""The shape of the code: no import circles, one declaration per option, who prints and plots."""

from __future__ import annotations

import argparse
import ast
import re
from dataclasses import fields
from pathlib import Path

from softmaxlab.cli import build_parser
from softmaxlab.cli.train import OTHER_FLAGS
from softmaxlab.config import TrainConfig, shown_default

SRC = Path(__file__).resolve().parent.parent / "src" / "softmaxlab"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports for type hints only,
    never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """softmaxlab module -> the softmaxlab modules it imports when it runs (at its top or inside
    functions)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")
                    parent = parent[:len(parent) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            # the most specific module each import names (``from . import x`` may name one)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
                    break
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circles():
    graph = import_graph()
    assert graph["softmaxlab.runner"] >= {"softmaxlab.fast", "softmaxlab.train"}  # it sees imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_every_training_option_has_one_flag_and_every_flag_is_known():
    dests = {a.dest for a in train_parser()._actions if a.dest != "help"}
    options = {f.name for f in fields(TrainConfig)}
    assert options - dests == set(), "training options without a flag"
    assert dests - options - set(OTHER_FLAGS) == set(), "flags in neither list"
    assert set(OTHER_FLAGS) <= dests and not options & set(OTHER_FLAGS)


def test_each_flag_shows_its_default_in_the_help():
    actions = {a.dest: a for a in train_parser()._actions}
    for f in fields(TrainConfig):
        assert actions[f.name].help.endswith(f"(default: {shown_default(f)})"), f.name
    for action in actions.values():
        if action.dest != "help":
            assert "(default: " in action.help, action.dest


def test_only_the_cli_and_d2l_print_and_only_plots_imports_matplotlib():
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        name = module_name(path)
        if not name.startswith(("softmaxlab.cli", "softmaxlab.d2l")):
            assert not re.search(r"(?<![\w.])print\(", text), f"{name} prints"
        if name != "softmaxlab.plots":
            assert not re.search(r"^\s*(import|from) matplotlib[.\s]", text, re.MULTILINE), name


def test_the_fast_path_is_the_only_user_of_its_tricks():
    """The tuned kernels and buffers stay in fast.py: no other module reaches into them."""
    for path in SRC.rglob("*.py"):
        if path.name == "fast.py":
            continue
        text = path.read_text()
        for trick in ("ScoreStore", "_reused_batches", "column_major", "LOSSES_T", "addmm_("):
            assert trick not in text, f"{module_name(path)} uses {trick}"


def test_no_pickle_is_ever_loaded():
    """Run folders, data and images are read as safetensors, JSON, IDX and image files: nothing
    that unpickles (a pickle runs code)."""
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        name = module_name(path)
        assert not re.search(r"^\s*(import|from) (pickle|dill|cloudpickle|joblib)\b", text,
                             re.MULTILINE), name
        assert "torch.load(" not in text and "allow_pickle=True" not in text, name
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, f"{name}: {call}"
