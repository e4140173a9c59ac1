"""What must hold before any model file is handed to Keras: a Keras with every known safe-mode fix, a real model file.

Every model load goes through :func:`batchclf.model.predictor.load_keras_model`
(classifier, detector, a fine-tune's base, the Ray engine's actors, ``train
--model``), and that calls :func:`check_before_load` first.  Nothing here
imports TensorFlow or Keras: a refusal comes before TensorFlow's start-up.
"""

from __future__ import annotations

import re
import zipfile
from importlib import metadata
from pathlib import Path

from batchclf.errors import ModelLoadError, ModelNotFoundError

# The first Keras release with every known fix for ``load_model(..., safe_mode=True)`` running code from a model file:
#   CVE-2025-1550  .keras config.json naming any module/function          fixed 3.9.0
#   CVE-2025-8747  .keras safe-mode bypass (GHSA-c9rc-mg46-23w3)          fixed 3.11.0
#   CVE-2025-9906  .keras config.json calling enable_unsafe_deserialization  fixed 3.11.0
#   CVE-2025-9905  .h5/.hdf5 ignore safe_mode: a Lambda layer runs        fixed 3.11.3
#   CVE-2025-49655 TorchModuleWrapper in a .keras runs code               fixed 3.11.3
#   CVE-2026-1462  TFSMLayer loads an outside SavedModel despite safe_mode  fixed 3.12.1 and 3.13.2 (3.13.0-3.13.1 not)
#   CVE-2026-1669  HDF5 external datasets read host files                 fixed 3.12.1 and 3.13.2
# 3.13.2 is the first version at or above which all of them are fixed; pyproject.toml requires the same.
SAFE_KERAS = (3, 13, 2)
SAFE_KERAS_TEXT = ".".join(map(str, SAFE_KERAS))

KERAS_SUFFIXES = (".keras",)
HDF5_SUFFIXES = (".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
HDF5_SIGNATURE_OFFSETS = (0, 512, 1024, 2048)  # HDF5 allows a user block before the superblock
MAX_MESSAGE = 300  # characters of Keras's own message kept in ours


def installed_keras_version() -> str | None:
    """The installed Keras distribution's version (from its metadata: no import), or None without Keras."""
    try:
        return metadata.version("keras")
    except metadata.PackageNotFoundError:
        return None


def version_key(version: str) -> tuple[int, ...]:
    """``3.13.2`` -> ``(3, 13, 2, 1)``; a pre-release (``3.13.2rc1``, ``3.13.2.dev0``) sorts below its release."""
    match = re.match(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)$", version)
    if not match:
        return (0,)
    release = tuple(int(part or 0) for part in match.groups()[:3])
    rest = match.group(4).lower()
    final = not rest or rest.startswith(("+", ".post", "-post", "post"))
    return (*release, 1 if final else 0)


def require_safe_keras(version: str | None = None) -> None:
    """Refuse, in one line, to load any model with a Keras older than :data:`SAFE_KERAS` (or none at all).

    ``version``: the imported module's ``keras.__version__``, checked again once
    imported (an older copy may shadow the installed one on ``sys.path``);
    by default the installed distribution's, read before anything is imported.
    """
    version = version or installed_keras_version()
    if version is None:
        raise ModelLoadError(f"Keras is not installed; batchclf needs keras>={SAFE_KERAS_TEXT} to load models")
    if version_key(version) < (*SAFE_KERAS, 1):
        raise ModelLoadError(
            f"Keras {version} can run code from a model file despite safe mode (CVE-2025-9905 and others); "
            f"batchclf loads models only with keras>={SAFE_KERAS_TEXT}: pip install 'keras>={SAFE_KERAS_TEXT}'"
        )


def check_model_file(path: Path) -> None:
    """A ``.keras`` zip holding ``config.json``, or an HDF5 ``.h5``/``.hdf5``; anything else is refused by name.

    Keras itself calls a ``.keras`` file that is not a zip "File not found":
    here it is named for what it is, before TensorFlow starts.
    """
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"model file not found: {path}")
    if not path.is_file():
        raise _not_a_model(path, "not a regular file")
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        try:
            with zipfile.ZipFile(path) as archive:
                if "config.json" not in archive.namelist():
                    raise _not_a_model(path, "a zip without config.json")
        except (zipfile.BadZipFile, OSError):
            raise _not_a_model(path, "not a .keras archive, which is a zip") from None
        return
    if suffix in HDF5_SUFFIXES:
        if not _has_hdf5_signature(path):
            raise _not_a_model(path, "not an HDF5 file")
        return
    raise _not_a_model(path, "expected a .keras, .h5 or .hdf5 file")


def _not_a_model(path: Path, why: str) -> ModelLoadError:
    return ModelLoadError(f"cannot load model {path}: not a Keras model file ({why})")


def _has_hdf5_signature(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            for offset in HDF5_SIGNATURE_OFFSETS:
                handle.seek(offset)
                if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                    return True
    except OSError:
        return False
    return False


def check_before_load(path: Path) -> None:
    """Everything decided before Keras sees ``path``: the file is a model file, the Keras is safe."""
    check_model_file(path)
    require_safe_keras()


def load_failure(path: Path, exc: BaseException) -> ModelLoadError:
    """Keras's refusal as one short line: its innermost cause, first sentence, no config.

    Keras nests its causes (``... Exception encountered: ...``) and appends
    whole layer configs (``config={...}``, ``Full object config: {...}``);
    its safe-mode refusal ends by suggesting ``safe_mode=False``, which
    batchclf never passes.  Keep the innermost cause's first sentence and say why.
    """
    text = str(exc).strip()
    cause = text.rsplit("Exception encountered:", 1)[-1].strip()
    first = cause.splitlines()[0].strip() if cause else ""
    for marker in (" config=", " Full object config", " using config"):
        first = first.split(marker, 1)[0]
    end = first.find(". ")
    if 0 < end:
        first = first[: end + 1]
    if len(first) > MAX_MESSAGE:
        first = first[: MAX_MESSAGE - 3] + "..."
    if "safe_mode" in text or "arbitrary code" in text:
        first += " batchclf never runs code from a model file."
    return ModelLoadError(f"cannot load model {path}: {exc.__class__.__name__}: {first}".rstrip(": "))
