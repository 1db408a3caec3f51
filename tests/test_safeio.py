"""engine/safeio.py: bounded reads of regular files, depth-checked parsing, confined no-overwrite writes."""

from __future__ import annotations

import errno
import os
import threading
import time
from unittest import mock

import pytest

from engine import safeio
from engine.safeio import FileRefused


def test_non_regular_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    done = []
    t = threading.Thread(target=lambda: done.append(pytest.raises(FileRefused, safeio.read_bytes, fifo, 100)),
                         daemon=True)
    t.start()
    t.join(10)  # a blocking open of a FIFO with no writer would never return
    assert done, "reading a FIFO blocked"
    with pytest.raises(FileRefused, match="not a regular file"):
        safeio.read_bytes("/dev/zero", 1 << 20)
    with pytest.raises(FileRefused, match="directory"):
        safeio.read_bytes(tmp_path, 100)
    with pytest.raises(FileNotFoundError):
        safeio.read_bytes(tmp_path / "missing", 100)


def test_size_limit_is_checked_before_reading(tmp_path):
    big = tmp_path / "big.toml"
    big.write_bytes(b"a" * 2000)
    assert safeio.read_bytes(big, 2000) == b"a" * 2000
    with pytest.raises(FileRefused, match="too large"):
        safeio.read_bytes(big, 1999)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(FileRefused, match="UTF-8"):
        safeio.read_text(bad, 100)


def test_depth_scan_counts_brackets_outside_strings_and_comments():
    text = 'a = "[[[[" # [[[[\nb = [[1], [2]]\n[[t]]\nc = """x "[" """\nd = \'[[[\'\n'
    assert safeio.toml_depth(text) == 2
    assert safeio.json_depth('{"a": "[[\\"[", "b": [[1]]}') == 3
    deep = "a = " + "[" * 100_000 + "]" * 100_000
    t0 = time.perf_counter()
    with pytest.raises(FileRefused, match="too deep"):
        safeio.toml_loads(deep, "x.toml")
    scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    with pytest.raises(FileRefused, match="too deep"):
        safeio.json_loads("[" * 100_000, "x.json")
    assert scan < 50 * max(time.perf_counter() - t0, 1e-3)  # both linear: same order of time
    assert safeio.toml_loads("a = [[1]]") == {"a": [[1]]}
    assert safeio.json_loads('{"a": [1]}') == {"a": [1]}


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", ".hidden", "a\x00b", "tab\there", "x" * 101,
                                  "", "..", " lead", "c:evil"])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(FileRefused):
        safeio.child_path(tmp_path, name, ".toml")


def test_child_path_stays_in_its_folder(tmp_path):
    assert safeio.child_path(tmp_path, "take", ".mp4") == tmp_path.resolve() / "take.mp4"
    assert safeio.child_path(tmp_path, "Take.MP4", ".mp4") == tmp_path.resolve() / "Take.MP4"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (tmp_path / "link.toml").symlink_to(outside / "x.toml")
    with pytest.raises(FileRefused, match="leaves the folder"):
        safeio.child_path(tmp_path, "link.toml")


def test_write_new_never_replaces_and_write_atomic_does(tmp_path):
    p = tmp_path / "preset.toml"
    safeio.write_new(p, b"one")
    with pytest.raises(FileExistsError):
        safeio.write_new(p, b"two")
    assert p.read_bytes() == b"one"
    safeio.write_atomic(p, b"three")
    assert p.read_bytes() == b"three"
    assert sorted(os.listdir(tmp_path)) == ["preset.toml"]  # no temporary file left behind
    assert safeio.unique_path(tmp_path, "preset", ".toml").name == "preset-2.toml"


def test_write_new_without_hard_links_still_never_replaces(tmp_path):
    # FAT/exFAT (USB sticks) have no hard links: os.link fails with EPERM there.
    p = tmp_path / "still.png"
    with mock.patch("os.link", side_effect=OSError(errno.EPERM, "Operation not permitted")):
        safeio.write_new(p, b"png")
        with pytest.raises(FileExistsError):
            safeio.write_new(p, b"other")
    assert p.read_bytes() == b"png"
    assert sorted(os.listdir(tmp_path)) == ["still.png"]
