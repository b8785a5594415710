"""The tuning cache's files: a JSON snapshot and an append-only journal, and the lock.

:mod:`pyconvfast.tuning.store` keeps the entries in memory and decides when to read and write;
this module knows how: the formats, the lock, the atomic replacement of the snapshot, appending
to the journal and reading it back from where a process stopped, and merging both into one
snapshot (a compaction). It holds no state of its own but a :class:`Journal`'s read position.

Snapshot format, ``tuning.json`` (``schema`` 1)::

    {"schema": 1,
     "machines": {"<fingerprint id>": {"fingerprint": {...},
                                       "entries": {"<problem key>": {
                                           "algorithm": str,
                                           "params": {str: int | float | str | bool},
                                           "timings": {str: float},
                                           "prepare_timings": {str: float},
                                           "cold_timings": {str: float},
                                           "plan_algorithm": str,
                                           "plan_params": {...},
                                           "created": ISO 8601 str}}}}}

Journal format, ``tuning.json.journal`` beside it (beside the link's target for a linked
snapshot): one JSON object a line, ``{"entry": {...}, "key": str, "machine": "<fingerprint id>"}``,
each line an entry stored after the snapshot was written; a later line for a key replaces an
earlier one and the snapshot's.

Why it is shaped so:

* Reads take no lock. The snapshot is only ever replaced whole (:func:`write_atomically`), so a
  reader sees the old or the new file, never half of one. The journal is only appended to, and
  a reader uses only its complete lines (those ending in a newline).
* Writes take a ``filelock`` lock (:data:`LOCK_TIMEOUT` seconds at most). A small snapshot (fewer
  than :data:`JOURNAL_FROM` entries) is rewritten whole by each store, so that a small cache is
  one self-contained file a person can read; past that, a store appends one line to the journal,
  at a cost that does not grow with the cache, and every :data:`COMPACT_LINES` lines the journal
  is merged into a new snapshot (:func:`merge_journal`, :func:`newest`) and removed.
* The files are only ever parsed with ``json``; nothing in them is executed or unpickled, and a
  file larger than :data:`MAX_FILE_BYTES` is not read at all.
"""

import datetime
import json
import os
import pathlib
import secrets

from pyconvfast.tuning.fingerprint import fingerprint_id
from pyconvfast.tuning.schema import (
    SCHEMA, InvalidCacheFile, NewerSchema, UnreadableFile, check_key, machine_entries,
    parse_document, reject_constant, validate_entry, warn_once,
)

FILE_NAME = "tuning.json"

#: Seconds a write waits for another process's lock before giving up (memory only, a warning).
#: A writer holds the lock for a few milliseconds; waiting longer means a hung process or a broken
#: network file system, and the tuning a store follows already cost far more than this.
LOCK_TIMEOUT = 5.0
#: A cache file (or journal) larger than this is not read (it would be corrupt, or not ours).
MAX_FILE_BYTES = 64 * 2**20
#: The journal's name is the snapshot's (the link's target's, for a linked snapshot) plus this.
JOURNAL_SUFFIX = ".journal"
#: A store rewrites the snapshot while it holds fewer entries than this (all machines together):
#: a small cache stays one self-contained file. From this size on, a store appends a line to the
#: journal (docs/guide/tuning.rst has the costs of both).
JOURNAL_FROM = 64
#: The journal is compacted (merged into the snapshot, then removed) once it has this many lines,
#: or half as many lines as the snapshot has entries if that is more: a compaction costs what the
#: file's size costs, once for that many stores, so that a store's cost does not grow with the
#: cache, and a new process reads at most one and a half times the cache.
COMPACT_LINES = 256
#: Entries kept for each machine: a compaction drops the oldest (by ``created``) past this. A
#: cache of this many problems is ~6 MB on disk and ~16 MB in a process's memory; problems
#: dropped are tuned again if they come back.
MAX_ENTRIES = 10_000


def signature(stat):
    """What tells two versions of a file apart: a replace makes a new inode; size and mtime
    catch the rest (inode numbers can be reused)."""
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def lock(lock_path):
    """The writers' lock (a ``filelock.FileLock``, :data:`LOCK_TIMEOUT` seconds at most)."""
    import filelock

    return filelock.FileLock(os.fspath(lock_path), timeout=LOCK_TIMEOUT)


def is_timeout(error):
    """Whether ``error`` is :func:`lock`'s timeout."""
    try:
        import filelock
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, filelock.Timeout)


def journal_path(path):
    """The journal of the snapshot at ``path``: beside it, or beside its target if it is a
    symbolic link."""
    real = pathlib.Path(os.path.realpath(path))
    return real.with_name(real.name + JOURNAL_SUFFIX)


# --------------------------------------------------------------------------------------------
# The snapshot


def write_atomically(path, document):
    """Write ``document`` as JSON to ``path``: temporary file in the same folder, flush, fsync,
    ``os.replace``. Raises OSError (the temporary file removed) when that fails.

    A ``path`` that is a symbolic link (e.g. to a cache file kept on another disk or shared by
    a team) is written through: its target is replaced, in the target's folder, and the link
    stays a link.
    """
    path = pathlib.Path(os.path.realpath(path))
    data = (json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as for any file the user writes
    # (mkstemp would make it 0600, unreadable to a team sharing a cache folder).
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible (nor needed) everywhere
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_document(path):
    """``(document, signature)`` of the cache file at ``path``.

    ``document`` is None when there is no file. Raises OSError when it cannot be read,
    InvalidCacheFile when it is not a cache file, NewerSchema when a newer pyconvfast wrote it.
    """
    try:
        with open(path, "rb") as file:
            stat = os.fstat(file.fileno())
            if stat.st_size > MAX_FILE_BYTES:
                raise InvalidCacheFile(f"it is {stat.st_size} bytes, more than a cache can be")
            data = file.read(MAX_FILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):  # no file (can be) there yet
        return None, None
    except IsADirectoryError:
        raise PermissionError(f"{path} is a directory") from None
    document = parse_document(data)
    if document["schema"] > SCHEMA:
        raise NewerSchema(f"it has schema {document['schema']}, written by a newer pyconvfast "
                          f"(this one reads schema {SCHEMA}); it is left as it is")
    return document, signature(stat)


def move_aside(path, shown_as):
    """Move the corrupt file at ``path`` (through a symbolic link, its target; the link stays)
    to ``<name>.corrupt``, kept for a post-mortem and never read again; the name it gets,
    as a warning shows it (relative to ``shown_as``'s folder when ``path`` is ``shown_as``)."""
    real = pathlib.Path(os.path.realpath(path))
    aside = real.with_name(real.name + ".corrupt")
    os.replace(real, aside)
    return aside if real != shown_as else aside.name


def section_of(document, machine, fingerprint):
    """The section of ``document`` for the machine with id ``machine`` and ``fingerprint``, or
    None.

    The id is a hash of the fingerprint; a section whose fingerprint does not match (or that
    is not even an object) was edited by hand: it is not that machine's, and the next write
    replaces it.
    """
    if document is None:
        return None
    section = document["machines"].get(machine)
    if not isinstance(section, dict) or section.get("fingerprint") != fingerprint:
        return None
    return section


def count_entries(document):
    """The entries in a snapshot, all machines together (its sections unchecked)."""
    if document is None:
        return 0
    return sum(len(section["entries"]) for section in document["machines"].values()
               if isinstance(section, dict) and isinstance(section.get("entries"), dict))


def _created_order(entry):
    """A sort key: when ``entry`` was measured, as UTC seconds (a date without a zone is UTC)."""
    created = datetime.datetime.fromisoformat(entry["created"])
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.timezone.utc)
    return created.timestamp()


def newest(entries, limit):
    """``entries`` (canonical) or, past ``limit`` of them, the ``limit`` newest by created."""
    if len(entries) <= limit:
        return entries
    kept = set(sorted(entries, key=lambda key: _created_order(entries[key]), reverse=True)[:limit])
    return {key: entry for key, entry in entries.items() if key in kept}


def merge_journal(document, records, machine, fingerprint, journal):
    """Merge journal ``records`` into ``document`` (a snapshot, changed in place): the section
    of ``machine`` validated (invalid entries dropped, with a warning) with its lines replacing
    its entries, other machines' lines in their own sections (a process journals only once its
    section is in the snapshot). ``journal`` is the journal's path, for warnings."""
    section = section_of(document, machine, fingerprint)
    ours = machine_entries(section, strict=False) if section is not None else {}
    for record_machine, key, entry in records:
        try:
            entry = validate_entry(entry)
        except ValueError as error:
            warn_once("journal", f"ignoring a line of {journal} that is not a cache "
                                  f"entry ({error})")
            continue
        if record_machine == machine:
            ours[key] = entry
            continue
        other = document["machines"].get(record_machine)
        if isinstance(other, dict) and isinstance(other.get("entries"), dict):
            other["entries"][key] = entry
    if section is not None or ours:
        document["machines"][machine] = {"fingerprint": fingerprint, "entries": ours}


def read_sections(path):
    """The machines' sections of the cache file at ``path`` (an export, or a whole cache),
    every entry validated: ``{fingerprint id: {"fingerprint": dict, "entries": dict}}``, each
    filed under the hash of its fingerprint, whatever name the file gave it.

    Raises ValueError when ``path`` is a directory, InvalidCacheFile when the file is not a
    cache file of this schema or holds an invalid entry, OSError when it cannot be read.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise ValueError(f"cannot load {path}: it is a directory") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidCacheFile(f"it is more than {MAX_FILE_BYTES} bytes")
    document = parse_document(data)
    if document["schema"] != SCHEMA:
        raise InvalidCacheFile(f"it has schema {document['schema']}; this pyconvfast "
                               f"reads schema {SCHEMA}")
    sections = {}
    for name, section in document["machines"].items():
        if not isinstance(section, dict) or not isinstance(section.get("fingerprint"), dict):
            raise InvalidCacheFile(f"machine {name!r} has no 'fingerprint' object")
        fid = fingerprint_id(section["fingerprint"])
        entries = machine_entries(section, strict=True)
        if fid in sections:
            sections[fid]["entries"].update(entries)
        else:
            sections[fid] = {"fingerprint": section["fingerprint"], "entries": entries}
    return sections


# --------------------------------------------------------------------------------------------
# The journal


def journal_line(machine, key, entry):
    """One journal line (bytes, newline included): ASCII JSON, so no newline inside it."""
    line = json.dumps({"entry": entry, "key": key, "machine": machine}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return line.encode("ascii") + b"\n"


def parse_journal_line(line):
    """``(machine, key, raw entry)`` of one journal line (bytes, no newline); ValueError when
    it is not one. The entry is not validated here (see ``validate_entry``)."""
    try:
        record = json.loads(line.decode("utf-8"), parse_constant=reject_constant)
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error.reason})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    machine, key = record.get("machine"), record.get("key")
    if not isinstance(machine, str) or not machine:
        raise ValueError(f"its machine is {machine!r}, not a fingerprint id")
    check_key(key)
    return machine, key, record.get("entry")


def journal_records(data, path):
    """The ``(machine, key, raw entry)`` of every complete line of journal bytes ``data``,
    skipping (with a warning, once) the lines that are not journal lines; and how many lines."""
    records, n_lines = [], 0
    for line in data.split(b"\n")[:-1]:  # the last piece is empty or an unfinished line
        if not line.strip():
            continue
        n_lines += 1
        try:
            records.append(parse_journal_line(line))
        except ValueError as error:
            warn_once("journal", f"ignoring a line of {path} that is not a cache entry "
                                  f"({error})")
    return records, n_lines


def read_whole_journal(path):
    """``(machine, key, raw entry)`` of every line of the journal at ``path``; a journal too
    large to be ours is moved aside (as a corrupt snapshot is)."""
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            data = file.read(MAX_FILE_BYTES + 1) if size <= MAX_FILE_BYTES else None
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as error:
        raise UnreadableFile(f"cannot read {path} ({error})") from error
    if data is None or len(data) > MAX_FILE_BYTES:
        aside = path.with_name(path.name + ".corrupt")
        warn_once("journal", f"replacing {path}: it is more than {MAX_FILE_BYTES} bytes; "
                              f"kept as {aside.name}")
        os.replace(path, aside)
        return []
    return journal_records(data[:data.rfind(b"\n") + 1], path)[0]


class Journal:
    """A process's place in the journal of the snapshot at ``snapshot_path``: which file it
    read (device and inode), how far (whole lines only) and how many lines that was.

    A reader catches up from where it stopped (:meth:`read_new`), so that a miss costs the
    lines appended since, whatever the size of the cache; a writer appends after what it read
    (:meth:`append`). Not thread-safe: the cache calls it under its mutex.
    """

    def __init__(self, snapshot_path):
        self._snapshot_path = snapshot_path
        self.reset()

    def reset(self):
        """Forget the place: the next read starts from the beginning."""
        self.identity = None   # (st_dev, st_ino) of the journal read so far, None if none
        self.offset = 0        # bytes of it read: whole lines only
        self.lines = 0         # lines in those bytes, all machines
        self.unreadable = False  # larger than MAX_FILE_BYTES: compact it on the next store

    @property
    def path(self):
        return journal_path(self._snapshot_path)

    def read_new(self, from_start):
        """The ``(machine, key, raw entry)`` records appended since the last read (all of them
        with ``from_start``); None when the journal is not the one read so far (compacted or
        deleted since: the caller reads the snapshot again)."""
        path = self.path
        try:
            file = open(path, "rb")
        except (FileNotFoundError, NotADirectoryError):
            if not from_start and self.identity is not None:
                return None
            return []
        except OSError as error:
            warn_once("read", f"cannot read {path} ({error})")
            return []
        with file:
            stat = os.fstat(file.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if not from_start and self.identity not in (None, identity):
                return None
            offset = 0 if from_start else self.offset
            if stat.st_size < offset:
                return None
            if stat.st_size == offset:
                self.identity = identity
                return []
            if stat.st_size - offset > MAX_FILE_BYTES:
                warn_once("journal", f"ignoring {path}: it is {stat.st_size} bytes, more than "
                                      f"a journal can be")
                self.unreadable = True
                return []
            file.seek(offset)
            data = file.read(stat.st_size - offset)
        end = data.rfind(b"\n") + 1  # an unfinished last line is being written, or torn
        records, n_lines = journal_records(data[:end], path)
        self.identity = identity
        self.offset = offset + end
        self.lines += n_lines
        return records

    def append(self, machine, entries):
        """Under the lock, after :meth:`read_new` read to the end: one line for each of
        ``entries`` (``{key: canonical entry}``) of ``machine``.

        Not fsync'ed: a line costs 10 us to write and an fsync costs milliseconds. A line lost
        with the page cache (a power cut, not a killed process) costs tuning that problem again;
        a line torn by it is an unfinished last line, which readers skip and the next writer
        cuts off. The snapshot, whose loss would cost every entry, is fsync'ed when written.
        """
        data = b"".join(journal_line(machine, key, entry) for key, entry in entries.items())
        path = self.path
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0),
                     0o666)
        start = None
        try:
            stat = os.fstat(fd)
            identity = (stat.st_dev, stat.st_ino)
            if identity != self.identity and stat.st_size:
                # A journal that read_new could not read: cutting it would lose its lines.
                raise UnreadableFile(f"cannot read {path}")
            start = self.offset if identity == self.identity else 0
            if stat.st_size > start:
                # Past the whole lines read just now, under the lock: the unfinished line of a
                # writer killed while appending. Cut off, or the next line would be glued to it.
                os.ftruncate(fd, start)
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except BaseException:
            if start is not None:
                try:  # leave no half line of ours behind
                    os.ftruncate(fd, start)
                except OSError:
                    pass
            raise
        finally:
            os.close(fd)
        self.identity = identity
        self.offset = start + len(data)
        self.lines += len(entries)
