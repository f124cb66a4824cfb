"""Errors raised by the dmnet package (which knows nothing of fusedet)."""


class DMNetError(Exception):
    """Base class of the errors dmnet raises on purpose (bad checkpoint, bad configuration, ...)."""
