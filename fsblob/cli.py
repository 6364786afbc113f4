"""The ``fsblob`` command: upload, download, list, remove and share artifacts.

The store comes from ``--config project.yaml`` (its ``blob`` section picks the
manager), else from ``$FSBLOB_CONFIG``, else it is the embedded local store
``./fsblob-store`` (a warning says so when that store does not exist yet).
Options go before or after the subcommand. ``-v`` shows fsblob's own steps,
``-vv`` adds the client libraries' debug output (secrets redacted). Results go
to stdout, one per line; messages to stderr. Errors print one line on stderr
and exit with status 1 (2 for a bad configuration or usage).

A subcommand is a function ``(manager, args) -> int`` in :data:`COMMANDS`, with
its arguments declared in :func:`_parser`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn
from urllib.parse import urlsplit

from fsspec.callbacks import Callback

from fsblob import __version__
from fsblob.config import BlobConfig, BlobManagerFactory, load_project_config
from fsblob.errors import BlobConfigError, BlobError, BlobTransferError, describe_endpoint
from fsblob.manager import FsspecBlobManager, LocalBlobManager

DEFAULT_STORE = "fsblob-store"
DEFAULT_EXPIRES = "1h"
#: The environment variable naming the project file when ``--config`` is not given.
CONFIG_ENV = "FSBLOB_CONFIG"
#: Seconds without any progress before "still waiting for <endpoint>..." is printed.
WAIT_NOTICE = 5.0
#: Seconds between two such lines while the wait goes on.
WAIT_REPEAT = 15.0

log = logging.getLogger("fsblob")

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    verbosity = args.verbose + args.sub_verbose
    _configure_logging(verbosity)
    config = args.sub_config or args.config or os.environ.get(CONFIG_ENV) or None
    timeout = args.sub_timeout if args.sub_timeout is not None else args.timeout
    started = time.monotonic()
    waiting: StillWaiting | None = None
    try:
        _load_plugins([*args.plugin, *args.sub_plugin])
        manager = _manager(config, timeout, args.command)
        where = f" (from {config})" if config else ""
        log.info("store: %r%s", manager, where)
        waiting = StillWaiting(_endpoint(manager), timeout)
        args.waiting = waiting
        waiting.start()
        return COMMANDS[args.command](manager, args)
    except BlobConfigError as exc:
        _stop(waiting)
        print(f"fsblob: configuration error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BlobError as exc:
        _stop(waiting)
        hint = ""
        if isinstance(exc, BlobTransferError) and (
                time.monotonic() - started >= WAIT_NOTICE or " attempts" in str(exc)):
            hint = (f" (gave up after {time.monotonic() - started:.0f} s; --timeout SECONDS, "
                    "or stall_timeout and retry_deadline in the project file, sets how long "
                    "fsblob waits and retries)")
        print(f"fsblob: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _stop(waiting)
        print("fsblob: interrupted", file=sys.stderr)
        return 130
    finally:
        _stop(waiting)


def _stop(waiting: StillWaiting | None) -> None:
    if waiting is not None:
        waiting.stop()


# -- subcommands ------------------------------------------------------------------


def _upload(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    with _progress(args, args.path) as progress:
        uri = manager.upload(args.path, callback=progress)
    print(uri)
    return 0


def _download(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    dest = args.dest or "."
    log.info("download %s to %s", args.uri, os.path.abspath(dest))
    with _progress(args, args.uri) as progress:
        path = manager.download(args.uri, dest, callback=progress)
    log.info("%s is at %s", args.uri, path)  # the engine logged which check was made
    print(path)
    return 0


def _ls(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    found = manager.ls(args.path)
    for uri in found:
        print(uri)
    if args.path and not found:
        print(f"fsblob: nothing stored at or under {args.path}", file=sys.stderr)
        return 1
    return 0


def _rm(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    manager.delete(args.uri)
    print(f"deleted {args.uri}")
    return 0


def _url(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    if not args.expires > 0:
        raise BlobConfigError("--expires must be longer than 0 s, e.g. 15m or 1h")
    print(manager.sign(args.uri, expires=args.expires))
    return 0


def _gc(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    removed = manager.gc(older_than=args.older_than, keep=args.keep)
    for uri in removed:
        log.info("removed %s", uri)
    print(f"removed {len(removed)} superseded version(s), dead temporaries and abandoned uploads")
    return 0


#: Subcommand name -> what it runs.
COMMANDS: dict[str, Callable[[FsspecBlobManager, argparse.Namespace], int]] = {
    "upload": _upload,
    "download": _download,
    "ls": _ls,
    "rm": _rm,
    "url": _url,
    "gc": _gc,
}


class _Parser(argparse.ArgumentParser):
    """An argument parser that suggests the closest subcommand for a mistyped one."""

    def error(self, message: str) -> NoReturn:
        match = re.search(r"invalid choice: '([^']*)'", message)
        if match:
            typed = match.group(1)
            close = difflib.get_close_matches(typed, list(COMMANDS), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            message = (f"'{typed}' is not an fsblob command; {hint}"
                       f"the commands are: {', '.join(COMMANDS)}")
        super().error(message)


def _count(text: str) -> int:
    """A whole number >= 0, for argparse."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0, e.g. 2")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fsblob",
        description="Upload, download, list, remove and share artifacts in a blob store. "
                    f"The store is the 'blob' section of --config (or ${CONFIG_ENV}); "
                    f"without either, ./{DEFAULT_STORE}.")
    parser.add_argument("--version", action="version", version=f"fsblob {__version__}")
    _global_options(parser, prefix="")
    # The same options after the subcommand (as git, aws and kubectl take them).
    common = _Parser(add_help=False)
    _global_options(common, prefix="sub_")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    upload = commands.add_parser("upload", parents=[common], help="store a file or directory; "
                                 "prints its URI")
    upload.add_argument("path")
    download = commands.add_parser("download", parents=[common],
                                   help="fetch an artifact into DEST (default: here); prints its path")
    download.add_argument("uri")
    download.add_argument("dest", nargs="?", metavar="DEST",
                          help="local directory, created if needed (default: the current directory)")
    ls = commands.add_parser("ls", parents=[common],
                             help="list stored artifacts, or what is inside a URI or under a prefix")
    ls.add_argument("path", nargs="?", metavar="URI|PREFIX",
                    help="a directory, an artifact or a name prefix (default: the whole root)")
    remove = commands.add_parser("rm", parents=[common], help="delete an artifact")
    remove.add_argument("uri")
    url = commands.add_parser("url", parents=[common],
                              help="print a signed URL that fetches an artifact without credentials")
    url.add_argument("uri")
    url.add_argument("--expires", type=_duration, default=_duration(DEFAULT_EXPIRES),
                     metavar="DURATION",
                     help=f"how long the URL works: seconds, or e.g. 90s, 15m, 1h, 7d, 1w "
                          f"(default: {DEFAULT_EXPIRES}; S3 allows at most 7d)")
    gc = commands.add_parser(
        "gc", parents=[common],
        help="remove tree versions no name points to, and temporaries of dead uploads")
    gc.add_argument("--older-than", type=_duration, default=_duration("1d"), metavar="DURATION",
                    help="only versions superseded (and temporaries made) longer ago than "
                         "this, so readers and running uploads keep theirs (default: 1d)")
    gc.add_argument("--keep", type=_count, default=2, metavar="N",
                    help="keep the N newest superseded versions of each tree (default: 2)")
    return parser


def _global_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument("--config", metavar="PROJECT_YAML", dest=f"{prefix}config",
                        help=f"project.yaml with a 'blob' section (default: ${CONFIG_ENV}, "
                             f"else ./{DEFAULT_STORE})")
    parser.add_argument("--timeout", metavar="SECONDS", type=_duration, dest=f"{prefix}timeout",
                        default=None,
                        help="give up on a request when nothing moved for this long, and start "
                             "no retry after it, e.g. 10 or 2m (the config keys stall_timeout "
                             "and retry_deadline; defaults 30 s and 60 s)")
    parser.add_argument("--plugin", metavar="MODULE", action="append", default=[],
                        dest=f"{prefix}plugin",
                        help="import a module (or a .py file) first, e.g. one that registers an "
                             "fsspec protocol or an fsblob backend; may be repeated")
    parser.add_argument("-v", "--verbose", action="count", default=0, dest=f"{prefix}verbose",
                        help="-v: fsblob's steps; -vv: also the client libraries' debug output")


def _duration(text: str) -> float:
    """Seconds from ``0``, ``3600``, ``90s``, ``15m``, ``1h``, ``7d`` or ``1w``."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; give seconds or a number with s, m, h, d or w, "
            "e.g. 0, 90s, 1h or 1w")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


# -- the store ---------------------------------------------------------------------


def _load_plugins(modules: Sequence[str]) -> None:
    """Import each ``--plugin``: a module name (found from the current directory too,
    as ``python -m`` would) or the path of a ``.py`` file."""
    for name in modules:
        try:
            if name.endswith(".py") or os.sep in name:
                spec = importlib.util.spec_from_file_location(
                    os.path.splitext(os.path.basename(name))[0], name)
                if spec is None or spec.loader is None or not os.path.isfile(name):
                    raise ImportError(f"no such file {name}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                if os.getcwd() not in sys.path and "" not in sys.path:
                    sys.path.insert(0, os.getcwd())
                importlib.import_module(name)
        except Exception as exc:  # a plugin's own error is shown, on one line
            raise BlobConfigError(
                f"--plugin {name}: cannot import it: {type(exc).__name__}: {exc}") from None
        log.info("plugin %s loaded", name)


#: The shortest stall_timeout --timeout sets (a request needs a moment to start moving).
MIN_STALL = 1.0


def _manager(config_path: str | None, timeout: float | None, command: str) -> FsspecBlobManager:
    engine = {} if timeout is None else {"retry_deadline": timeout,
                                         "stall_timeout": max(timeout, MIN_STALL)}
    if config_path is None:
        root = os.path.abspath(DEFAULT_STORE)
        if not os.path.isdir(root):
            what = ("storing in" if command == "upload"
                    else "it does not exist, so there is nothing in")
            print(f"fsblob: warning: no store configured (no --config, no ${CONFIG_ENV}); "
                  f"using the embedded local store {root}: {what} it", file=sys.stderr)
        return LocalBlobManager({"root_directory": root, **engine})
    blob: BlobConfig = load_project_config(config_path)
    options = {**blob.blob_manager_config(), **engine}
    manager = BlobManagerFactory.create_blob_manager(blob.blob_manager_class(), options)
    if not isinstance(manager, FsspecBlobManager):
        raise BlobConfigError(f"{blob.blob_manager_class()} is not an fsblob manager")
    return manager


def _endpoint(manager: FsspecBlobManager) -> str:
    """What the store talks to, as a user would name it: the endpoint URL or server."""
    options = manager.storage_options
    endpoint = options.get("endpoint_url") or options.get("endpoint")
    if isinstance(endpoint, str) and endpoint:
        return describe_endpoint(endpoint)
    parts = urlsplit(manager.root_url)
    if parts.scheme and parts.netloc:
        return describe_endpoint(f"{parts.scheme}://{parts.netloc}")
    return manager.root_url


# -- output ------------------------------------------------------------------------


def _fmt_bytes(n: float) -> str:
    """Binary units, labelled as such: ``512 B``, ``3.0 KiB``, ``12.5 MiB``."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress(Callback):
    """A one-line progress display for an fsspec transfer, on a terminal only.

    Honest by construction: it shows the bytes the transfer reports (S3 uploads
    report bytes handed to the connection), never moves back (a client rewinding
    or a retry starting over does not lower it), uses binary units labelled KiB,
    MiB, GiB, and shows a rate and an ETA only once a second of transfer has been
    measured. Nothing is drawn in the first second; the line is erased at the end.

    Args:
        label: what is moving (its base name is shown).
        stream: where to draw (default: stderr).
        enabled: draw at all (default: when ``stream`` is a terminal).
        clock: a monotonic clock, for tests.
    """

    DELAY = 1.0  #: seconds before the first frame
    REDRAW = 0.2  #: seconds between frames
    MEASURE = 1.0  #: seconds of transfer before a rate (and an ETA) is shown

    def __init__(self, label: str, *, stream: IO[str] | None = None, enabled: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._label = os.path.basename(label.rstrip("/")) or label
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        #: When the transfer last moved (or started): what "still waiting" watches.
        self.last_activity = self._start
        self._size: int | None = None
        self._attempt = 0  # bytes counted by the current attempt
        self._shown = 0  # the most ever shown: the display never goes back
        self._first: tuple[float, int] | None = None  # (time, bytes) of the first bytes
        #: Many files (fsspec's get/put hands each file a branched callback): the count
        #: is of files, and the bytes come from the children.
        self._files = False
        self._bytes = 0
        self._drawn_at: float | None = None
        self._width = 0

    def set_size(self, size: Any) -> None:
        with self._lock:  # a retry starts over: count again, keep what is shown
            self._size = int(size) if size is not None else None
            self._attempt = 0
            self.last_activity = self._clock()

    def absolute_update(self, value: Any) -> None:
        self._moved(int(value) - self._attempt)

    def relative_update(self, inc: Any = 1) -> None:
        self._moved(int(inc))

    def branched(self, path_1: Any, path_2: Any, **kwargs: Any) -> Callback:
        """The callback of one file of a many-file transfer: from now on this
        display counts files, and the children's bytes give the bytes and rate."""
        with self._lock:
            if not self._files:
                self._files, self._first = True, None
        return _FileBytes(self)

    def _moved(self, inc: int) -> None:
        with self._lock:
            now = self._clock()
            self._attempt += inc
            seen = self._attempt if self._size is None else min(self._attempt, self._size)
            if seen > self._shown:
                self._shown = seen
                self.last_activity = now
                if self._first is None and not self._files:
                    self._first = (now, self._shown)
            self._draw(now)

    def _child_bytes(self, inc: int) -> None:
        """Bytes of one file of a many-file transfer."""
        with self._lock:
            if inc <= 0:
                return
            now = self._clock()
            self._bytes += inc
            self.last_activity = now
            if self._first is None:
                self._first = (now, self._bytes)
            self._draw(now)

    def _line(self, now: float) -> str:
        parts = [self._label]
        moved = self._bytes if self._files else self._shown
        if self._files:
            parts.append(f"{self._shown}/{self._size} files" if self._size
                         else f"{self._shown} files")
            parts.append(_fmt_bytes(moved))
        elif self._size:
            parts.append(f"{100 * self._shown // self._size:3d}%")
            parts.append(f"{_fmt_bytes(self._shown)} / {_fmt_bytes(self._size)}")
        else:
            parts.append(_fmt_bytes(self._shown))
        if self._first is not None and now - self._first[0] >= self.MEASURE:
            rate = (moved - self._first[1]) / (now - self._first[0])
            if rate > 0:
                parts.append(f"{_fmt_bytes(rate)}/s")
                if self._size and self._shown < self._size and not self._files:
                    parts.append(f"ETA {_fmt_time((self._size - self._shown) / rate)}")
        if self._size and self._shown >= self._size:
            parts.append("(all moved; finishing)")
        return " ".join(parts)

    def _draw(self, now: float) -> None:
        if not self._enabled or now - self._start < self.DELAY:
            return
        if self._drawn_at is not None and now - self._drawn_at < self.REDRAW:
            return
        line = self._line(now)
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width, self._drawn_at = len(line), now

    def refresh(self) -> None:
        """Redraw without news (a timer calls it): the line then still shows the
        elapsed rate, and that everything was sent while the store finishes."""
        with self._lock:
            if self._size is not None or self._shown:
                self._draw(self._clock())

    def interrupt(self) -> None:
        """End the drawn line, so that a message can be printed below it."""
        with self._lock:
            if self._width:
                self._stream.write("\n")
                self._stream.flush()
                self._width, self._drawn_at = 0, None

    def close(self) -> None:
        """Erase the line."""
        with self._lock:
            if self._width:
                self._stream.write("\r" + " " * self._width + "\r")
                self._stream.flush()
                self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _FileBytes(Callback):
    """A branched callback: one file's bytes, added to its :class:`Progress`."""

    def __init__(self, parent: Progress) -> None:
        super().__init__()
        self._parent = parent
        self.value: int = 0

    def set_size(self, size: Any) -> None:
        self.size = size

    def relative_update(self, inc: Any = 1) -> None:
        self.value += int(inc)
        self._parent._child_bytes(int(inc))

    def absolute_update(self, value: Any) -> None:
        self._parent._child_bytes(int(value) - self.value)
        self.value = int(value)


class StillWaiting:
    """Prints ``fsblob: still waiting for <endpoint>...`` on stderr when nothing has
    moved for :data:`WAIT_NOTICE` seconds, and again every :data:`WAIT_REPEAT`.

    It watches the current :class:`Progress` (set by :func:`_progress`); without
    one, the time since the command started.
    """

    def __init__(self, endpoint: str, timeout: float | None, *,
                 stream: IO[str] | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.progress: Progress | None = None
        self._stream = stream if stream is not None else sys.stderr
        self._start = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fsblob-still-waiting",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        said = 0.0
        while not self._stopped.wait(0.25):
            if self.progress is not None:
                self.progress.refresh()
            now = time.monotonic()
            since = self._start if self.progress is None else max(
                self._start, self.progress.last_activity)
            idle = now - since
            if idle >= WAIT_NOTICE and now - said >= WAIT_REPEAT:
                said = now
                bound = (f"--timeout {self.timeout:g}" if self.timeout is not None
                         else "--timeout SECONDS, or stall_timeout in the project file,")
                if self.progress is not None:
                    self.progress.interrupt()
                self._stream.write(f"fsblob: still waiting for {self.endpoint}... "
                                   f"({idle:.0f} s without progress; {bound} limits the "
                                   "retries)\n")
                self._stream.flush()


def _progress(args: argparse.Namespace, label: str) -> Progress:
    """The progress display of a transfer, watched by the "still waiting" notice."""
    progress = Progress(label)
    waiting = getattr(args, "waiting", None)
    if waiting is not None:
        waiting.progress = progress
    return progress


class _RetryAsInfo(logging.Filter):
    """Shows fsblob's "retrying" warnings as INFO, so that only ``-v`` prints them:
    without it, the final error says how many attempts were made."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.module == "retry" and record.levelno == logging.WARNING:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_HANDLER = logging.StreamHandler()
_HANDLER.setFormatter(logging.Formatter("%(name)s: %(message)s"))
_RETRY_AS_INFO = _RetryAsInfo()


def _configure_logging(verbosity: int) -> None:
    """Warnings only; ``-v``: everything fsblob logs; ``-vv``: the libraries' debug too."""
    _HANDLER.setStream(sys.stderr)
    _HANDLER.setLevel(logging.DEBUG if verbosity >= 1 else logging.WARNING)
    root = logging.getLogger()
    root.addHandler(_HANDLER)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    fsblob_log = logging.getLogger("fsblob")
    fsblob_log.setLevel(logging.DEBUG if verbosity >= 1 else logging.WARNING)
    fsblob_log.addFilter(_RETRY_AS_INFO)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
