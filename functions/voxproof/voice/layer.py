"""Verify a model layer folder before any weight is read.

Guarantee: ``verify_layer`` returns a ``VerifiedLayer`` only for a folder that holds exactly the
files its manifest lists, each with its listed size and sha256, under a manifest whose own
sha256 is the pinned one, with no symlink and no path leaving the folder. Files the caller
names as ``unread`` (the torch checkpoint, for the ONNX engine) are checked for presence and
size but not hashed, and the ``VerifiedLayer`` refuses to hand out their path: nothing is
opened that was not hashed first. Anything else stops
at the first problem with its own ``LayerError`` subclass naming the file (the checks, in
order: docs/voice.md).

Example:
    >>> layer = verify_layer(Path("layers/model"), manifest_sha256=DEFAULT_MANIFEST_SHA256)  # doctest: +SKIP
    >>> layer.manifest.engine.settings.sample_rate  # doctest: +SKIP
    22050
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from voxproof.errors import (
    CheckpointInvalid,
    LayerDigestMismatch,
    LayerError,
    LayerFileMissing,
    LayerNotFound,
    LayerPathEscape,
    LayerSizeMismatch,
    LayerSymlink,
    LayerUnlistedFile,
    ManifestDigestMismatch,
    ManifestInvalid,
)
from voxproof.voice.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest

BUILD_HINT: Final = "build it with `voxproof layer build` (pip install 'voxproof[build]')"
"""How a missing layer is made; the runtime itself never builds one."""
CHUNK: Final = 1 << 20
"""Bytes read at a time while hashing."""
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class VerifiedLayer:
    """A layer folder whose every byte matched its pinned manifest when it was checked (save the
    ``unread`` files, whose paths it refuses)."""

    root: Path
    """The layer folder."""
    manifest: Manifest
    """Its parsed manifest."""
    manifest_sha256: str
    """sha256 of ``manifest.json``: the layer's identity in provenance records."""
    unread: frozenset[str] = frozenset()
    """Listed files that were not hashed (the caller said it would not read them)."""

    def path(self, name: str) -> Path:
        """The path of a listed, hashed file (``KeyError`` for anything unlisted;
        ``LayerError`` for a file verified as ``unread``)."""
        entry = self.manifest.file(name)
        if entry.path in self.unread:
            raise LayerError(f"{entry.path} was not hashed when the layer was checked")
        return self.root / entry.path

    @property
    def config_path(self) -> Path:
        """The engine's config file."""
        return self.path(self.manifest.engine.settings.config)

    @property
    def checkpoint_path(self) -> Path:
        """The engine's checkpoint."""
        return self.path(self.manifest.engine.settings.checkpoint)

    @property
    def phoneme_id_map_path(self) -> Path:
        """The text frontend's phoneme id map."""
        return self.path(self.manifest.engine.settings.frontend.phoneme_id_map)

    def phoneme_id_map(self) -> dict[str, list[int]]:
        """The text frontend's ``{phoneme: [id, ...]}`` map, checked against the symbol count."""
        settings = self.manifest.engine.settings
        name = settings.frontend.phoneme_id_map
        try:
            data = json.loads(self.phoneme_id_map_path.read_bytes())
        except ValueError:
            raise CheckpointInvalid(f"{name} is not JSON") from None
        if not isinstance(data, dict) or not data or not all(
            isinstance(k, str) and k and isinstance(v, list) and v
            and all(type(i) is int and 0 <= i < settings.num_symbols for i in v)
            for k, v in data.items()
        ):
            raise CheckpointInvalid(f"{name} is not a {{phoneme: [id, ...]}} map within the symbols")
        frontend = settings.frontend
        if not {frontend.pad, frontend.bos, frontend.eos} <= data.keys():
            raise CheckpointInvalid(f"{name} lacks the pad, bos or eos symbol")
        return data


def verify_layer(root: Path, *, manifest_sha256: str,
                 unread: Callable[[Manifest], Iterable[str]] | None = None) -> VerifiedLayer:
    """Check the folder against its manifest and the manifest against ``manifest_sha256``.

    Parameters
    ----------
    root:
        The layer folder.
    manifest_sha256:
        The pinned sha256 of ``manifest.json`` (``Settings.model_manifest_sha256``; for the
        default layer ``pins.DEFAULT_MANIFEST_SHA256``).
    unread:
        Given the pinned manifest, the listed files this process will not open: present at
        their listed size, not hashed (the ONNX engine never reads the torch checkpoint:
        ~70 MB less to hash at every start).

    Raises a ``LayerError`` subclass on the first mismatch; reads no weight before all checks
    that do not need hashing have passed.
    """
    root = Path(root)
    _check_root(root)
    raw = _read_manifest(root)
    manifest = Manifest.from_json(raw)
    if manifest.to_bytes() != raw:
        raise ManifestInvalid(f"{MANIFEST_NAME} is not in canonical form (rewrite it with the builder)")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != manifest_sha256:
        raise ManifestDigestMismatch(
            f"{MANIFEST_NAME} is not the pinned manifest (an edited or different layer)",
            sha256=digest, pinned=manifest_sha256,
        )
    for entry in manifest.files:
        check_relative_path(entry.path)
    skipped = frozenset(unread(manifest)) if unread is not None else frozenset()
    sizes = _walk(root, manifest)
    _check_sizes(manifest, sizes)
    _check_digests(root, manifest, skipped)
    return VerifiedLayer(root=root, manifest=manifest, manifest_sha256=digest,
                         unread=skipped & {entry.path for entry in manifest.files})


# --- steps ------------------------------------------------------------------------------------


def _check_root(root: Path) -> None:
    try:
        info = root.lstat()
    except FileNotFoundError:
        raise LayerNotFound(f"the model layer folder does not exist: {BUILD_HINT}") from None
    if stat.S_ISLNK(info.st_mode):
        raise LayerSymlink("the model layer folder is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise LayerNotFound("the model layer path is not a folder")


def _read_manifest(root: Path) -> bytes:
    try:
        info = (root / MANIFEST_NAME).lstat()
    except FileNotFoundError:
        raise LayerNotFound(f"{MANIFEST_NAME} is missing from the model layer: {BUILD_HINT}") from None
    if stat.S_ISLNK(info.st_mode):
        raise LayerSymlink(f"{MANIFEST_NAME} is a symbolic link", file=MANIFEST_NAME)
    if not stat.S_ISREG(info.st_mode):
        raise ManifestInvalid(f"{MANIFEST_NAME} is not a regular file")
    if info.st_size > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(f"{MANIFEST_NAME} is larger than {MAX_MANIFEST_BYTES} bytes")
    with _open_beneath(root, MANIFEST_NAME) as handle:
        return handle.read(MAX_MANIFEST_BYTES + 1)


def check_relative_path(path: str) -> None:
    """Refuse a listed path that could name something outside the layer folder."""
    shown = path.encode("unicode_escape").decode("ascii")[:200]
    if not path:
        raise LayerPathEscape("a listed path is empty")
    if "\x00" in path or "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise LayerPathEscape(f"listed path {shown!r} holds a NUL, backslash or control character")
    if path.startswith("/"):
        raise LayerPathEscape(f"listed path {shown!r} is absolute")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise LayerPathEscape(f"listed path {shown!r} has an empty, '.' or '..' component")


def _walk(root: Path, manifest: Manifest) -> dict[str, int]:
    """Every regular file under ``root`` -> its size; refuses symlinks and anything unlisted.

    Stops at the first unlisted entry, so it reads at most one entry more than the manifest
    lists, however large the folder.
    """
    listed = {entry.path for entry in manifest.files}
    listed_dirs = {"/".join(p.split("/")[:i]) for p in listed for i in range(1, p.count("/") + 1)}
    sizes: dict[str, int] = {}
    pending = [""]
    while pending:
        prefix = pending.pop()
        with os.scandir(root / prefix if prefix else root) as entries:
            for entry in entries:
                rel = f"{prefix}/{entry.name}" if prefix else entry.name
                if entry.is_symlink():
                    raise LayerSymlink(f"{_show(rel)} is a symbolic link", file=_show(rel))
                if entry.is_dir(follow_symlinks=False):
                    if rel not in listed_dirs:
                        raise LayerUnlistedFile(f"folder {_show(rel)}/ is not in the manifest")
                    pending.append(rel)
                elif rel == MANIFEST_NAME:
                    continue
                elif not entry.is_file(follow_symlinks=False):
                    raise LayerUnlistedFile(f"{_show(rel)} is not a regular file")
                elif rel not in listed:
                    raise LayerUnlistedFile(f"{_show(rel)} is not in the manifest", file=_show(rel))
                else:
                    sizes[rel] = entry.stat(follow_symlinks=False).st_size
    missing = sorted(listed - sizes.keys())
    if missing and not sizes:
        raise LayerFileMissing(
            f"the model layer is not built (only its {MANIFEST_NAME} is here): {BUILD_HINT}",
            file=missing[0],
        )
    if missing:
        raise LayerFileMissing(f"{missing[0]} is listed in the manifest but missing", file=missing[0])
    return sizes


def _check_sizes(manifest: Manifest, sizes: dict[str, int]) -> None:
    for entry in manifest.files:
        if sizes[entry.path] != entry.size:
            raise LayerSizeMismatch(
                f"{entry.path} is {sizes[entry.path]} bytes; the manifest says {entry.size}"
                + (" (truncated)" if sizes[entry.path] < entry.size else ""),
                file=entry.path,
            )


def _check_digests(root: Path, manifest: Manifest, unread: frozenset[str]) -> None:
    for entry in manifest.files:
        if entry.path in unread:
            continue
        digest, size = file_sha256(root, entry.path, limit=entry.size)
        if size != entry.size:
            raise LayerSizeMismatch(f"{entry.path} changed size while it was read", file=entry.path)
        if digest != entry.sha256:
            raise LayerDigestMismatch(
                f"{entry.path}: sha256 differs from the manifest", file=entry.path
            )


# --- files --------------------------------------------------------------------------------------


def file_sha256(root: Path, rel: str, *, limit: int | None = None) -> tuple[str, int]:
    """sha256 and size of ``root/rel``, read in chunks, opened without following any symlink.

    With ``limit``, reads at most ``limit + 1`` bytes (so a grown file shows as a wrong size
    without being read to its end).
    """
    digest = hashlib.sha256()
    size = 0
    with _open_beneath(root, rel) as handle:
        while limit is None or size <= limit:
            want = CHUNK if limit is None else min(CHUNK, limit + 1 - size)
            chunk = handle.read(want)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _open_beneath(root: Path, rel: str):
    """Open ``root/rel`` for reading, refusing a symlink at any component (``O_NOFOLLOW``)."""
    parts = rel.split("/")
    fd = -1
    try:
        fd = os.open(root, _DIR_FLAGS)
        for part in parts[:-1]:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    except FileNotFoundError:
        raise LayerFileMissing(f"{_show(rel)} is missing", file=_show(rel)) from None
    except OSError as err:
        # O_NOFOLLOW on a symlink: ELOOP for the file, ENOTDIR (with O_DIRECTORY) for a folder
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LayerSymlink(
                f"{_show(rel)} is or passes through a symbolic link", file=_show(rel)
            ) from None
        raise LayerError(f"{_show(rel)} cannot be opened", file=_show(rel)) from None
    finally:
        if fd >= 0:
            os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise LayerUnlistedFile(f"{_show(rel)} is not a regular file")
    return os.fdopen(file_fd, "rb", buffering=0)


def _show(rel: str) -> str:
    """A relative name made safe to print (escapes, bounded length)."""
    return rel.encode("unicode_escape").decode("ascii")[:200]
