"""Problems a user can fix, shown as one line ``error: <message>`` without a traceback.

Exit code 2 for usage errors (bad options, unknown names, invalid values), 1 for everything else (missing
data, files, a server that does not answer), like click's own errors.
"""

from typing import Any

import click


class UserError(click.ClickException):
    """Shown as one line, ``error: <message>`` (exit 1)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class UsageProblem(UserError):
    """Unknown names and invalid values: exit 2, like click's own usage errors."""

    exit_code = 2
