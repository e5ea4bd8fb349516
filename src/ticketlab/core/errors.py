"""The one exception type that the CLI turns into a one-line error and exit code 2."""


class TicketlabError(Exception):
    """A problem with the user's input or environment: the message names it and the fix."""
