"""File I/O: atomic, durable writes (a reader never sees a half-written file, a crash or power
loss never leaves one; files get the permissions the umask allows, like ``open``'s) and jsonl
reading with one-line errors."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from dlmkit.errors import DlmError


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def respect_umask(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Give a ``tempfile`` file (0600) or folder (0700) the mode a plain ``open``/``mkdir`` would."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file lives in the same folder so that the final ``os.replace`` is atomic.
    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        respect_umask(tmp_path)
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
        fsync_path(path.parent)  # the rename itself
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line to ``path`` (a single write of a whole line)."""
    line = json.dumps(obj, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def split_lines(text: str) -> list[str]:
    """The lines of ``text``, split on ``\\n`` only (a ``\\r`` before it is dropped).

    Unlike ``str.splitlines``, U+2028, U+0085, form feeds and other Unicode breaks stay inside
    their line: they are text (``json.dumps(..., ensure_ascii=False)`` writes them raw), and a
    row that holds one must not become two. A final line break ends the last line, no more.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_jsonl_log(path: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """(line, object) for every non-blank line of a jsonl log that :func:`append_jsonl` writes
    (``metrics.jsonl``).

    A last line cut short by a kill (not JSON) is dropped; a damaged line elsewhere, or one that is
    not a JSON object, is a :class:`DlmError` naming ``path:line``.
    """
    lines = split_lines(Path(path).read_text(encoding="utf-8", errors="replace"))
    while lines and not lines[-1].strip():
        lines.pop()
    out = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines):
                break  # torn by a kill mid-write
            raise DlmError(f"{path}:{lineno}: not JSON ({e.msg}); fix or delete that line") from None
        if not isinstance(row, dict):
            raise DlmError(f"{path}:{lineno}: expected a JSON object; fix or delete that line")
        out.append((line, row))
    return out


def rewrite_jsonl(path: str | os.PathLike, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite a jsonl log keeping the records ``keep`` accepts (atomically); read as
    :func:`read_jsonl_log` reads it (a torn last line is dropped)."""
    if not Path(path).is_file():
        return
    write_text(path, "".join(line + "\n" for line, row in read_jsonl_log(path) if keep(row)))


def jsonl_records(path: str | os.PathLike, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of jsonl ``text`` read from ``path``.

    A line that is not a JSON object is a :class:`DlmError` naming ``path:line``.
    """
    for lineno, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DlmError(f"{path}:{lineno}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DlmError(f"{path}:{lineno}: expected a JSON object")
        yield lineno, row
