"""The one error type the plugin raises for bad input."""


class PruneError(Exception):
    """A problem the user can fix; the message names the problem and the fix.

    Tools catch it and print ``error: <message>`` on one line instead of a
    traceback.
    """
