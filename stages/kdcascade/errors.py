"""One exception type for bad input, so stage scripts can print a single clear line and exit."""


class ConfigError(ValueError):
    """A parameter, file or line that is not what the pipeline expects.

    The message names the parameter, file (and line where there is one) and what was expected.
    """


class Diverged(ConfigError):
    """Training reached a non-finite loss or weight: the params (lr, precision) do not train.

    A ConfigError, so the stage ends with its one line and exit status 2, saving nothing.
    """
