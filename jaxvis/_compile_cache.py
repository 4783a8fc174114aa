"""jaxvis's persistent store of its own compiled programs: a second process compiles nothing.

XLA:CPU needs about a second to compile a model's gradient. Every jaxvis program compiles
through :func:`jaxvis._xla.jit`, which lowers it ahead of time, looks the program up here and
compiles it only on a miss, saving the executable (``jax.experimental.serialize_executable``)
for the next process. Only jaxvis's programs are stored, so a user's ``jax.jit`` programs
(often with weights baked in as constants: 43 MB each on a ResNet-18) never land here.
jaxvis never switches on JAX's own persistent cache and ``import jaxvis`` changes no
``jax.config`` value: JAX's cache is one folder per process, opened at the first compile that
finds ``jax_compilation_cache_dir`` set, and from then on it looks up and stores every program
of the process that compiles for longer than ``jax_persistent_cache_min_compile_time_secs``,
so it cannot be scoped to jaxvis's compiles.

The rule:

* Off unless asked for: :func:`enable_compilation_cache` (the folder defaults to
  ``<jaxvis cache folder>/compiled``, :func:`jaxvis._paths.cache_dir`), or
  ``JAXVIS_COMPILATION_CACHE=1`` (``on``/``true``/``yes``: that default folder) or
  ``=/some/dir`` before jaxvis's first compile; :func:`disable_compilation_cache` turns it
  off again. It is opt-in because jaxlib 0.10's XLA:CPU does not always run an executable it
  deserialised: this project's test runs saw ``NOT_FOUND: Function ... not found`` (such a
  program is compiled afresh and its entry dropped, see :func:`discard_loaded`) and, once, a
  crash in a later compile of a process that had loaded hundreds of stored programs.
* At most ``max_bytes`` (default 1 GiB, or ``JAXVIS_CACHE_MAX_BYTES``): after each write the
  least recently used entries (by modification time, refreshed on every hit) are deleted.
* An entry's key hashes the program's StableHLO, the compiler options (jaxvis's, ``XLA_FLAGS``
  and the JAX options that become compile options), the device and the JAX/jaxlib versions,
  so a changed program or a new JAX never loads a stale executable.
* Caveats: programs whose arguments span several devices (sharded) are compiled but not
  stored; loading an entry runs code from the folder, so keep it private (as JAX's own
  cache); a user who also switched on JAX's cache gets jaxvis's cold compiles stored there
  too, by their own setting, while their programs never come here.

Example::

    import jaxvis as jv
    jv.enable_compilation_cache("/tmp/jv-cache", max_bytes=2**28)
    jv.compilation_cache_dir()        # PosixPath('/tmp/jv-cache')
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import warnings
import zlib
from pathlib import Path

import jax
import jaxlib
from jax.experimental import serialize_executable

from jaxvis._checks import check_positive_int
from jaxvis._paths import cache_dir

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ENV",
    "HIT_EVENT",
    "MAX_BYTES_ENV",
    "MISS_EVENT",
    "Store",
    "compilation_cache_dir",
    "compile_cached",
    "disable_compilation_cache",
    "enable_compilation_cache",
]

ENV = "JAXVIS_COMPILATION_CACHE"
MAX_BYTES_ENV = "JAXVIS_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 1 << 30
#: ``jax.monitoring`` events recorded for each program loaded from / written to the store
HIT_EVENT = "/jaxvis/compilation_cache/hits"
MISS_EVENT = "/jaxvis/compilation_cache/misses"
_OFF = ("0", "off", "false", "no")
_ON = ("1", "on", "true", "yes")
_SUFFIX = ".xla"
#: JAX options that JAX turns into compile options (so into the executable), not into the
#: program's text
_COMPILE_FLAGS = (
    "jax_exec_time_optimization_effort",
    "jax_memory_fitting_effort",
    "jax_memory_fitting_level",
    "jax_optimization_level",
    "jax_compiler_enable_remat_pass",
    "jax_xla_profile_version",
    "jax_use_shardy_partitioner",
)


class Store:
    """A folder of compressed executables, one file per key, bounded by ``max_bytes`` with
    least-recently-used eviction.

    Example::

        store = Store(Path("/tmp/jv"), max_bytes=2**20)
        store.put("ab12", b"...")
        store.get("ab12")             # b'...'
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The entry for ``key`` (and mark it used), or None."""
        file = self.path / (key + _SUFFIX)
        try:
            data = zlib.decompress(file.read_bytes())
        except (OSError, zlib.error):
            return None
        with contextlib.suppress(OSError):
            os.utime(file)
        return data

    def put(self, key: str, data: bytes) -> None:
        """Write the entry atomically, then evict the oldest entries beyond ``max_bytes``."""
        packed = zlib.compress(data, 1)
        if len(packed) > self.max_bytes:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(packed)
            os.replace(tmp, self.path / (key + _SUFFIX))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._evict()

    def discard(self, key: str) -> None:
        """Delete the entry for ``key`` if there is one (an entry that failed to load)."""
        (self.path / (key + _SUFFIX)).unlink(missing_ok=True)

    def size(self) -> int:
        """Bytes held by the entries."""
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[int, int, Path]]:
        found = []
        for file in self.path.glob("*" + _SUFFIX):
            with contextlib.suppress(OSError):  # evicted by another process meanwhile
                st = file.stat()
                found.append((st.st_mtime_ns, st.st_size, file))
        return sorted(found)

    def _evict(self) -> None:
        with self._lock:
            entries = self._entries()
            total = sum(size for _, size, _ in entries)
            for _, size, file in entries:  # oldest first
                if total <= self.max_bytes:
                    break
                file.unlink(missing_ok=True)
                total -= size


_state: dict[str, Store | None] = {}  # "store": the store in use once decided; None: off


def _store() -> Store | None:
    """The store in use, decided from the environment at the first call."""
    if "store" not in _state:
        if os.environ.get(ENV, "").strip().lower() in ("", *_OFF):
            _state["store"] = None
        else:
            enable_compilation_cache()
    return _state["store"]


def enable_compilation_cache(
    path: str | os.PathLike[str] | None = None, max_bytes: int | None = None
) -> Path:
    """Store jaxvis's compiled programs in ``path`` (default: ``$JAXVIS_COMPILATION_CACHE`` if
    it names a folder, else ``<jaxvis cache>/compiled``), at most ``max_bytes`` (default
    ``$JAXVIS_CACHE_MAX_BYTES`` or 1 GiB). Returns the folder.

    Only jaxvis's programs are stored; JAX's configuration is left as it is.

    Example::

        jv.enable_compilation_cache()                 # PosixPath('~/.cache/jaxvis/compiled')
        jv.enable_compilation_cache("/tmp/jv", max_bytes=2**28)
    """
    if max_bytes is None:
        max_bytes = int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES))
    max_bytes = check_positive_int(max_bytes, "max_bytes")
    if path is None:
        choice = os.environ.get(ENV, "").strip()
        named = choice and choice.lower() not in (*_OFF, *_ON)
        path = choice if named else cache_dir() / "compiled"
    folder = Path(path).expanduser()
    _state["store"] = Store(folder, max_bytes)
    return folder


def disable_compilation_cache() -> None:
    """Compile jaxvis's programs without the persistent store (in this process).

    Example::

        jv.disable_compilation_cache()
        jv.compilation_cache_dir()        # None
    """
    _state["store"] = None


def compilation_cache_dir() -> Path | None:
    """The folder holding jaxvis's compiled programs, or None when the store is off.

    Example::

        jv.compilation_cache_dir()        # PosixPath('/home/me/.cache/jaxvis/compiled')
    """
    store = _store()
    return None if store is None else store.path


def compile_cached(
    lowered: jax.stages.Lowered, device: jax.Device | None, options: dict[str, str] | None
) -> jax.stages.Compiled:
    """``lowered.compile()``, loaded from the store when this program for ``device`` (the one
    device its arguments live on; None for several: not stored) compiled before."""
    store = _store()
    if store is None or device is None:
        return lowered.compile()
    key = _key(lowered, device, options)
    data = store.get(key)
    if data is not None:
        try:
            compiled = serialize_executable.deserialize_and_load(
                data, lowered.in_tree, lowered.out_tree, device.client, [device]
            )
        except Exception:  # noqa: BLE001 - an unreadable entry: compile again, replace it
            store.discard(key)
        else:
            jax.monitoring.record_event(HIT_EVENT)
            compiled._jaxvis_store_key = key  # type: ignore[attr-defined]  # see discard_loaded
            return compiled
    compiled = lowered.compile()
    try:
        data = serialize_executable.serialize(compiled)[0]
    except (ValueError, NotImplementedError):  # this executable cannot be serialised
        return compiled
    jax.monitoring.record_event(MISS_EVENT)
    try:
        store.put(key, data)
    except OSError as error:  # a read-only or full disk: run on, uncached
        message = f"jaxvis could not store a compiled program in {store.path}: {error.strerror}"
        warnings.warn(message, stacklevel=2)
    return compiled


def discard_loaded(program: jax.stages.Compiled, error: Exception) -> bool:
    """Whether ``program`` came from the store and failed to run as XLA:CPU does with some
    deserialised executables (``NOT_FOUND: Function ... not found``); its entry is dropped,
    so the caller compiles afresh."""
    key = getattr(program, "_jaxvis_store_key", None)
    store = _store()
    if key is None or "NOT_FOUND" not in str(error):
        return False
    if store is not None:
        store.discard(key)
    return True


def _key(lowered: jax.stages.Lowered, device: jax.Device, options: dict[str, str] | None) -> str:
    digest = hashlib.sha256()
    for part in (
        jax.__version__,
        jaxlib.__version__,
        device.platform,
        device.client.platform_version,
        device.device_kind,
        str(device.id),
        repr(sorted((options or {}).items())),
        os.environ.get("XLA_FLAGS", ""),
        repr([getattr(jax.config, name, None) for name in _COMPILE_FLAGS]),
        str(lowered.in_tree),
        repr(jax.tree.leaves(lowered.in_avals)),  # every aval: unused ones are not in the text
        str(lowered.out_tree),
        lowered.as_text(),
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()
