"""The one exception type a user ever sees as a message instead of a traceback."""


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and what to do.

    The front ends (tasks.py, the action) print it as one line and exit non-zero.
    """

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        # Extra lines (a compiler's last output, say) printed before the one-line message.
        self.detail = detail

    def __str__(self) -> str:
        return " ".join(str(self.args[0]).split())
