"""A griffe extension for the API reference: the reST markup of the docstrings, as Markdown.

The docstrings are Google style (``Args:``, ``Returns:``, ...) but cross-reference and write
maths with reST roles and directives, which Markdown does not know. Before mkdocstrings renders
a docstring this extension rewrites

* ``.. math::`` blocks as ``$$ ... $$`` display maths (one per paragraph of the block) and ``:math:`x``` as ``$x$`` inline maths
  (``pymdownx.arithmatex`` passes both to MathJax untouched, so ``_`` and ``*`` stay maths);
* ``:class:`~pkg.mod.Name``` and the other Python roles as a code span, ``Name`` (with ``~``) or
  ``pkg.mod.Name`` (without), as Sphinx would display them;
* a paragraph ending in ``::`` (reST's "literal block follows") as one ending in ``:``.

Loaded by ``mkdocs.yml`` (``extensions: [docs/_ext/rst_markup.py]``); the code is not changed.
"""
from __future__ import annotations

import re
from typing import Any, List

import griffe

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_PY_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
_LITERAL_INTRO = re.compile(r"(\S)::$")


def _py_role(match: re.Match) -> str:
    """A Python cross-reference role as the code span Sphinx would display."""
    short, target = match.group(1), match.group(2).lstrip(".")
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _math_blocks(lines: List[str]) -> List[str]:
    """Each ``.. math::`` directive with its indented body as a ``$$`` block at the same indent."""
    out: List[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].lstrip()
        if not stripped.startswith(".. math::"):
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: len(lines[i]) - len(stripped)]
        body = [stripped[len(".. math::"):].strip()] if stripped[len(".. math::"):].strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            body.append(lines[i].strip())
            i += 1
        for block in "\n".join(body).split("\n\n"):  # one display per paragraph of the directive
            if block.strip():
                out += [f"{indent}$$", *(f"{indent}{line}" for line in block.strip().splitlines()), f"{indent}$$", ""]
        out.pop()
        if i < len(lines) and lines[i].strip():
            out.append("")
    return out


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its reST roles and directives rewritten as Markdown."""
    lines = _math_blocks(text.splitlines())
    text = "\n".join(_LITERAL_INTRO.sub(r"\1:", line) for line in lines)
    return _PY_ROLE.sub(_py_role, _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", text))


class RstMarkup(griffe.Extension):
    """Rewrites every loaded docstring with :func:`rst_to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, once, when griffe has loaded it."""
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
