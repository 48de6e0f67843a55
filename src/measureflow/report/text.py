r"""Text of the report and the terminal: math segments, one-line summaries.

Claims carry math as LaTeX between dollar signs, e.g. ``"KL decays like $e^{-2 m t}$"`` (a
literal dollar is ``\$``). The HTML report renders each segment as MathML (:func:`to_html`, with
the pure-Python ``latex2mathml`` at report time: no script, no CDN, works offline); the terminal
shows :func:`plain`, the same text with the LaTeX commands replaced by Unicode (``\beta`` -> β,
``\le`` -> ≤, ``x^{-2t}`` -> ``x^(-2t)``), readable as it is.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["measured_vs_predicted", "one_line", "plain", "split_math", "to_html"]

# LaTeX commands of the notation the claims use, as the Unicode text the terminal shows.
_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
    "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ",
    "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "varphi": "φ", "chi": "χ",
    "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ",
    "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈",
    "sim": "~", "propto": "∝", "to": "→", "rightarrow": "→", "mapsto": "↦", "infty": "∞",
    "in": "∈", "notin": "∉", "subset": "⊂", "times": "×", "cdot": "·", "pm": "±", "mp": "∓",
    "sum": "Σ", "prod": "Π", "int": "∫", "iint": "∬", "partial": "∂", "nabla": "∇",
    "|": "‖", "Vert": "‖", "lVert": "‖", "rVert": "‖", "vert": "|", "mid": "|",
    "langle": "⟨", "rangle": "⟩", "ell": "ℓ", "circ": "∘", "star": "*", "ast": "*",
    "log": "log", "exp": "exp", "sin": "sin", "cos": "cos", "tanh": "tanh", "min": "min",
    "max": "max", "sup": "sup", "inf": "inf", "arg": "arg", "det": "det", "lim": "lim",
    "{": "{", "}": "}", "%": "%", "_": "_", "$": "$", "&": "&", "#": "#",
    ",": " ", ";": " ", ":": " ", "!": "", " ": " ", "quad": "  ", "qquad": "  ",
    "left": "", "right": "", "big": "", "Big": "", "bigl": "", "bigr": "", "Bigl": "",
    "Bigr": "", "displaystyle": "", "limits": "",
}
# Commands whose one argument is shown as it is (fonts and text).
_KEEP_ARGUMENT = {"mathrm", "mathbf", "mathit", "mathcal", "mathbb", "mathsf", "text",
                  "textrm", "operatorname", "boldsymbol", "hat", "bar", "tilde", "widehat",
                  "overline"}
_MATH = re.compile(r"(?<!\\)\$(.+?)(?<!\\)\$", re.DOTALL)


def split_math(text: str) -> list[tuple[bool, str]]:
    r"""``text`` as ``(is_math, segment)`` pairs; math segments lie between unescaped ``$``.

    >>> split_math(r"rate $2m$ costs \$1")
    [(False, 'rate '), (True, '2m'), (False, ' costs $1')]
    """
    parts: list[tuple[bool, str]] = []
    position = 0
    for match in _MATH.finditer(text):
        if match.start() > position:
            parts.append((False, text[position:match.start()].replace(r"\$", "$")))
        parts.append((True, match.group(1)))
        position = match.end()
    if position < len(text):
        parts.append((False, text[position:].replace(r"\$", "$")))
    return parts


def _group(source: str, start: int) -> tuple[str, int]:
    """The argument at ``source[start:]``: a ``{...}`` group (braces balanced) or one token."""
    while start < len(source) and source[start] == " ":
        start += 1
    if start >= len(source):
        return "", start
    if source[start] == "{":
        depth = 0
        for index in range(start, len(source)):
            depth += {"{": 1, "}": -1}.get(source[index], 0)
            if depth == 0:
                return source[start + 1:index], index + 1
        return source[start + 1:], len(source)
    if source[start] == "\\":
        match = re.match(r"\\([A-Za-z]+|.)", source[start:])
        if match is not None:
            return match.group(0), start + match.end()
    return source[start], start + 1


def _wrapped(text: str, product: bool = False) -> str:
    """``text`` in parentheses where it holds a space or an operator (``n^(-1/2)``, ``(a + b)/c``)
    or, with ``product``, more than one character (``2M``); not if bracketed already."""
    bracketed = len(text) > 1 and (text[0] + text[-1]) in ("()", "[]")
    if len(text) == 1:  # a lone symbol, an operator included, reads as it is: f^*, D^*
        return text
    compound = any(c in text for c in " +-*/,=<>") or (product and len(text) > 1)
    return f"({text})" if compound and not bracketed else text


def _plain_math(source: str) -> str:
    """One LaTeX math segment as Unicode text (a small subset: the notation of the claims)."""
    out: list[str] = []
    index = 0
    while index < len(source):
        char = source[index]
        if char == "\\":
            match = re.match(r"\\([A-Za-z]+|.)", source[index:])
            name = match.group(1) if match else ""
            index += match.end() if match else 1
            if name == "frac":
                numerator, index = _group(source, index)
                denominator, index = _group(source, index)
                below = _plain_math(denominator)
                # A product below the bar needs brackets too (n/(2M)), a differential not (d/dt).
                below = below if below.startswith("d") else _wrapped(below, product=True)
                out.append(f"{_wrapped(_plain_math(numerator))}/{below}")
            elif name == "sqrt":
                argument, index = _group(source, index)
                out.append(f"√{_wrapped(_plain_math(argument))}")
            elif name in _KEEP_ARGUMENT:
                argument, index = _group(source, index)
                out.append(_plain_math(argument))
            else:
                out.append(_SYMBOLS.get(name, name))
        elif char in "^_":
            argument, index = _group(source, index + 1)
            out.append(char + _wrapped(_plain_math(argument)))
        elif char in "{}":
            index += 1
        elif char == "~":
            out.append(" ")
            index += 1
        else:
            out.append(char)
            index += 1
    return re.sub(" {2,}", " ", "".join(out))


def plain(text: Any) -> str:
    r"""``text`` with its ``$...$`` math as readable Unicode, for the terminal and tooltips.

    >>> plain(r"KL $\le e^{-2t} \mathrm{KL}_0$ for $\beta = \frac{1}{2}$")
    'KL ≤ e^(-2t) KL_0 for β = 1/2'
    """
    return "".join(_plain_math(segment) if is_math else segment
                   for is_math, segment in split_math(str(text)))


def to_html(text: Any) -> str:
    r"""``text`` as HTML: plain segments escaped, ``$...$`` segments as inline MathML.

    A segment ``latex2mathml`` cannot parse is shown as its :func:`plain` text instead, so a
    typo in a claim never breaks the report.

    >>> to_html("a < b")
    'a &lt; b'
    >>> to_html(r"$\beta$").startswith("<math")
    True
    """
    from latex2mathml.converter import convert  # report time only: not needed to import

    parts = []
    for is_math, segment in split_math(str(text)):
        if not is_math:
            parts.append(html.escape(segment, quote=True))
            continue
        try:
            mathml = convert(segment)
        except Exception:  # a malformed segment: show it as text rather than fail the page
            parts.append(f'<span class="math">{html.escape(_plain_math(segment))}</span>')
        else:
            # The plain text rides along for copy-paste and for readers without MathML.
            parts.append(mathml.replace("<math ", f'<math alttext="{html.escape(segment)}" ', 1))
    return "".join(parts)


def one_line(text: Any) -> str:
    """``text`` on one line: math as plain text, runs of whitespace as one space.

    >>> one_line("two\\n  lines")
    'two lines'
    """
    return " ".join(plain(text).split())


def measured_vs_predicted(measured: Any, predicted: Any) -> str:
    """A one-line "measured vs predicted": the first clause (up to ``; ``) of each.

    The full statements stay in the result file and the report's section; this line is for
    tables that give it one row, cut further with an ellipsis by the table.

    >>> measured_vs_predicted("TV = 0.013; more", "TV <= 0.021 (floor x 1.5)")
    'TV = 0.013 | predicted TV <= 0.021 (floor x 1.5)'
    """
    first_measured = one_line(measured).split("; ")[0]
    first_predicted = one_line(predicted).split("; ")[0]
    if not first_predicted:
        return first_measured
    return f"{first_measured} | predicted {first_predicted}"
