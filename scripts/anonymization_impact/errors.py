"""Errors that carry one user-facing message: what is wrong, where, and how to fix it."""


class WorkflowInputError(Exception):
    """Bad input (config, dataset files, images): the message names the thing and the fix."""


class ConfigError(WorkflowInputError):
    """The config does not match ``schemas/config.schema.yaml``."""


class DatasetError(WorkflowInputError):
    """A dataset root or one of its files is missing or unreadable."""
