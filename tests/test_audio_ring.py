"""RingBuffer and HopReader: wrap-around, overwrite detection, ordered hops."""

import numpy as np
import pytest

from engine.audio.ring import HopReader, RingBuffer


def ramp(start, n):
    return np.arange(start, start + n, dtype=np.float32)


def test_write_read_wraps_around():
    ring = RingBuffer(10)
    ring.write(ramp(0, 7))
    ring.write(ramp(7, 6))  # wraps: positions 7..9 then 0..2
    assert ring.total_written == 13
    out = np.zeros(8, dtype=np.float32)
    assert ring.read(5, out)
    np.testing.assert_array_equal(out, ramp(5, 8))


def test_read_too_old_or_not_yet_written_fails():
    ring = RingBuffer(10)
    ring.write(ramp(0, 25))
    out = np.zeros(4, dtype=np.float32)
    assert not ring.read(14, out)      # overwritten: only 15..24 remain
    assert ring.read(15, out)
    np.testing.assert_array_equal(out, ramp(15, 4))
    assert not ring.read(22, out)      # 25 is not written yet
    assert not ring.read(-1, out)
    assert not ring.read(0, np.zeros(11, dtype=np.float32))  # longer than the ring


def test_block_larger_than_capacity_keeps_its_tail():
    ring = RingBuffer(8)
    ring.write(ramp(0, 3))
    ring.write(ramp(3, 20))
    assert ring.total_written == 23
    out = np.zeros(8, dtype=np.float32)
    assert ring.read(15, out)
    np.testing.assert_array_equal(out, ramp(15, 8))
    assert ring.oldest() == 15


def test_write_accepts_strided_views():
    ring = RingBuffer(16)
    stereo = np.stack([ramp(0, 6), -ramp(0, 6)], axis=1)
    ring.write(stereo[:, 1])
    out = np.zeros(6, dtype=np.float32)
    assert ring.read(0, out)
    np.testing.assert_array_equal(out, -ramp(0, 6))


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        RingBuffer(0)


def test_hop_reader_gives_each_hop_once_in_order_whatever_the_chunking():
    ring = RingBuffer(64)
    reader = HopReader(ring, hop=8)
    rng = np.random.default_rng(1)
    got = []
    written = 0
    while written < 200:
        n = int(rng.integers(1, 13))
        ring.write(ramp(written, n))
        written += n
        got += [h.copy() for h in reader.hops()]
    assert len(got) == written // 8
    np.testing.assert_array_equal(np.concatenate(got), ramp(0, len(got) * 8))
    assert reader.dropped == 0


def test_hop_reader_respects_upto_and_skips_what_was_overwritten():
    ring = RingBuffer(32)
    reader = HopReader(ring, hop=8)
    ring.write(ramp(0, 20))
    assert [h[0] for h in reader.hops(upto=17)] == [0.0, 8.0]
    ring.write(ramp(20, 60))  # 80 written; only 48..79 remain
    starts = [float(h[0]) for h in reader.hops()]
    assert starts == [48.0, 56.0, 64.0, 72.0]
    assert reader.dropped == 32


def test_hop_reader_blocks_are_whole_consecutive_hops_and_skip_what_was_overwritten():
    ring = RingBuffer(64)
    reader = HopReader(ring, hop=8)
    ring.write(ramp(0, 43))
    blocks = [b.copy() for b in reader.blocks(max_hops=3)]
    assert [len(b) for b in blocks] == [24, 16]          # 5 whole hops: 3 + 2, the rest waits
    np.testing.assert_array_equal(np.concatenate(blocks), ramp(0, 40))
    ring.write(ramp(43, 117))  # 160 written; only 96..159 remain
    blocks = [b.copy() for b in reader.blocks(upto=150, max_hops=32)]
    assert [float(b[0]) for b in blocks] == [96.0] and len(blocks[0]) == 48   # up to 144
    assert reader.dropped == 56
    np.testing.assert_array_equal(blocks[0], ramp(96, 48))
