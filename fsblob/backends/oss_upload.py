"""Multipart uploads to OSS with several parts in flight, streamed from the file.

ossfs's ``put_file`` sends a file below 100 MiB as one ``PutObject`` and larger
ones through oss2's resumable upload, one part at a time, leaving a checkpoint
and the unfinished upload behind when it fails. From ``multipart_threshold`` on,
fsblob sends the parts itself with oss2's primitives: ``max_concurrency`` parts
in flight (threads: oss2 is synchronous), each read from its window of the file
as it is sent. oss2 computes each part's CRC64 as it streams and checks it
against the one OSS answers; ``CompleteMultipartUpload``'s answer carries the
whole object's CRC64, which oss2 checks against the parts' CRCs combined. A
failed upload is aborted, so no parts are left behind.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from fsspec.callbacks import Callback

from fsblob import stall
from fsblob.chunks import TransferSettings

log = logging.getLogger("fsblob")

MAX_PARTS = 10_000
#: OSS's smallest part (but the last) is 100 KiB; S3-compatible gateways want 5 MiB.
MIN_PART = 5 * 2**20


def put_file(fs: Any, lpath: str, rpath: str, callback: Callback,
             settings: TransferSettings) -> None:
    """Upload ``lpath`` to ``rpath`` on the ossfs filesystem ``fs`` in parallel parts
    (with ossfs's own ``put_file`` when it is one part)."""
    import oss2

    bucket_name, key = fs.split_path(rpath)
    bucket = fs._get_bucket(bucket_name)
    size = os.path.getsize(lpath)
    callback.set_size(size)
    part_size = max(settings.part_size(size), MIN_PART)
    if size <= part_size:  # one part: ossfs's single PutObject
        fs.put_file(lpath, rpath, callback=callback)
        return
    while -(-size // part_size) > MAX_PARTS:
        part_size *= 2
    upload_id = bucket.init_multipart_upload(key).upload_id
    lock = threading.Lock()

    def send(number: int) -> oss2.models.PartInfo:
        start = (number - 1) * part_size
        length = min(part_size, size - start)
        sent = 0

        def progress(consumed: int, _total: int | None) -> None:
            nonlocal sent
            with lock:  # fsspec callbacks (tqdm) are not thread-safe
                callback.relative_update(consumed - sent)
            sent = consumed

        with open(lpath, "rb") as f:
            f.seek(start)
            answer = bucket.upload_part(key, upload_id, number, oss2.utils.SizedFileAdapter(f, length),
                                        progress_callback=progress)
        return oss2.models.PartInfo(number, answer.etag, size=length, part_crc=answer.crc)

    try:
        with ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="fsblob-part") as pool:
            jobs = [pool.submit(contextvars.copy_context().run, send, n)  # the attempt's limits
                    for n in range(1, -(-size // part_size) + 1)]
            done, _ = wait(jobs, return_when=FIRST_EXCEPTION)
            errors = [error for job in done if (error := job.exception()) is not None]
            if errors:
                for job in jobs:  # parts not yet started are not sent
                    job.cancel()
                raise errors[0]
            parts = [job.result() for job in jobs]
        bucket.complete_multipart_upload(key, upload_id, parts)
    except BaseException:
        try:
            with stall.cleanup():  # a budget of its own, also after a stall
                bucket.abort_multipart_upload(key, upload_id)
        except Exception as exc:  # noqa: BLE001 (the upload's own error is the one to raise)
            log.warning("could not abort multipart upload of oss://%s/%s: %s", bucket_name, key,
                        type(exc).__name__)
        raise
    fs.invalidate_cache(rpath)
