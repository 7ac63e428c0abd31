"""Expected failures: each carries the exit status and a one-line message that says what to do.

`transient` says whether retrying the same call may succeed (the I/O tasks' retry policy reads
it): only a store that did not answer, or a lock another writer held, is worth a retry.
"""


class RetrainError(Exception):
    """An expected failure of a stage; `str(err)` is the one line a person reads."""

    exit_code = 1
    transient = False


class BadInput(RetrainError):
    """Bad usage or an unreadable input file (exit 2)."""

    exit_code = 2


class StageFailed(RetrainError):
    """A stage ran and failed (exit 1): batch quarantined, deploy rolled back, lock not obtained,
    a statement the database refused."""


class StoreUnreachable(RetrainError):
    """The database or tracking server could not be reached (exit 1); retried."""

    transient = True


class StoreMisconfigured(StoreUnreachable):
    """The store refused the connection as configured (bad credentials, unknown database, a
    SQLite file that cannot be opened): retrying cannot help, the URL must change (exit 1)."""

    transient = False


class StoreBusy(RetrainError):
    """Another transaction held a lock (lock wait timeout, deadlock, SQLite busy): transient,
    retried (exit 1 once the retries are spent)."""

    transient = True


class SchemaChanged(RetrainError):
    """The dataset's tables were created for other columns or types than the schema now names
    (exit 1, not retried: the tables or the dataset name must change)."""


class Cancelled(StageFailed):
    """The command was cancelled (SIGTERM from a Prefect UI cancel, or Ctrl-C); exit 1."""

    def __init__(self, how: str) -> None:
        super().__init__(
            f"cancelled ({how}): the running stage stopped; a tuning study in progress is marked "
            "KILLED and registers no version"
        )
