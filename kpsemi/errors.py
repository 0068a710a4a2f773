"""The kit's exceptions. The command line shows a `UserError` (and its subclasses) as one `error:` line, not a
traceback; every layer of the package raises them.

    UserError       a problem with what the user gave: a path, an option, a file, a config
    DataError       bad input data: the message names the file, the row/annotation and what is wrong
    TrainingError   training cannot go on (a loss became NaN/inf): the message names the loss and the step
    JobError        cluster jobs of the reproduction grid failed: the message names the cells and their logs
"""


class UserError(ValueError):
    """A problem with what the user gave (a path, an option, a file): shown as one `error:` line by the CLI."""


class DataError(UserError):
    """Bad input data: the message names the file, the row/annotation and what is wrong."""


class TrainingError(RuntimeError):
    """Training stopped: a loss became NaN or infinite (the message names the loss, the step and what to lower)."""


class JobError(UserError):
    """Cells of the reproduction grid failed as cluster jobs: the message names them and their logs (one line)."""
