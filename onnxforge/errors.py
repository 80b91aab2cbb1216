"""Errors that the command line turns into one clear line and an exit status."""


class BadInput(Exception):
    """The user asked for something we cannot do; the message says what and how to fix it.

    The CLI prints the message as one line on stderr and exits with status 2.
    """
