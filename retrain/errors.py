"""Expected failures: each carries the exit status and a one-line message that says what to do."""


class RetrainError(Exception):
    """An expected failure of a stage; `str(err)` is the one line a person reads."""

    exit_code = 1


class BadInput(RetrainError):
    """Bad usage or an unreadable input file (exit 2)."""

    exit_code = 2


class StageFailed(RetrainError):
    """A stage ran and failed (exit 1): batch quarantined, deploy rolled back, lock not obtained."""


class StoreUnreachable(RetrainError):
    """The database or tracking server could not be reached (exit 1)."""
