"""Exceptions raised for bad input, each with a message that names the value and the fix."""


class QuantEvalError(Exception):
    """Base class: the command-line interface prints the message alone, without a traceback."""


class ConfigError(QuantEvalError):
    """A configuration key has an invalid value."""


class InvalidModelError(QuantEvalError):
    """A model file is missing, truncated or of the wrong kind."""


class InvalidDataError(QuantEvalError):
    """A data file (benchmark items, calibration text) is missing or malformed."""


class ToolError(QuantEvalError):
    """A llama.cpp command-line tool is missing or failed."""
