"""Exception types: one base class so callers can catch everything nudging raises on purpose."""


class NudgingError(Exception):
    """Base class of the errors nudging raises deliberately."""


class ModelLoadError(NudgingError, ValueError):
    """A model or tokenizer could not be found or loaded."""


class InputError(NudgingError, ValueError):
    """A prompt or request the engine cannot serve (empty, too long, malformed)."""


class ConfigError(NudgingError, ValueError):
    """A configuration value out of its documented range."""


class DeviceMemoryError(NudgingError, MemoryError):
    """A request's forward does not fit in the device's memory even alone (the others go on)."""
