"""The tuning cache a process uses: this machine's choices in memory, kept in step with the files.

The autotuner calls ``get_cache().lookup(key)`` on every ``algorithm="auto"`` call and
``get_cache().store(key, entry)`` after it has timed the candidates. This module knows nothing of
algorithms; it keeps JSON-safe entries (:mod:`~pyconvfast.tuning.schema`) filed under this
machine's fingerprint (:mod:`~pyconvfast.tuning.fingerprint`), and decides when the files
(:mod:`~pyconvfast.tuning.storage`: the snapshot, its journal and the lock) are read and
written, so that whatever happens to them (corrupt, unreadable, unwritable, locked by a hung
process) a convolution still runs.

Why it is shaped so:

* Lookups are a dict access in memory. The files are read on first use and again only on a miss:
  the snapshot only when its ``stat`` signature changed (after a compaction), the journal from
  where this process last stopped reading, so that a miss costs the new lines, and only new
  entries are validated (see :meth:`TuningCache.lookup`).
* A store writes at once, under the lock: into a small snapshot (or one without this machine's
  section) by rewriting it with this process's new entries merged in; into a large one by
  appending a line to the journal, compacted now and then. Processes tuning at the same time lose
  nothing either way; sections of other machines (fingerprints) are kept. ``clear`` and ``load``
  compact too.
* A bad file or journal line never raises out of the automatic path (``lookup``, ``store``,
  ``entries``): it is a ``RuntimeWarning``, once per process per kind of problem, and the cache
  carries on in memory. The explicit requests (``clear``, ``export``, ``load``) raise instead, so
  that a user who asked for something learns that it did not happen.
"""

import json
import os
import pathlib
import threading
import time

from pyconvfast._config import cache_dir, get_setting
from pyconvfast.tuning import storage
from pyconvfast.tuning.fingerprint import fingerprint_id, machine_fingerprint
from pyconvfast.tuning.schema import (
    SCHEMA, InvalidCacheFile, NewerSchema, UnreadableFile, check_key, machine_entries,
    validate_entry, warn_once,
)
# Called by these names (not storage.X) so that a test can replace them for the cache alone.
from pyconvfast.tuning.storage import read_document, write_atomically

FILE_NAME = storage.FILE_NAME

#: After a failed write (lock timeout, I/O error), seconds before a store tries the file again, so
#: that a lock held forever does not cost ``LOCK_TIMEOUT`` on every newly tuned problem.
WRITE_RETRY_INTERVAL = 60.0


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
        self._journal = storage.Journal(self._path)  # how far this process has read it
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
        return self._journal.path

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
                    signature = storage.signature(os.stat(self._path))
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
                    if storage.signature(os.stat(self._path)) == self._signature:
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
                self._signature = storage.signature(os.stat(self._path))
            except OSError:
                self._signature = None
            document = None
        section = self._section(document)
        entries = machine_entries(section, strict=False) if section is not None else {}
        self._snapshot_entries = storage.count_entries(document)
        self._has_section = section is not None
        self._journal.reset()
        if document is not None:  # a journal goes with a snapshot it was written after
            self._replay_journal(entries, from_start=True)
        entries.update(self._pending)
        self._entries = entries  # one assignment: a concurrent lookup sees old or new, not half

    def _replay_journal(self, entries, from_start):
        """Add this machine's journal lines not read yet to ``entries`` (not over unsaved
        entries). False when the journal is not the one read so far (the caller re-reads)."""
        records = self._journal.read_new(from_start)
        if records is None:
            return False
        for machine, key, entry in records:
            if machine != self._id or key in self._pending:
                continue
            try:
                entries[key] = validate_entry(entry)
            except ValueError as error:
                warn_once("journal", f"ignoring a line of {self.journal_path} that is not a "
                                      f"cache entry ({error})")
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
        """This machine's section of ``document``, or None (see :func:`storage.section_of`)."""
        self._identify()
        return storage.section_of(document, self._id, self._fingerprint)

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
                if storage.is_timeout(error):
                    warn_once("lock", f"could not lock {self._lock_path} within "
                                       f"{storage.LOCK_TIMEOUT:g} s (another process holds it)")
                elif isinstance(error, UnreadableFile):
                    warn_once("read", str(error))
                elif isinstance(error, NewerSchema):
                    warn_once("schema", f"not writing {self._path}: {error}")
                else:
                    warn_once("write", f"cannot write {self._path} ({error})")

    def _write_pending(self):
        """Under the lock: the unsaved entries to the journal, or into the snapshot while it is
        small (see the module's docstring). Call with the mutex held."""
        self._identify()
        self._directory.mkdir(parents=True, exist_ok=True)
        with storage.lock(self._lock_path):
            self._refresh()  # nobody appends while we hold the lock: this reads to the end
            if (self._snapshot_entries < storage.JOURNAL_FROM or not self._has_section
                    or self._journal.unreadable):
                self._rewrite(self._merge_pending)
                return
            self._journal.append(self._id, self._pending)
            self._pending = {}
            self._write_retry_at = 0.0
            if self._journal.lines >= max(storage.COMPACT_LINES, self._snapshot_entries // 2):
                self._rewrite(self._merge_pending)

    def _merge_pending(self, document):
        section = self._section(document)
        if section is None:
            section = {"fingerprint": self._fingerprint, "entries": {}}
        section["entries"].update(self._pending)
        document["machines"][self._id] = section

    def _update_file(self, change):
        """Under the lock: compact the snapshot and journal with ``change`` applied."""
        self._identify()
        with self._mutex:
            self._directory.mkdir(parents=True, exist_ok=True)
            with storage.lock(self._lock_path):
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
            aside = storage.move_aside(self._path, shown_as=self._path)
            warn_once("corrupt", f"replacing {self._path}: {error}; the bad file is "
                                  f"kept as {aside}")
            document = None
        journal = self.journal_path
        # A journal goes with the snapshot it was written after: without one (deleted to forget
        # everything, or corrupt), it is dropped too.
        if document is None:
            document = {"schema": SCHEMA, "machines": {}}
        else:
            storage.merge_journal(document, storage.read_whole_journal(journal), self._id,
                                  self._fingerprint, journal)
        change(document)
        section = self._section(document)
        if section is not None:
            section["entries"] = storage.newest(section["entries"], storage.MAX_ENTRIES)
        write_atomically(self._path, document)
        self._signature = storage.signature(os.stat(self._path))
        try:
            os.unlink(journal)
        except FileNotFoundError:
            pass
        self._loaded = True
        self._snapshot_entries = storage.count_entries(document)
        self._has_section = section is not None
        self._journal.reset()
        self._pending = {}
        self._write_retry_at = 0.0
        # Every entry of the section is canonical here (validated above, or by store or load).
        self._entries = dict(section["entries"]) if section is not None else {}

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
            incoming = storage.read_sections(path)
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
