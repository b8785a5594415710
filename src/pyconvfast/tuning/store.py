"""The on-disk tuning cache: a JSON snapshot and an append-only journal, keyed by machine.

The autotuner calls ``get_cache().lookup(key)`` on every ``algorithm="auto"`` call and
``get_cache().store(key, entry)`` after it has timed the candidates. This module knows nothing of
algorithms; it keeps JSON-safe entries and makes sure that whatever happens to the files
(corrupt, unreadable, unwritable, locked by a hung process) a convolution still runs.

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

Design, in short:

* Reads take no lock. The snapshot is only ever replaced whole: a temporary file in the same
  folder, flushed, fsync'ed and moved over it with ``os.replace``, so a reader sees the old or the
  new file, never half of one. The journal is only appended to, and a reader uses only its
  complete lines (those ending in a newline).
* Writes take a ``filelock`` lock (``LOCK_TIMEOUT`` seconds at most). While the snapshot is small
  (fewer than ``JOURNAL_FROM`` entries, all machines together) or has no section for this
  machine, a store re-reads it, merges this process's new entries into it and writes it back, so
  that a small cache is one self-contained file. From then on a store appends one line to the
  journal: its cost does not grow with the cache. Once the journal holds ``COMPACT_LINES`` lines
  (or half as many as the snapshot has entries, if more) it is compacted: merged into a new
  snapshot, which keeps at most ``MAX_ENTRIES`` entries a machine (the newest), and removed.
  ``clear`` and ``load`` compact too. Processes tuning at the same time lose nothing either way;
  sections of other machines (fingerprints) are kept.
* Lookups are a dict access in memory. The files are read on first use and again only on a miss:
  the snapshot only when its ``stat`` signature changed (after a compaction), the journal from
  where this process last stopped reading, so that a miss costs the new lines, and only new
  entries are validated (see ``TuningCache.lookup``).
* A bad file or journal line never raises out of the automatic path (``lookup``, ``store``,
  ``entries``): it is a ``RuntimeWarning``, once per process per kind of problem, and the cache
  carries on in memory. The explicit requests (``clear``, ``export``, ``load``) raise instead, so
  that a user who asked for something learns that it did not happen.
* The files are only ever parsed with ``json``; nothing in them is executed or unpickled.
"""

import datetime
import json
import os
import pathlib
import secrets
import threading
import time

from pyconvfast._config import cache_dir, get_setting
from pyconvfast.tuning.fingerprint import fingerprint_id, machine_fingerprint
from pyconvfast.tuning.schema import (
    SCHEMA, InvalidCacheFile, NewerSchema, UnreadableFile, check_key, machine_entries,
    parse_document, reject_constant, validate_entry, warn_once,
)

FILE_NAME = "tuning.json"

#: Seconds a write waits for another process's lock before giving up (memory only, a warning).
#: A writer holds the lock for a few milliseconds; waiting longer means a hung process or a broken
#: network file system, and the tuning a store follows already cost far more than this.
LOCK_TIMEOUT = 5.0
#: After a failed write (lock timeout, I/O error), seconds before a store tries the file again, so
#: that a lock held forever does not cost ``LOCK_TIMEOUT`` on every newly tuned problem.
WRITE_RETRY_INTERVAL = 60.0
#: A cache file (or journal) larger than this is not read (it would be corrupt, or not ours).
MAX_FILE_BYTES = 64 * 2**20
#: The journal's name is the snapshot's (the link's target's, for a linked snapshot) plus this.
JOURNAL_SUFFIX = ".journal"
#: A store rewrites the snapshot while it holds fewer entries than this (all machines together;
#: 12 to 16 ms on an ext4 VM, most of it the two fsyncs): a small cache stays one self-contained
#: file that a person can read. From this size on, a store appends a line to the journal (0.2 ms).
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

# --------------------------------------------------------------------------------------------
# Files


def _signature(stat):
    # A replace makes a new inode; size and mtime catch the rest (inode numbers can be reused).
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


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
    return document, _signature(stat)


def _journal_line(machine, key, entry):
    """One journal line (bytes, newline included): ASCII JSON, so no newline inside it."""
    line = json.dumps({"entry": entry, "key": key, "machine": machine}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return line.encode("ascii") + b"\n"


def _parse_journal_line(line):
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


def _journal_lines(data, path):
    """The ``(machine, key, raw entry)`` of every complete line of journal bytes ``data``,
    skipping (with a warning, once) the lines that are not journal lines; and how many lines."""
    records, n_lines = [], 0
    for line in data.split(b"\n")[:-1]:  # the last piece is empty or an unfinished line
        if not line.strip():
            continue
        n_lines += 1
        try:
            records.append(_parse_journal_line(line))
        except ValueError as error:
            warn_once("journal", f"ignoring a line of {path} that is not a cache entry "
                                  f"({error})")
    return records, n_lines


def _created_order(entry):
    """A sort key: when ``entry`` was measured, as UTC seconds (a date without a zone is UTC)."""
    created = datetime.datetime.fromisoformat(entry["created"])
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.timezone.utc)
    return created.timestamp()


def _newest(entries, limit):
    """``entries`` (canonical) or, past ``limit`` of them, the ``limit`` newest by created."""
    if len(entries) <= limit:
        return entries
    kept = set(sorted(entries, key=lambda key: _created_order(entries[key]), reverse=True)[:limit])
    return {key: entry for key, entry in entries.items() if key in kept}


def _count_entries(document):
    """The entries in a snapshot, all machines together (its sections unchecked)."""
    if document is None:
        return 0
    return sum(len(section["entries"]) for section in document["machines"].values()
               if isinstance(section, dict) and isinstance(section.get("entries"), dict))


# --------------------------------------------------------------------------------------------
# The cache


class TuningCache:
    """The tuning choices of this machine, in memory, backed by a JSON snapshot and a journal.

    Parameters
    ----------
    directory : path-like, optional
        The cache's folder; by default ``$PYCONVFAST_CACHE_DIR`` if set, else the platform's user
        cache folder (``platformdirs.user_cache_dir("pyconvfast")``). Nothing is read or created
        before the first use.

    Notes
    -----
    Thread-safe. :meth:`lookup`, :meth:`store` and :meth:`entries` never raise because of the
    files: they warn once (``RuntimeWarning``) and work in memory. :meth:`clear`, :meth:`export`
    and :meth:`load` are explicit requests and raise ``OSError`` (or ``ValueError`` for an
    invalid file given to :meth:`load`) when they cannot do what was asked.
    """

    def __init__(self, directory=None):
        self._directory = (pathlib.Path(os.path.abspath(os.fspath(directory)))
                           if directory is not None else cache_dir())
        self._path = self._directory / FILE_NAME
        self._lock_path = self._directory / (FILE_NAME + ".lock")
        self._mutex = threading.RLock()
        self._entries = {}        # this machine's entries: what lookups read
        self._pending = {}        # stored by this process and not yet in a file
        self._loaded = False
        self._signature = None    # stat signature of the snapshot last read
        self._snapshot_entries = 0  # entries in that snapshot, all machines
        self._has_section = False   # whether it has a valid section for this machine
        self._journal_id = None   # (st_dev, st_ino) of the journal read so far, None if none
        self._journal_offset = 0  # bytes of it read: whole lines only
        self._journal_lines = 0   # lines in those bytes, all machines
        self._journal_unreadable = False  # larger than MAX_FILE_BYTES: compact it on a store
        self._write_retry_at = 0.0
        self._fingerprint = None
        self._id = None
        self._setting = _NOT_FROM_ENVIRONMENT  # see get_cache

    @property
    def path(self):
        """The cache file, ``<directory>/tuning.json`` (it may not exist yet)."""
        return self._path

    @property
    def journal_path(self):
        """The journal, beside the cache file (beside its target if it is a symbolic link);
        it exists only between a store into a large cache and the next compaction."""
        real = pathlib.Path(os.path.realpath(self._path))
        return real.with_name(real.name + JOURNAL_SUFFIX)

    @property
    def fingerprint(self):
        """This machine's fingerprint (see :func:`machine_fingerprint`)."""
        self._identify()
        return json.loads(json.dumps(self._fingerprint))

    @property
    def fingerprint_id(self):
        """The id this machine's entries are filed under."""
        self._identify()
        return self._id

    def _identify(self):
        if self._id is None:
            self._fingerprint = machine_fingerprint()
            self._id = fingerprint_id(self._fingerprint)

    # -- reading ---------------------------------------------------------------------------

    def lookup(self, key):
        """The entry stored for problem ``key`` on this machine, or None.

        The returned dict is the cache's own: read it, do not modify it.

        A hit is one dict access. A miss first catches up with the files, so that a choice
        another process just stored is found without tuning again: the snapshot is read again
        only when its ``stat`` signature (inode, size, mtime) changed since it was last read
        (that is, after a compaction), and the journal from where this process stopped, so that
        the miss costs the lines appended since (and two ``stat`` calls when there are none),
        whatever the size of the cache. A miss is followed by tuning, which costs milliseconds
        at least; hits never touch the file system.
        """
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        self._refresh()
        return self._entries.get(key)

    def entries(self):
        """All entries of this machine, the files re-read if they changed: ``{key: entry}``."""
        with self._mutex:
            self._refresh()
            return {key: {name: dict(value) if isinstance(value, dict) else value
                          for name, value in entry.items()}
                    for key, entry in self._entries.items()}

    def _refresh(self):
        """Catch up with the files (see :meth:`lookup`)."""
        with self._mutex:
            self._identify()
            # A reader takes no lock: a compaction may replace the snapshot between the reads of
            # the snapshot and of the journal. The snapshot's signature, checked again after,
            # says so; a second try then reads the new pair.
            for _ in range(3):
                try:
                    signature = _signature(os.stat(self._path))
                except (FileNotFoundError, NotADirectoryError):
                    signature = None
                except OSError as error:
                    warn_once("read", f"cannot check {self._path} ({error})")
                    return
                if self._loaded and signature == self._signature and self._replay_journal(
                        self._entries, from_start=False):
                    return
                self._reload()
                try:
                    if _signature(os.stat(self._path)) == self._signature:
                        return
                except OSError:
                    return

    def _reload(self):
        """Read the snapshot and the whole journal again; the memory becomes what they say
        plus this process's unsaved entries."""
        self._loaded = True
        try:
            document, self._signature = read_document(self._path)
        except (OSError, InvalidCacheFile, NewerSchema) as error:
            self._warn_bad_file(error)
            try:  # remember the bad file so that it is read once, not on every miss
                self._signature = _signature(os.stat(self._path))
            except OSError:
                self._signature = None
            document = None
        section = self._section(document)
        entries = machine_entries(section, strict=False) if section is not None else {}
        self._snapshot_entries = _count_entries(document)
        self._has_section = section is not None
        self._journal_id, self._journal_offset, self._journal_lines = None, 0, 0
        if document is not None:  # a journal goes with a snapshot it was written after
            self._replay_journal(entries, from_start=True)
        entries.update(self._pending)
        self._entries = entries  # one assignment: a concurrent lookup sees old or new, not half

    def _replay_journal(self, entries, from_start):
        """Add this machine's journal lines not read yet to ``entries`` (not over unsaved
        entries). False when the journal is not the one read so far (the caller re-reads)."""
        path = self.journal_path
        try:
            file = open(path, "rb")
        except (FileNotFoundError, NotADirectoryError):
            if not from_start and self._journal_id is not None:
                return False  # compacted (or deleted) since
            return True
        except OSError as error:
            warn_once("read", f"cannot read {path} ({error})")
            return True
        with file:
            stat = os.fstat(file.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if not from_start and self._journal_id not in (None, identity):
                return False
            offset = 0 if from_start else self._journal_offset
            if stat.st_size < offset:
                return False
            if stat.st_size == offset:
                self._journal_id = identity
                return True
            if stat.st_size - offset > MAX_FILE_BYTES:
                warn_once("journal", f"ignoring {path}: it is {stat.st_size} bytes, more than "
                                      f"a journal can be")
                self._journal_unreadable = True
                return True
            file.seek(offset)
            data = file.read(stat.st_size - offset)
        end = data.rfind(b"\n") + 1  # an unfinished last line is being written, or torn
        records, n_lines = _journal_lines(data[:end], path)
        self._journal_id = identity
        self._journal_offset = offset + end
        self._journal_lines += n_lines
        for machine, key, entry in records:
            if machine != self._id or key in self._pending:
                continue
            try:
                entries[key] = validate_entry(entry)
            except ValueError as error:
                warn_once("journal", f"ignoring a line of {path} that is not a cache entry "
                                      f"({error})")
        return True

    def _warn_bad_file(self, error):
        if isinstance(error, InvalidCacheFile):
            warn_once("corrupt", f"ignoring {self._path}: {error}")
        elif isinstance(error, NewerSchema):
            warn_once("schema", f"ignoring {self._path}: {error}")
        elif isinstance(error, OSError):
            warn_once("read", f"cannot read {self._path} ({error})")
        else:
            raise error

    def _section(self, document):
        """This machine's section of ``document``, or None."""
        if document is None:
            return None
        self._identify()
        section = document["machines"].get(self._id)
        # The id is a hash of the fingerprint; a section whose fingerprint does not match (or
        # that is not even an object) was edited by hand: it is not ours, and the next write
        # replaces it.
        if not isinstance(section, dict) or section.get("fingerprint") != self._fingerprint:
            return None
        return section

    # -- writing ---------------------------------------------------------------------------

    def store(self, key, entry):
        """Record ``entry`` for problem ``key``, in memory and on disk.

        Parameters
        ----------
        key : str
            The problem's key (``ConvProblem.key``).
        entry : dict
            ``algorithm`` (str), ``params`` (dict of str to int, float, str or bool),
            ``timings`` (dict of str to seconds), ``created`` (ISO 8601 str, default now); extra
            fields with str, number, bool or None values are kept.

        Raises
        ------
        ValueError
            If ``key`` or ``entry`` is not of those types (a bug in the caller, not the file).

        Notes
        -----
        Under the lock: into a small cache, the snapshot is re-read, this process's new entries
        merged into it and the result written back; into a large one, a line is appended to the
        journal (and now and then the journal compacted), at a cost that does not grow with the
        cache. Processes storing at the same time lose nothing; an entry for the same key on
        disk is replaced. When the files cannot be written, a warning (once) and the entry stays
        in memory; later stores try again after ``WRITE_RETRY_INTERVAL`` seconds.
        """
        check_key(key)
        clean = validate_entry(entry)
        with self._mutex:
            if not self._loaded:
                self._refresh()
            self._pending[key] = clean
            self._entries[key] = clean
            if time.monotonic() < self._write_retry_at:
                return
            try:
                self._write_pending()
            except Exception as error:  # noqa: BLE001  (no file problem may stop a convolution)
                self._write_retry_at = time.monotonic() + WRITE_RETRY_INTERVAL
                if _is_timeout(error):
                    warn_once("lock", f"could not lock {self._lock_path} within "
                                       f"{LOCK_TIMEOUT:g} s (another process holds it)")
                elif isinstance(error, UnreadableFile):
                    warn_once("read", str(error))
                elif isinstance(error, NewerSchema):
                    warn_once("schema", f"not writing {self._path}: {error}")
                else:
                    warn_once("write", f"cannot write {self._path} ({error})")

    def _write_pending(self):
        """Under the lock: the unsaved entries to the journal, or into the snapshot while it is
        small (see the module's docstring). Call with the mutex held."""
        import filelock

        self._identify()
        self._directory.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(os.fspath(self._lock_path), timeout=LOCK_TIMEOUT):
            self._refresh()  # nobody appends while we hold the lock: this reads to the end
            if (self._snapshot_entries < JOURNAL_FROM or not self._has_section
                    or self._journal_unreadable):
                self._rewrite(self._merge_pending)
                return
            self._append(self._pending)
            if self._journal_lines >= max(COMPACT_LINES, self._snapshot_entries // 2):
                self._rewrite(self._merge_pending)

    def _append(self, entries):
        """Under the lock, after ``_refresh``: one journal line for each of this machine's
        ``entries``, which are then saved.

        Not fsync'ed: a line costs 10 us to write and an fsync costs milliseconds. A line lost
        with the page cache (a power cut, not a killed process) costs tuning that problem again;
        a line torn by it is an unfinished last line, which readers skip and the next writer
        cuts off. The snapshot, whose loss would cost every entry, is fsync'ed when written.
        """
        data = b"".join(_journal_line(self._id, key, entry) for key, entry in entries.items())
        path = self.journal_path
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0),
                     0o666)
        start = None
        try:
            stat = os.fstat(fd)
            identity = (stat.st_dev, stat.st_ino)
            if identity != self._journal_id and stat.st_size:
                # A journal that _refresh could not read: cutting it would lose its lines.
                raise UnreadableFile(f"cannot read {path}")
            start = self._journal_offset if identity == self._journal_id else 0
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
        self._journal_id = identity
        self._journal_offset = start + len(data)
        self._journal_lines += len(entries)
        self._pending = {}
        self._write_retry_at = 0.0

    def _merge_pending(self, document):
        section = self._section(document)
        if section is None:
            section = {"fingerprint": self._fingerprint, "entries": {}}
        section["entries"].update(self._pending)
        document["machines"][self._id] = section

    def _update_file(self, change):
        """Under the lock: compact the snapshot and journal with ``change`` applied."""
        import filelock

        self._identify()
        with self._mutex:
            self._directory.mkdir(parents=True, exist_ok=True)
            with filelock.FileLock(os.fspath(self._lock_path), timeout=LOCK_TIMEOUT):
                self._rewrite(change)

    def _rewrite(self, change):
        """Under the lock: read the snapshot and the journal, merge them, ``change(document)``
        in place, write the snapshot back and remove the journal. Call with the mutex held.

        This machine's section is validated (invalid entries dropped) and kept to its
        ``MAX_ENTRIES`` newest entries. A corrupt snapshot (or journal) is moved aside to
        ``tuning.json.corrupt`` (kept for a post-mortem, and never read again) and replaced by a
        valid one: its content was unusable anyway, and a cache that heals itself needs no
        manual ``clear`` from the user. A file that cannot be read, or was written by a newer
        pyconvfast, is left alone (the error propagates): its content may be valid and writing
        would lose it.
        """
        try:
            document, _ = read_document(self._path)
        except OSError as error:
            raise UnreadableFile(f"cannot read {self._path} ({error})") from error
        except InvalidCacheFile as error:
            # Through a symbolic link, the target is moved aside; the link stays.
            real = pathlib.Path(os.path.realpath(self._path))
            aside = real.with_name(real.name + ".corrupt")
            warn_once("corrupt", f"replacing {self._path}: {error}; the bad file is "
                                  f"kept as {aside if real != self._path else aside.name}")
            os.replace(real, aside)
            document = None
        journal = self.journal_path
        # A journal goes with the snapshot it was written after: without one (deleted to forget
        # everything, or corrupt), it is dropped too.
        records = self._read_whole_journal(journal) if document is not None else []
        if document is None:
            document = {"schema": SCHEMA, "machines": {}}
        # This machine's section, validated, with its journal lines; other machines' lines go
        # into their sections (a process journals only once its section is in the snapshot).
        section = self._section(document)
        ours = machine_entries(section, strict=False) if section is not None else {}
        for machine, key, entry in records:
            try:
                entry = validate_entry(entry)
            except ValueError as error:
                warn_once("journal", f"ignoring a line of {journal} that is not a cache "
                                      f"entry ({error})")
                continue
            if machine == self._id:
                ours[key] = entry
                continue
            other = document["machines"].get(machine)
            if isinstance(other, dict) and isinstance(other.get("entries"), dict):
                other["entries"][key] = entry
        if section is not None or ours:
            document["machines"][self._id] = {"fingerprint": self._fingerprint,
                                              "entries": ours}
        change(document)
        section = self._section(document)
        if section is not None:
            section["entries"] = _newest(section["entries"], MAX_ENTRIES)
        write_atomically(self._path, document)
        self._signature = _signature(os.stat(self._path))
        try:
            os.unlink(journal)
        except FileNotFoundError:
            pass
        self._loaded = True
        self._snapshot_entries = _count_entries(document)
        self._has_section = section is not None
        self._journal_id, self._journal_offset, self._journal_lines = None, 0, 0
        self._journal_unreadable = False
        self._pending = {}
        self._write_retry_at = 0.0
        # Every entry of the section is canonical here (validated above, or by store or load).
        self._entries = dict(section["entries"]) if section is not None else {}

    def _read_whole_journal(self, path):
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
        return _journal_lines(data[:data.rfind(b"\n") + 1], path)[0]

    def clear(self):
        """Remove this machine's entries, in memory and in the files.

        Entries of other machines (fingerprints) are kept.

        Raises
        ------
        OSError
            If the files cannot be read or written (they are then left unchanged, as is the
            memory), including ``TimeoutError`` when another process holds the lock.
        """
        self._identify()
        with self._mutex:
            self._update_file_with_pending(
                {}, lambda document: document["machines"].pop(self._id, None), "clearing")

    def _update_file_with_pending(self, pending, update, doing):
        """Make ``pending`` the unsaved entries and apply ``update`` to the file; if that fails,
        the unsaved entries are what they were. Call with the mutex held.

        ``doing`` names the request in the error a newer-schema file raises ("clearing")."""
        saved = self._pending
        self._pending = pending
        try:
            self._update_file(update)
        except NewerSchema as error:
            self._pending = saved
            raise OSError(f"not {doing} {self._path}: {error}") from None
        except BaseException:
            self._pending = saved
            raise

    def export(self, path):
        """Write this machine's entries, with its fingerprint, as a JSON cache file at ``path``.

        The file is written atomically; :meth:`load` reads it back.

        Raises
        ------
        OSError
            If ``path`` cannot be written.
        """
        self._identify()
        entries = self.entries()
        document = {"schema": SCHEMA,
                    "machines": {self._id: {"fingerprint": self._fingerprint,
                                            "entries": entries}}}
        write_atomically(path, document)

    def load(self, path):
        """Merge the entries of the cache file at ``path`` (from :meth:`export`, or a whole
        cache file) into this cache.

        Every entry is validated first; an entry of the file replaces one of the cache for the
        same machine and key. Entries of other machines are kept in the file (ignored by
        lookups).

        Returns
        -------
        dict
            ``{"usable": n, "other": m}``: entries for this machine, entries for others.

        Raises
        ------
        ValueError
            If ``path`` is not a valid cache file (nothing is merged then).
        OSError
            If ``path`` cannot be read or the cache cannot be written.
        """
        try:
            with open(path, "rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)
        except IsADirectoryError:
            raise ValueError(f"cannot load {path}: it is a directory") from None
        try:
            if len(data) > MAX_FILE_BYTES:
                raise InvalidCacheFile(f"it is more than {MAX_FILE_BYTES} bytes")
            document = parse_document(data)
            if document["schema"] != SCHEMA:
                raise InvalidCacheFile(f"it has schema {document['schema']}; this pyconvfast "
                                       f"reads schema {SCHEMA}")
            incoming = {}
            for name, section in document["machines"].items():
                if not isinstance(section, dict) or not isinstance(
                        section.get("fingerprint"), dict):
                    raise InvalidCacheFile(f"machine {name!r} has no 'fingerprint' object")
                # Filed under the hash of its fingerprint, whatever name the file gave it.
                fid = fingerprint_id(section["fingerprint"])
                entries = machine_entries(section, strict=True)
                if fid in incoming:
                    incoming[fid]["entries"].update(entries)
                else:
                    incoming[fid] = {"fingerprint": section["fingerprint"], "entries": entries}
        except InvalidCacheFile as error:
            raise ValueError(f"cannot load {path}: not a pyconvfast tuning file: {error}"
                             ) from None
        self._identify()

        def merge(document):
            for fid, section in incoming.items():
                if fid == self._id:
                    continue
                current = document["machines"].get(fid)
                if isinstance(current, dict) and isinstance(current.get("entries"), dict):
                    current["entries"].update(section["entries"])
                else:
                    document["machines"][fid] = section
            self._merge_pending(document)

        ours = incoming.get(self._id, {"entries": {}})["entries"]
        with self._mutex:
            self._update_file_with_pending({**self._pending, **ours}, merge, "loading into")
        return {"usable": len(ours),
                "other": sum(len(s["entries"]) for f, s in incoming.items() if f != self._id)}


def _is_timeout(error):
    try:
        import filelock
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, filelock.Timeout)


_NOT_FROM_ENVIRONMENT = object()
_CURRENT = None
_CURRENT_MUTEX = threading.Lock()


def _forget_after_fork():
    # A forked child must not inherit a lock another thread of the parent held at the fork:
    # it starts a cache of its own (reading the file again) on first use.
    global _CURRENT, _CURRENT_MUTEX
    _CURRENT = None
    _CURRENT_MUTEX = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def get_cache():
    """The process's :class:`TuningCache` for the current ``cache_dir`` setting
    (``$PYCONVFAST_CACHE_DIR``, or :func:`pyconvfast.config_context`).

    The setting is read on every call (a few hundred nanoseconds), so that changing it while
    the process runs takes effect at the next call; the same object is returned while it stays
    the same.
    """
    global _CURRENT
    setting = get_setting("cache_dir")
    cache = _CURRENT
    if cache is not None and cache._setting == setting:
        return cache
    with _CURRENT_MUTEX:
        cache = _CURRENT
        if cache is None or cache._setting != setting:
            cache = TuningCache()
            cache._setting = setting
            _CURRENT = cache
        return cache
