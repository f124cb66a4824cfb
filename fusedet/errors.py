"""Errors fusedet raises for bad input; the CLI prints them as one clear line, never a traceback."""


class FusedetError(Exception):
    """Base class of every error fusedet raises on purpose."""


class InputError(FusedetError, ValueError):
    """Bad user input: a missing, unreadable or inconsistent file or folder (the message names it)."""
