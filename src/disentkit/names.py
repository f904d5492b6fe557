"""Splitting specs whose parts may carry parentheses: ``dsprites_procedural:corr(posX,posY,0.2)`` (a dataset and
its variants, split at ``:``) and lists of such specs (split at ``,``). Light: the CLI uses it for ``--help``."""

from __future__ import annotations


def split_outside_parens(text: str, sep: str) -> list[str]:
    """``text`` split at every ``sep`` that is not inside parentheses, each part stripped.

    Example:

        >>> from disentkit.names import split_outside_parens
        >>> split_outside_parens("a, b:corr(x,y,0.2)", ",")
        ['a', 'b:corr(x,y,0.2)']
        >>> split_outside_parens("b:corr(x,y,0.2):holes(x>0.5)", ":")
        ['b', 'corr(x,y,0.2)', 'holes(x>0.5)']
    """
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]
