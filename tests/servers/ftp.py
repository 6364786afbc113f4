"""An FTP server over a temp directory (pyftpdlib), for the generic fsspec backend."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

USER, PASSWORD = "fsblob", "ftp-secret-1"


class FtpServer:
    """A threaded FTP server on 127.0.0.1 serving ``root`` to one read-write user."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(self.root), perm="elradfmwMT")
        handler = type("Handler", (FTPHandler,), {"authorizer": authorizer,
                                                  "passive_ports": None})
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self._server = ThreadedFTPServer(("127.0.0.1", 0), handler)
        self.port: int = self._server.address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"timeout": 0.2, "blocking": True}, daemon=True)

    def __enter__(self) -> FtpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close_all()
        self._thread.join(timeout=5)
