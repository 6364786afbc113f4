"""Progress that tells the truth: bytes actually sent, never backwards, binary units
labelled as such, no ETA before there is a rate.

The S3 upload's progress is measured against moto behind the fault proxy: the
proxy dies after 1 MiB of the body, so a bar that counted botocore's checksum
passes (which read the whole file before a byte is sent) would show far more."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path
import pytest
from fsspec.callbacks import Callback

from fsblob import BlobTransferError
from fsblob.cli import Progress
from tests.conftest import Case

MiB = 2**20


class Recorder(Callback):
    """Every cumulative value reported, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.values: list[int] = []
        self.total = 0

    def relative_update(self, inc: int = 1) -> None:
        with self.lock:
            self.total += inc
            self.values.append(self.total)


def _file(path: Path, size: int) -> Path:
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


@pytest.mark.parametrize("threshold", ["1GiB", "5MiB"], ids=["single-put", "multipart"])
def test_s3_upload_progress_is_monotonic_and_counts_each_byte_once(
        s3_case: Case, tmp_path: Path, threshold: str) -> None:
    manager = s3_case.make(multipart_threshold=threshold, multipart_chunksize="5MiB")
    src = _file(tmp_path / "big.bin", 12 * MiB)
    recorder = Recorder()
    manager.upload(src, callback=recorder)
    assert recorder.values == sorted(recorder.values), "progress went backwards"
    assert recorder.total == src.stat().st_size, "bytes counted more than once"


def test_s3_upload_progress_counts_only_what_was_sent(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make(multipart_threshold="1GiB", retries=0)
    src = _file(tmp_path / "big.bin", 24 * MiB)
    recorder = Recorder()
    s3_case.server.kill_after(1 * MiB)
    try:
        with pytest.raises(BlobTransferError):
            manager.upload(src, callback=recorder)
    finally:
        s3_case.server.start()
    assert max(recorder.values, default=0) < 12 * MiB, (
        f"reported {max(recorder.values, default=0)} bytes sent of a body cut after 1 MiB")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _bar(size: int | None = 100 * MiB) -> tuple[Progress, io.StringIO, Clock]:
    stream, clock = io.StringIO(), Clock()
    bar = Progress("model.bin", stream=stream, enabled=True, clock=clock)
    if size is not None:
        bar.set_size(size)
    return bar, stream, clock


def _frames(stream: io.StringIO) -> list[str]:
    return [f.strip() for f in stream.getvalue().split("\r") if f.strip()]


def test_bar_uses_binary_units_and_shows_no_eta_before_a_rate() -> None:
    bar, stream, clock = _bar()
    clock.now = 1.2
    bar.relative_update(3 * MiB)  # first frame, 1.2 s in: no rate measured yet
    first = _frames(stream)[-1]
    assert "ETA" not in first and "/s" not in first, first
    assert "3.0 MiB / 100.0 MiB" in first
    clock.now = 3.2
    bar.relative_update(20 * MiB)
    later = _frames(stream)[-1]
    assert "10.0 MiB/s" in later and "ETA 0:08" in later, later
    assert "MB" not in stream.getvalue() and "kB" not in stream.getvalue()


def test_bar_never_goes_backwards_and_is_silent_for_a_second() -> None:
    bar, stream, clock = _bar()
    clock.now = 0.5
    bar.relative_update(50 * MiB)
    assert stream.getvalue() == "", "nothing is drawn in the first second"
    clock.now = 1.5
    bar.relative_update(-30 * MiB)  # a client rewinding
    clock.now = 2.0
    bar.set_size(100 * MiB)  # a retry starts over
    bar.relative_update(10 * MiB)
    percents = [int(f.split("%")[0].split()[-1]) for f in _frames(stream) if "%" in f]
    assert percents and percents == sorted(percents) and percents[0] == 50, percents


def test_bar_without_a_size_shows_bytes_and_rate() -> None:
    bar, stream, clock = _bar(size=None)
    clock.now = 2.0
    bar.relative_update(4 * MiB)
    frame = _frames(stream)[-1]
    assert "4.0 MiB" in frame and "%" not in frame and "ETA" not in frame


def test_many_files_count_files_and_their_bytes() -> None:
    bar, stream, clock = _bar(size=None)
    bar.set_size(5)  # fsspec's get/put: the number of files
    for n in range(5):
        clock.now = 1.0 + n
        with bar.branched(f"r/{n}", f"l/{n}") as child:
            child.set_size(2 * MiB)
            child.relative_update(2 * MiB)
        clock.now += 0.5
        bar.relative_update(1)
    frames = _frames(stream)
    assert frames[-1].startswith("model.bin 5/5 files 10.0 MiB 1.8 MiB/s"), frames
    assert all("%" not in f and "ETA" not in f and " B /" not in f for f in frames), frames


class SteppingClock:
    """Half a second later at every reading: frames are drawn as a transfer goes."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_s3_tree_download_shows_the_bytes_of_all_its_files(s3_case: Case, tmp_path: Path) -> None:
    manager = s3_case.make()
    tree = tmp_path / "run"
    tree.mkdir()
    for n in range(4):
        (tree / f"part-{n}.bin").write_bytes(bytes([n]) * MiB)
    uri = manager.upload(tree)
    stream = io.StringIO()
    with Progress("run", stream=stream, enabled=True, clock=SteppingClock()) as bar:
        manager.download(uri, tmp_path / "out", callback=bar)
    frames = _frames(stream)
    assert frames, "nothing drawn"
    assert all("/ 4.0 MiB" in f for f in frames), frames  # one total: the tree's bytes
    assert "100%" in frames[-1] and "4.0 MiB / 4.0 MiB" in frames[-1], frames


def test_bar_is_off_when_not_enabled() -> None:
    stream = io.StringIO()
    bar = Progress("x", stream=stream, enabled=False, clock=lambda: 10.0)
    bar.set_size(10)
    bar.relative_update(5)
    bar.close()
    assert stream.getvalue() == ""


def test_cli_bar_on_a_terminal_through_a_slow_link(s3_case: Case, tmp_path: Path) -> None:
    """``fsblob upload`` with stderr on a pseudo-terminal, through an 8 MiB/s link: the
    frames use MiB, their percentages never fall, and the first has no ETA."""
    import os
    import subprocess
    import sys
    from urllib.parse import urlsplit

    from benchmarks.shaper import Shaper

    root = Path(__file__).resolve().parents[1]
    src = _file(tmp_path / "big.bin", 32 * MiB)
    upstream = urlsplit(s3_case.config["endpoint_url"]).netloc
    with Shaper(upstream, rate=8 * MiB, delay=0.005) as shaper:
        config = {**s3_case.config, "endpoint_url": shaper.url, "multipart_threshold": "1GiB"}
        lines = "".join(f"    {k}: {v}\n" for k, v in config.items())
        (tmp_path / "p.yaml").write_text(
            f"blob:\n  blob_manager_class: fsblob.S3BlobManager\n  blob_manager_config:\n{lines}")
        master, slave = os.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "fsblob", "upload", str(src), "--config",
                                 str(tmp_path / "p.yaml")], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=slave, env={**os.environ, "PYTHONPATH": str(root)})
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        proc.wait(timeout=120)
        os.close(master)
    assert proc.returncode == 0, seen
    text = seen.decode()
    frames = [f.strip() for f in text.split("\r") if "%" in f]
    assert frames, f"no progress drawn: {text!r}"
    percents = [int(re.search(r"(\d+)%", f).group(1)) for f in frames]  # type: ignore[union-attr]
    assert percents == sorted(percents), percents
    assert all("MiB" in f for f in frames) and "MB" not in text
    assert "ETA" not in frames[0]
    assert any("MiB/s" in f for f in frames), frames
