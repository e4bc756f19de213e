"""Where a job's files go: a folder on this machine (or a shared filesystem), or a folder on any
filesystem pyarrow reaches by URI (``s3://``, ``gs://``, ``hdfs://``, ``file://``).

Both offer the few operations a job needs, on paths below the output folder: whether a
file exists, which names in a folder match a pattern, read a small text file, and write
a group of files all or none. Naming stays in `.files`; only where the bytes land
changes. pyarrow is imported only when a URI is used.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path, PurePosixPath

from .files import write_all_atomic


class LocalFiles:
    """Paths on this machine: temporary file and rename, so a file exists complete or not at all."""

    def exists(self, path: Path) -> bool:
        return Path(path).exists()

    def glob(self, directory: Path, pattern: str) -> list[str]:
        return [p.name for p in Path(directory).glob(pattern)]

    def read_text(self, path: Path) -> str | None:
        path = Path(path)
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else None

    def write_all(self, files: dict) -> None:
        write_all_atomic({Path(p): data for p, data in files.items()})

    def make_dir(self, path: Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def uri(self, path) -> str:
        return str(path)


LOCAL = LocalFiles()


class ArrowFiles:
    """Paths on a pyarrow filesystem (an object store, HDFS, ...).

    A file is written with one output stream: object stores (S3, GCS, Azure) make the
    object visible only when the stream closes, so a reader never sees half a file; a
    group whose last file fails removes the ones already written.
    """

    def __init__(self, filesystem, scheme: str = "") -> None:
        self.fs = filesystem
        self.scheme = scheme

    def _info(self, path):
        return self.fs.get_file_info(str(path))

    def exists(self, path) -> bool:
        from pyarrow.fs import FileType

        return self._info(path).type != FileType.NotFound

    def glob(self, directory, pattern: str) -> list[str]:
        from pyarrow.fs import FileSelector

        entries = self.fs.get_file_info(FileSelector(str(directory), allow_not_found=True))
        return [e.base_name for e in entries if fnmatch.fnmatchcase(e.base_name, pattern)]

    def read_text(self, path) -> str | None:
        if not self.exists(path):
            return None
        with self.fs.open_input_stream(str(path)) as fh:
            return fh.read().decode("utf-8", errors="replace")

    def write_all(self, files: dict) -> None:
        written = []
        try:
            for path, data in files.items():
                self.fs.create_dir(str(PurePosixPath(path).parent), recursive=True)
                with self.fs.open_output_stream(str(path)) as fh:
                    fh.write(data)
                written.append(path)
        except BaseException:
            for path in written:
                try:
                    self.fs.delete_file(str(path))
                except OSError:
                    pass
            raise

    def make_dir(self, path) -> None:
        self.fs.create_dir(str(path), recursive=True)

    def uri(self, path) -> str:
        return f"{self.scheme}://{path}" if self.scheme else str(path)


def scheme_of(destination: str) -> str:
    """``"s3"`` for ``s3://bucket/x``; ``""`` for a plain path (also on Windows: ``C:\\x`` has no ``://``)."""
    head, sep, _ = str(destination).partition("://")
    return head.lower() if sep and head.isascii() and head.replace("+", "").isalnum() else ""


def open_folder(
    destination: str | os.PathLike, filesystem=None
) -> tuple[LocalFiles | ArrowFiles, Path | PurePosixPath]:
    """``(files, root)`` for an output destination: a plain path, a URI, or a path on ``filesystem``.

    Local URIs (``file://``) and pyarrow's LocalFileSystem become plain paths, written
    with the same atomic writes as the local engine.
    """
    if filesystem is None and "://" not in str(destination):
        return LOCAL, Path(destination)
    from pyarrow.fs import FileSystem, LocalFileSystem

    if filesystem is None:
        filesystem, path = FileSystem.from_uri(str(destination))
    else:
        path = str(destination)
    if isinstance(filesystem, LocalFileSystem):
        return LOCAL, Path(path)
    return ArrowFiles(filesystem, scheme_of(str(destination))), PurePosixPath(path)
