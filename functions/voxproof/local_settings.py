"""The settings a local ``voxproof mark`` or ``verify`` reads, without importing pydantic.

Reading ``Settings`` costs about 0.25 s of imports (pydantic-settings): as much as a whole mark.
When the environment sets no ``VOXPROOF_*`` variable every setting is its default, and
``LocalSettings.from_env`` returns the ones a local (non-AWS) service reads; otherwise it
returns None and the caller reads ``Settings`` (which parses and checks the variables).
``settings.py`` takes its state folder from ``default_state_dir`` here; a test holds every other
field equal to ``Settings()``'s.

Example:
    >>> s = LocalSettings.from_env({"XDG_STATE_HOME": "/tmp/xdg"})
    >>> s.key_file
    PosixPath('/tmp/xdg/voxproof/watermark.key')
    >>> LocalSettings.from_env({"VOXPROOF_STATE_DIR": "/tmp/vx"}) is None
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "VOXPROOF_"
KEY_FILE_NAME = "watermark.key"
"""The default watermark key file in the state folder (``Settings`` and ``LocalSettings``)."""
CREDENTIALS_DIR_NAME = "c2pa"
"""The local C2PA signing identity's folder in the state folder."""


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/voxproof``, else ``~/.local/state/voxproof``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "voxproof"


def ensure_state_dir(state_dir: Path) -> Path:
    """Create ``state_dir`` (mode 0700) if missing, make it 0700 if not, and return it."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    return state_dir


@dataclass(frozen=True)
class LocalSettings:
    """``Settings``'s defaults for what ``runtime.build_service`` reads without AWS clients."""

    state_dir: Path
    max_text_chars_sync: int = 1_000
    decode_in_worker: bool = True
    decode_worker_memory_mb: int = 512
    decode_worker_cpu_s: int = 30
    c2pa_trust_own_ca: bool = True
    c2pa_trust_anchors: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalSettings | None:
        """The defaults, or None when any ``VOXPROOF_*`` variable is set (read ``Settings``)."""
        environ = os.environ if environ is None else environ
        if any(name.upper().startswith(ENV_PREFIX) for name in environ):
            return None
        return cls(state_dir=default_state_dir(environ))

    @property
    def key_file(self) -> Path:
        return self.state_dir / KEY_FILE_NAME

    @property
    def credentials_dir(self) -> Path:
        return self.state_dir / CREDENTIALS_DIR_NAME

    def ensure_state_dir(self) -> Path:
        """Create the state folder (mode 0700) if missing and return it."""
        return ensure_state_dir(self.state_dir)
