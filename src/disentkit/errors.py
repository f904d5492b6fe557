"""The one exception type whose message is shown to users as is (no traceback, exit status 2)."""


class DisentkitError(Exception):
    """Bad input: the message names what is wrong and what to do about it."""


class TrainingDiverged(DisentkitError):
    """A run's loss or weights went NaN/inf: training stopped, its last finite checkpoint kept."""
