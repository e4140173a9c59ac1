"""One named exception per failure a user can cause.

The CLI turns any ``BatchclfError`` into a single ``Error: ...`` line on
stderr and a non-zero exit code; everything else is a bug and may traceback.
"""


class BatchclfError(Exception):
    """Base class: a failure the user can fix (bad path, bad file, bad flag)."""

    exit_code = 1


class ModelNotFoundError(BatchclfError):
    """The model file does not exist."""


class ModelLoadError(BatchclfError):
    """The model file exists but cannot be loaded safely."""


class DataFileError(BatchclfError):
    """A training/evaluation data file is missing, unreadable or corrupt."""


class DataShapeError(DataFileError):
    """A data file was read but its arrays have the wrong shape, dtype or labels."""


class DataDownloadError(DataFileError):
    """The default Keras download of MNIST failed (usually: offline)."""


class UnknownArchitectureError(BatchclfError):
    """``--arch`` names an architecture we do not have."""


class DeviceError(BatchclfError):
    """``--device gpu`` asked for a GPU that TensorFlow does not see."""


class ImageDecodeError(BatchclfError):
    """One input image cannot be decoded; reported as a ``failed`` row, never fatal."""


class InboxLockedError(BatchclfError):
    """Another daemon already watches this inbox."""


class JobNotFoundError(BatchclfError):
    """A job folder or its report files do not exist."""


class JobCorruptError(BatchclfError):
    """A job folder's report files exist but are half-written or damaged."""


class InputPathError(BatchclfError):
    """A path given to ``classify`` does not exist."""


class OutputPathError(BatchclfError):
    """The jobs folder (``--out``) cannot be created or written: a file, read-only, full."""


class EmptyInputError(BatchclfError):
    """The given paths hold nothing to classify, or no labelled image to evaluate."""


class FailedRowsError(BatchclfError):
    """``classify --strict``: the job ran, but some rows failed."""

    exit_code = 3


class WatchFolderError(BatchclfError):
    """The daemon's inbox is missing or not a folder, or its ``--out`` cannot hold the journal."""


class SettingsError(BatchclfError):
    """A config file or a ``BATCHCLF_*`` variable is unreadable, names no setting, or holds a bad value."""


class JournalInboxError(BatchclfError):
    """A daemon's ``--out`` already holds the journal of another inbox."""


class EngineUnavailableError(BatchclfError):
    """The chosen engine's optional dependency is not installed."""


class UnknownEngineError(BatchclfError):
    """``--engine`` names an engine we do not have."""


class ExportError(BatchclfError):
    """A report file cannot be written (missing extra, unwritable place)."""


class SinceError(BatchclfError):
    """``--since`` is neither a duration nor a date."""


class ServiceError(BatchclfError):
    """A unit cannot be rendered or installed as asked (no executable, unknown user, a changed unit)."""
