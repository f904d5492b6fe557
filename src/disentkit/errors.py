"""The exception whose message is shown to users as is (no traceback, exit status 2), and its kinds."""


class DisentkitError(Exception):
    """Bad input: the message names what is wrong and what to do about it.

    The command line prints its message alone and exits with status 2; from Python, catch it as any
    exception.

    Example:

        >>> from disentkit.data import get_dataset
        >>> from disentkit.errors import DisentkitError
        >>> try:
        ...     get_dataset("dsprite")
        ... except DisentkitError as e:
        ...     print(str(e).split(";")[0])
        unknown dataset 'dsprite'
    """


class TrainingDiverged(DisentkitError):
    """A run's loss or weights went NaN/inf: training stopped, its last finite checkpoint kept.

    Example:

        >>> from disentkit.errors import DisentkitError, TrainingDiverged
        >>> issubclass(TrainingDiverged, DisentkitError)   # the CLI prints it as one line, exit status 2
        True
    """
