"""The ``fsblob`` command: upload, download, list, remove and share artifacts.

``--config project.yaml`` (its ``blob`` section picks the manager) and ``-v``
go before or after the subcommand; without ``--config``, artifacts go to an
embedded local store, ``./fsblob-store``. ``-v`` shows fsblob's own steps,
``-vv`` adds the client libraries' debug output (secrets redacted). Errors print
one line on stderr and exit with status 1 (2 for a bad configuration or usage).

A subcommand is a function ``(manager, args) -> int`` in :data:`COMMANDS`, with
its arguments declared in :func:`_parser`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fsspec.callbacks import Callback, TqdmCallback

from fsblob import __version__
from fsblob.config import BlobConfig, BlobManagerFactory, load_project_config
from fsblob.errors import BlobConfigError, BlobError
from fsblob.manager import FsspecBlobManager, LocalBlobManager

DEFAULT_STORE = "fsblob-store"
DEFAULT_EXPIRES = "1h"

log = logging.getLogger("fsblob")

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    verbosity = args.verbose + args.sub_verbose
    _configure_logging(verbosity)
    config = args.sub_config or args.config
    try:
        manager = _manager(config)
        log.info("store: %r%s", manager, f" (from {config})" if config else "")
        return COMMANDS[args.command](manager, args)
    except BlobConfigError as exc:
        print(f"fsblob: configuration error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BlobError as exc:
        print(f"fsblob: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fsblob: interrupted", file=sys.stderr)
        return 130


# -- subcommands ------------------------------------------------------------------


def _upload(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    print(manager.upload(args.path, callback=_progress(args.path)))
    return 0


def _download(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    log.info("download %s to %s", args.uri, args.dir or "the cache")
    path = manager.download(args.uri, args.dir, callback=_progress(args.uri))
    log.info("%s is at %s", args.uri, path)  # the engine logged which check was made
    print(path)
    return 0


def _ls(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    for uri in manager.ls():
        print(uri)
    return 0


def _rm(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    manager.delete(args.uri)
    log.info("deleted %s", args.uri)
    return 0


def _url(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    print(manager.sign(args.uri, expires=args.expires))
    return 0


def _gc(manager: FsspecBlobManager, args: argparse.Namespace) -> int:
    removed = manager.gc(older_than=args.older_than)
    for uri in removed:
        log.info("removed %s", uri)
    print(f"removed {len(removed)} unreferenced object(s) and dead temporaries")
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsblob",
        description="Upload, download, list, remove and share artifacts in a blob store.")
    parser.add_argument("--version", action="version", version=f"fsblob {__version__}")
    _global_options(parser, prefix="")
    # The same options after the subcommand (as git, aws and kubectl take them).
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, prefix="sub_")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    upload = commands.add_parser("upload", parents=[common], help="store a file or directory")
    upload.add_argument("path")
    download = commands.add_parser("download", parents=[common], help="fetch an artifact")
    download.add_argument("uri")
    download.add_argument("dir", nargs="?", help="local directory (default: the cache)")
    commands.add_parser("ls", parents=[common], help="list stored artifacts")
    remove = commands.add_parser("rm", parents=[common], help="delete an artifact")
    remove.add_argument("uri")
    url = commands.add_parser("url", parents=[common],
                              help="print a signed URL that fetches an artifact without credentials")
    url.add_argument("uri")
    url.add_argument("--expires", type=_duration, default=_duration(DEFAULT_EXPIRES),
                     metavar="DURATION",
                     help=f"how long the URL works: seconds, or e.g. 90s, 15m, 1h, 7d "
                          f"(default: {DEFAULT_EXPIRES})")
    gc = commands.add_parser(
        "gc", parents=[common],
        help="remove stored objects no version needs and temporaries of dead uploads")
    gc.add_argument("--older-than", type=_duration, default=_duration("1d"), metavar="DURATION",
                    help="only what is older than this, so running uploads keep theirs "
                         "(default: 1d)")
    return parser


def _global_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument("--config", metavar="PROJECT_YAML", dest=f"{prefix}config",
                        help=f"project.yaml with a 'blob' section (default: ./{DEFAULT_STORE})")
    parser.add_argument("-v", "--verbose", action="count", default=0, dest=f"{prefix}verbose",
                        help="-v: fsblob's steps; -vv: also the client libraries' debug output")


def _duration(text: str) -> float:
    """Seconds from ``3600``, ``90s``, ``15m``, ``1h`` or ``7d``."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; give seconds or a number with s, m, h or d, e.g. 1h")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


# -- the store ---------------------------------------------------------------------


def _manager(config_path: str | None) -> FsspecBlobManager:
    if config_path is None:
        return LocalBlobManager({"root_directory": os.path.abspath(DEFAULT_STORE)})
    blob: BlobConfig = load_project_config(config_path)
    manager = BlobManagerFactory.create_blob_manager(
        blob.blob_manager_class(), blob.blob_manager_config())
    if not isinstance(manager, FsspecBlobManager):
        raise BlobConfigError(f"{blob.blob_manager_class()} is not an fsblob manager")
    return manager


# -- output ------------------------------------------------------------------------


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


def _progress(label: str) -> Callback:
    """A tqdm progress bar on stderr, shown only on a terminal and after 1 s."""
    kwargs: dict[str, Any] = {
        "desc": os.path.basename(label.rstrip("/")), "unit": "B", "unit_scale": True,
        "unit_divisor": 1024, "delay": 1.0, "leave": False, "file": sys.stderr,
        "disable": not sys.stderr.isatty(),
    }
    return TqdmCallback(tqdm_kwargs=kwargs)


if __name__ == "__main__":
    sys.exit(main())
