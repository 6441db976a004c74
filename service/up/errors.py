"""Why ``imgcls up`` cannot start; each message says what to do (shown as one line, exit 1)."""


class CannotStart(RuntimeError):
    pass


class FoldersInUse(CannotStart):
    """Another ``imgcls up`` holds one of the folders (two would corrupt the Redis data, and race on the rest)."""


class PortInUse(CannotStart):
    pass


class MissingProgram(CannotStart):
    pass


class PartFailed(CannotStart):
    """A part exited, or was not ready in time, while starting."""
