"""Whose fault a failure is: the command line turns these into one line and an exit status.

- `BadInput` (exit 2): the user asked for something we cannot do; the message says what was
  wrong and how to fix it. `ConfigError` is the bad input of a pass setting (also a ValueError,
  which dataclass validation conventionally raises).
- `ParityError` (exit 1): the export does not match its torch source; the figures are in the message.
- anything else (exit 1) is our bug: one line, the traceback with ONNXFORGE_DEBUG=1.
"""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


class OnnxforgeError(Exception):
    """A failure we expected and can explain in one line; `exit_status` is what the CLI returns."""

    exit_status = EXIT_FAILED


class BadInput(OnnxforgeError):
    """The user asked for something we cannot do; the message says what and how to fix it."""

    exit_status = EXIT_BAD_INPUT


class ConfigError(BadInput, ValueError):
    """A pass or recipe setting is invalid; the message names the field and the values allowed."""


class ParityError(OnnxforgeError):
    """The exported graph does not match its torch source within tolerance."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a supervisor or a CI timeout): unwind like Ctrl-C, leaving nothing half-written."""


_terminations: list[int] = []  # signals received; a library may swallow the Terminated raised for one


def terminate(signum: int, frame: object = None) -> None:
    """A signal handler: record the signal and raise `Terminated`."""
    _terminations.append(signum)
    raise Terminated


def termination_requested() -> bool:
    """Whether a termination signal arrived in this process (even if a library swallowed its exception)."""
    return bool(_terminations)


def missing_extra(error: ImportError, feature: str, extra: str) -> BadInput:
    """The one line for a feature whose optional dependencies (an extra) are not installed."""
    return BadInput(f"{feature} needs the {extra} extra ({error.name} is missing): pip install 'onnxforge[{extra}]'")
