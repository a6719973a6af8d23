"""The shape the consolidation left, checked so that it stays: short functions, a short training
loop, DHMRec's options in plain sight, no hidden channels."""
import ast
import dataclasses
from pathlib import Path

from dhmrec_pyg.models import DHMRecConfig

PACKAGE = Path(__file__).resolve().parents[1] / "dhmrec_pyg"
MAX_FUNCTION_LINES = 80


def _code_lines(node: ast.AST, source: list) -> int:
    """Non-blank, non-comment lines of a function's body, its docstring left out."""
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    lines = {n for stmt in body for n in range(stmt.lineno, stmt.end_lineno + 1)}
    return sum(1 for n in lines if source[n - 1].strip() and not source[n - 1].strip().startswith("#"))


def test_no_function_is_longer_than_80_lines_of_code():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(source))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node, source)
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({n} lines)")
    assert not long, long


def test_the_training_loop_file_is_under_300_lines():
    assert len((PACKAGE / "training" / "trainer.py").read_text().splitlines()) < 300


def test_dhmrec_config_holds_at_most_20_options():
    assert len(dataclasses.fields(DHMRecConfig)) <= 20


def test_no_hidden_channels_or_legacy_tables():
    forbidden = ("fuse_batch_users_only", 'getattr(data, "folder"', "args.argv", "LEGACY_")
    found = [(str(p.relative_to(PACKAGE)), word) for p in PACKAGE.rglob("*.py")
             for word in forbidden if word in p.read_text()]
    assert not found, found
    assert "type: ignore" not in (PACKAGE / "models" / "dhmrec.py").read_text()
