"""What a file task spends per byte: hashing, writing and reading waveform chunks.

On chunks of a real-format frame block (5 GS/s int16, 24 frames x 190 000 samples = 9.1 MB,
the chunk of a 48-frame file; the codes of a simulated file), in one process, from 1 and
from 2 threads (as the tasks of a 2-thread worker run):

- content hash of the raw bytes: BLAKE2b-160 (the earlier record) and BLAKE3 (now);
- writing whole chunks into a fresh Zarr array with the store's codec (lz4, bit shuffle):
  through zarr (``arr[...] = chunk``, with and without its empty-chunk scan) and with
  :class:`ratag_xr.store.chunks.ChunkWriter` (numcodecs' Blosc + the chunk file);
- reading them back: through zarr and with the direct block reader of
  :func:`ratag_xr.store.chunks.direct_waveform`.

Baseline in the same run: a numpy copy of the same chunks (``np.copyto``), MB/s of raw
(uncompressed) bytes everywhere.

The write cases alternate ``--repeat`` times (best kept), each into a fresh array.

    python benchmarks/bench_chunks.py [--dir DIR] [--chunks 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

import blake3
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from ratag_xr.simulate import SimConfig, simulate_run
from ratag_xr.store.chunks import ChunkWriter, _read_block, blosc_config

FRAMES, SAMPLES = 24, 190_000


def chunk_source(base: Path) -> np.ndarray:
    """Two chunks of codes of one simulated real-format file."""
    from ratag_xr.io.wfm import read_wfm

    run = simulate_run(base / "sim", SimConfig(sampling_rate_gs=5.0, record_start_us=-3.0,
                                               record_end_us=35.0, dtype="int16",
                                               frames_per_file=2 * FRAMES, files_per_set=1,
                                               sets=((200, 1700),)), progress=False)
    path = next(run.rglob("*.wfm"))
    with read_wfm(path) as wfm:
        codes = wfm.frames()
    return codes.reshape(2, FRAMES, SAMPLES)


def threaded(n_threads: int, job, n_chunks: int) -> float:
    """Seconds for ``n_threads`` threads each running ``job(thread, k)`` for its share."""
    share = n_chunks // n_threads

    def run(t):
        for k in range(share):
            job(t, t * share + k)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - start


def new_array(folder: Path, name: str, n_chunks: int):
    return zarr.create_array(store=str(folder), name=name,
                             shape=(1, n_chunks * FRAMES, SAMPLES), chunks=(1, FRAMES, SAMPLES),
                             dtype="int16", fill_value=0,
                             compressors=[BloscCodec(cname="lz4", clevel=5,
                                                     shuffle="bitshuffle")])


def cases(threads: int, src: np.ndarray, store: Path, n: int, repeats: int) -> list[tuple]:
    """(threads, case, seconds) of every case with ``threads`` threads."""
    raw = [src[0].tobytes(), src[1].tobytes()]
    out = [np.empty_like(src[0]) for _ in range(threads)]
    rows = [(threads, "numpy copy (baseline)",
             threaded(threads, lambda t, k: np.copyto(out[t], src[k % 2]), n))]
    rows.append((threads, "hash BLAKE2b-160", threaded(
        threads, lambda t, k: hashlib.blake2b(raw[k % 2], digest_size=20).digest(), n)))
    rows.append((threads, "hash BLAKE3", threaded(
        threads, lambda t, k: blake3.blake3(raw[k % 2]).digest(), n)))
    shutil.rmtree(store, ignore_errors=True)

    def region(k):
        return slice(0, 1), slice(k * FRAMES, (k + 1) * FRAMES)

    writes = {
        "write: zarr, empty-chunk scan": lambda arr: lambda t, k: arr.__setitem__(
            region(k), src[k % 2][None]),
        "write: zarr, whole chunks": lambda arr: (
            lambda whole: lambda t, k: whole.__setitem__(region(k), src[k % 2][None]))(
            arr.with_config({"write_empty_chunks": True})),
        "write: ChunkWriter": lambda arr: (lambda writer: lambda t, k: writer.write(
            0, k, src[k % 2]))(ChunkWriter(str(store), arr.path)),
    }
    best = dict.fromkeys(writes, np.inf)
    for rep in range(repeats):  # cases alternate; each writes a fresh array
        for i, (case, job) in enumerate(writes.items()):
            name = f"w{i}"
            shutil.rmtree(store / name, ignore_errors=True)
            best[case] = min(best[case], threaded(threads, job(new_array(store, name, n)), n))
            if rep < repeats - 1:
                shutil.rmtree(store / name)  # dirty pages of one case do not slow the next
    rows += [(threads, case, seconds) for case, seconds in best.items()]
    store_names = {"zarr": "w0", "direct": "w2"}
    reader = zarr.open_array(store=str(store), path=store_names["direct"], mode="r")
    rows.append((threads, "read: zarr", threaded(
        threads, lambda t, k: reader[region(k)], n)))
    config = blosc_config(reader.metadata)
    info = {None: {"chunk-shape": (1, FRAMES, SAMPLES)}}
    folder = str(store / store_names["direct"])
    rows.append((threads, "read: direct block reader", threaded(
        threads, lambda t, k: _read_block(folder, "/", config, (1, FRAMES, SAMPLES), "<i2", 0,
                                          block_id=(0, k, 0), block_info=info), n)))
    written = (n // threads) * threads
    np.testing.assert_array_equal(reader[0, :2 * FRAMES], src.reshape(2 * FRAMES, SAMPLES))
    ours, theirs = (store / store_names["direct"], store / store_names["zarr"])
    files = sorted(p for p in (ours / "c").rglob("*") if p.is_file())
    assert len(files) == written
    for path in files:  # the same bytes as zarr wrote for the same chunk
        assert (theirs / path.relative_to(ours)).read_bytes() == path.read_bytes(), \
            "ChunkWriter's files differ from zarr's"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--chunks", type=int, default=40, help="chunks written per case")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each write case, best kept")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="ratag-chunks-"))
    n = args.chunks
    mb = n * FRAMES * SAMPLES * 2 / 1e6
    try:
        src = chunk_source(base)
        print(f"chunks: {FRAMES} frames x {SAMPLES} int16 samples = {src[0].nbytes / 1e6:.1f} MB"
              f", {n} per case ({mb:.0f} MB)")
        rows = []
        for threads in (1, 2):
            rows += cases(threads, src, base / f"store{threads}.zarr", n, args.repeat)
        print(f"{'case':34s} {'threads':>7s} {'MB/s':>7s} {'x numpy copy':>13s}")
        baseline = {t: s for t, name, s in rows if name.startswith("numpy")}
        for threads, name, seconds in rows:
            print(f"{name:34s} {threads:7d} {mb / seconds:7.0f} "
                  f"{baseline[threads] / seconds:13.3f}")
        print("ChunkWriter's chunk files are byte for byte zarr's own: checked")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
