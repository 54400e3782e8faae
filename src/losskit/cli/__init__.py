"""The ``losskit`` command: ``losskit demo``, ``plot``, ``eval``, ``calibrate`` (typer + rich, the [cli] extra).

Conventions every command keeps: ``--help`` with examples; ``--json`` where there is a table;
errors as one line on stderr (``losskit: error: ...``) with exit code 2, including a missing
package of the extra (the message names ``pip install 'losskit[cli]'``); files written to a
temporary name and renamed when complete. Set ``LOSSKIT_TRACEBACK=1`` to see the traceback of
an error instead of its one line.

A command is a module here with a ``register(app)`` function, listed in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

from ._common import EXTRA_HINT, CLIError

#: the modules of the commands, each with ``register(app)``
COMMANDS = ("demo", "plot", "eval", "calibrate")

PROG = "losskit"


def _error(message: str) -> int:
    one_line = " ".join(str(message).split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return 2


def build_app():
    """The typer application with every command of :data:`COMMANDS` registered."""
    import typer

    app = typer.Typer(name=PROG, no_args_is_help=True, add_completion=False,
                      rich_markup_mode="markdown", pretty_exceptions_enable=False,
                      help="losskit: loss functions and output heads with analytic gradients.\n\n"
                           "Run `losskit COMMAND --help` for a command's options and examples.")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(app)
    return app


def _click_message(error: Exception) -> str:
    """A usage error's message; a bad value names its flag first, ``--seed: Input should be ...``
    (the ``name: what is wrong`` form of every losskit error), not ``Invalid value for ...``."""
    import typer

    message = error.format_message()
    param = getattr(error, "param", None)
    if (isinstance(error, typer.BadParameter) and param is not None and error.message
            and type(error).__name__ != "MissingParameter"):
        flags = [opt for opt in param.opts if opt.startswith("--")]
        # an argument: its name as the help shows it (PATH), as in "Missing argument"
        name = flags[0] if flags else (param.metavar or param.name).rstrip(".")
        message = f"{name}: {error.message}"
    # typer's coercion prefixes pydantic's wording ("Value error, 'x' is not one of ...")
    return message.replace("Value error, ", "")


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        import rich  # noqa: F401
        import typer
    except ImportError as error:
        return _error(f"the losskit command needs {error.name}, which is not installed: {EXTRA_HINT}")
    debug = os.environ.get("LOSSKIT_TRACEBACK") == "1"
    try:
        command = typer.main.get_command(build_app())
        with warnings.catch_warnings():
            # NumPy's floating-point warnings (an overflow in exp on separable data) are lines on stderr
            # beside the one line an error gets; what overflowed shows in the results (inf, null) or the error
            warnings.simplefilter("ignore", RuntimeWarning)
            result = command.main(args=args, prog_name=PROG, standalone_mode=False)
        if result == 130:  # typer turns Ctrl-C into exit code 130 without a word
            print(f"{PROG}: interrupted", file=sys.stderr)
        return result if isinstance(result, int) else 0
    except (typer.Exit, SystemExit) as done:
        code = getattr(done, "exit_code", getattr(done, "code", 0))
        return code if isinstance(code, int) else 0
    except (typer.Abort, KeyboardInterrupt):
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except CLIError as error:
        if debug:
            raise
        return _error(str(error))
    except Exception as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `losskit`: the help (typer printed it), not an error
            return 0
        if hasattr(error, "format_message") and hasattr(error, "exit_code"):  # click usage errors
            return _error(_click_message(error))
        if debug:
            raise
        return _error(f"{type(error).__name__}: {error}")


__all__ = ["main", "build_app", "COMMANDS", "CLIError"]
