"""The command-line parsers as sphinx-argparse renders them.

sphinx-argparse reads help texts as reStructuredText, while the parsers write them as
plain text for ``--help``; the characters that mean markup there (``*``, backquotes,
``|``) are escaped here so that ``phenotype/*.tsv`` stays what it says.
"""

from __future__ import annotations

import argparse
import re

_MARKUP = re.compile(r"([*`|_\\])")


def _escaped(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = _MARKUP.sub(r"\\\1", action.help)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _escaped(sub)
    if parser.description:
        parser.description = _MARKUP.sub(r"\\\1", parser.description)
    return parser


def bgs_app_parser() -> argparse.ArgumentParser:
    """``bgs_app``'s parser (:func:`bgs_app.cli.parser.get_parser`), help escaped."""
    from bgs_app.cli.parser import get_parser

    return _escaped(get_parser())


def bgs_simulate_parser() -> argparse.ArgumentParser:
    """``bgs-simulate``'s parser (:func:`bgs_app.simulate.cli.get_parser`), help escaped."""
    from bgs_app.simulate.cli import get_parser

    return _escaped(get_parser())
