"""What every command shares: parsers generated from the config dataclasses (jsonargparse), logging, and
one error exit.

* Options come from a config dataclass (:meth:`jsonargparse.ArgumentParser.add_class_arguments`): each has one
  default and one help text, the dataclass's ``Attributes:`` docstring; ``--config FILE`` reads them from YAML.
* Any failure is one line on stderr, ``<command>: error: <message>``, and exit status 2 (130 when
  interrupted); set ``EXPPORTRAIT_TRACEBACK=1`` to see the traceback instead.
* Logging is set here, by the command, never by library code.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import TypeVar

from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter, Namespace

T = TypeVar("T")
TRACEBACK_ENV = "EXPPORTRAIT_TRACEBACK"
# warnings of third-party code that a user cannot act on
QUIET_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)", r".*Sparse CSR tensor support is in beta",
                  r".*does not have many workers", r".*The number of training batches")


class CommandError(Exception):
    """A failure whose message is all the user needs (no traceback)."""


class _HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help, with the command's description printed as written (examples keep their lines)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))


def make_parser(prog: str, description: str | None = None, config_file: bool = True) -> ArgumentParser:
    """An :class:`ArgumentParser` that raises instead of exiting on a bad option (see :func:`run_command`)."""
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False, formatter_class=_HelpFormatter)
    if config_file:
        parser.add_argument("--config", action=ActionConfigFile, help="read options from a YAML file")
    return parser


def instantiate_config(parser: ArgumentParser, args: Namespace, cls: type[T], nested_key: str | None = None) -> T:
    """The config dataclass ``cls`` of parsed ``args`` (options added with ``add_class_arguments(cls, nested_key)``;
    nested dataclasses are built too)."""
    init = parser.instantiate(args)
    if nested_key is not None:
        return init[nested_key]
    return cls(**{f.name: init[f.name] for f in fields(cls)})


def configure_logging(verbose: bool = False) -> None:
    """INFO messages of the library on stderr; third-party banners and warnings a user cannot act on hidden."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def error_message(err: BaseException) -> str:
    """The one-line message of a failure, as every command prints it after ``<command>: error:`` (the type's name
    leads, unless the error is one a user causes: a bad option, value, file or missing package)."""
    message = " ".join(str(err).split()) or type(err).__name__
    if not isinstance(err, (CommandError, ValueError, OSError, ImportError)) and \
            not type(err).__name__.endswith("ArgumentError"):
        message = f"{type(err).__name__}: {message}"
    return message


def run_command(prog: str, main: Callable[[Sequence[str] | None], int | None],
                argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` as command ``prog``: logging set up, every error one line and exit status 2."""
    configure_logging()
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as done:  # --help, or argparse's own exit
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    except Exception as err:  # noqa: BLE001 - the one place every failure becomes a one-line message
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"{prog}: error: {error_message(err)}", file=sys.stderr)
        return 2


__all__ = ["CommandError", "configure_logging", "error_message", "instantiate_config", "make_parser", "run_command"]
