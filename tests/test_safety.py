"""Nothing a user does loses data or leaves a wrong result (the probes of issue 13).

Each case is what a careful new user tried: a rebuild pointed at the raw data or at an
output folder, two commands on one output folder at once, bad config values, an odd
folder in the run, outputs deleted by hand, a read-only run folder, a full disk.  Each
asserts the exit code, that the message names the key/file/folder, and that no raw file
and no earlier result was lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ratag_xr import cli
from ratag_xr.errors import OwnershipError
from ratag_xr.io.owned import remove_simulated_run, remove_store
from ratag_xr.simulate import SimConfig, simulate_run

SIM = SimConfig(sets=((200, 1700), (400, 1900)), files_per_set=2, frames_per_file=20,
                sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=26.0,
                xray_fraction=0.5, seed=13)
CLUSTER = ["--workers", "1", "--threads", "1", "--quiet"]


def ratag(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ratag_xr", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def digests(folder: Path) -> dict[str, str]:
    """Content hash of every file below ``folder`` (what must never be lost), but the
    lock file, which only says who held the folder last."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".ratag_xr.lock"}


def raw_digests(run_dir: Path) -> dict[str, str]:
    return {k: v for k, v in digests(run_dir).items() if k.endswith(".wfm")}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return simulate_run(tmp_path_factory.mktemp("safety") / "raw", SIM, progress=False)


@pytest.fixture(scope="module")
def analysed(raw, tmp_path_factory):
    """A complete reference analysis of ``raw`` into its own folder."""
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = ratag("run", raw, "--out", out, *CLUSTER)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return out


def outputs(out: Path) -> dict[str, str]:
    """The exported files' contents (JSON lineage blocks removed: they name the folder's
    own history), for comparing two analyses."""
    found = {}
    for path in sorted([*out.glob("*/*.json"), *out.glob("*/*.npy"), *out.glob("*/*.parquet")]):
        key = str(path.relative_to(out))
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
            doc.pop("lineage", None)
            found[key] = json.dumps(doc, sort_keys=True)
        elif path.suffix == ".parquet":  # the values (the file's bytes are not canonical)
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            found[key] = hashlib.sha256(b"".join(
                name.encode() + np.asarray(table.column(name).to_numpy()).astype(str).tobytes()
                for name in table.column_names)).hexdigest()
        else:
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# ---------------------------------------------------------------- 1. rebuild safety


def test_rebuild_pointed_at_the_run_folder_keeps_every_raw_file(raw, tmp_path):
    run_dir = tmp_path / "RUN1"
    shutil.copytree(raw, run_dir)
    before = raw_digests(run_dir)
    for args in (("ingest", run_dir, "--out", run_dir, "--rebuild"),
                 ("ingest", run_dir, "--out", run_dir, "--rebuild")):
        proc = ratag(*args, *CLUSTER)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert raw_digests(run_dir) == before  # --out is the output root: only the store
    assert (run_dir / "waveforms.zarr").is_dir()
    # a run folder whose name ends in .zarr, named as the store itself: refused
    zarr_named = tmp_path / "RUN2.zarr"
    shutil.copytree(raw, zarr_named)
    proc = ratag("ingest", zarr_named, "--out", zarr_named, "--rebuild", *CLUSTER)
    assert proc.returncode == 2 and str(zarr_named) in proc.stderr
    assert "not removing it" in proc.stderr and "Traceback" not in proc.stderr
    assert raw_digests(zarr_named) == raw_digests(raw)
    fake = run_dir / "FieldScan_Gate400_Anode1900"
    with pytest.raises(OwnershipError, match="not a waveforms store made by ratag_xr"):
        remove_store(fake, "waveforms")
    with pytest.raises(OwnershipError, match="not removing it"):
        remove_store(run_dir, "waveforms")
    assert raw_digests(run_dir) == before


def test_rebuild_of_a_folder_holding_raw_files_is_refused(raw, tmp_path):
    folder = tmp_path / "mine.zarr"
    folder.mkdir()
    victim = next(raw.glob("*/*.wfm"))
    shutil.copy(victim, folder / victim.name)
    (folder / "zarr.json").write_text('{"attributes": {"ratag_xr_store": "waveforms"}}')
    proc = ratag("ingest", raw, "--out", folder, "--rebuild", *CLUSTER)
    assert proc.returncode == 2
    assert str(folder) in proc.stderr and victim.name in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (folder / victim.name).read_bytes() == victim.read_bytes()


def test_rebuild_in_an_output_root_keeps_every_result(raw, analysed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(analysed, out)
    kept = {k: v for k, v in digests(out).items() if not k.startswith("waveforms.")}
    proc = ratag("ingest", raw, "--out", out, "--rebuild", *CLUSTER)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = {k: v for k, v in digests(out).items() if not k.startswith("waveforms.")}
    assert after == kept  # JSON, NPY, parquet, plots and results.zarr untouched
    # run --rebuild is accepted too (the ingest errors advise it); the results equal
    proc = ratag("run", raw, "--out", out, "--rebuild", *CLUSTER)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert outputs(out) == outputs(analysed)


def test_the_demo_removes_only_a_run_the_simulator_wrote(raw, tmp_path):
    run_dir = tmp_path / "RUN1"
    shutil.copytree(raw, run_dir)
    (run_dir / "FieldScan_Gate200_Anode1700" / "notes.txt").write_text("mine")
    with pytest.raises(OwnershipError, match="notes.txt"):
        remove_simulated_run(run_dir)
    assert (run_dir / "FieldScan_Gate200_Anode1700" / "notes.txt").exists()
    (run_dir / "truth.json").unlink()
    (run_dir / "FieldScan_Gate200_Anode1700" / "notes.txt").unlink()
    with pytest.raises(OwnershipError, match="not a run simulated by ratag_xr"):
        remove_simulated_run(run_dir)
    assert raw_digests(run_dir) == raw_digests(raw)


# ---------------------------------------------------------------- 2. one writer at a time


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "ratag_xr", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_runs_on_one_output_folder_at_once(raw, analysed, tmp_path):
    """Same and different configs, started together and a little apart: the results always
    equal a single run's (of the config that ran last) and one of the two says it waited."""
    other = tmp_path / "other.yaml"
    other.write_text(f"run: {{run_dir: {raw}}}\nprepare: {{threshold_s2: 0.6}}\n")
    reference_other = tmp_path / "ref-other"
    proc = ratag("run", other, "--out", reference_other, *CLUSTER)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    for trial in range(2):
        out = tmp_path / f"out{trial}"
        same = trial == 0
        first = _start("run", raw, "--out", out, *CLUSTER)
        time.sleep(0.3 * trial)
        second = _start("run", raw if same else other, "--out", out, *CLUSTER)
        results = [p.communicate(timeout=600) for p in (first, second)]
        assert [p.returncode for p in (first, second)] in ([0, 0], [1, 1], [0, 1], [1, 0])
        errs = [err for _, err in results]
        waited = [i for i, err in enumerate(errs) if "waiting for" in err]
        assert len(waited) == 1, errs  # one of them found the folder busy and said so
        assert all("Traceback" not in err for err in errs)
        last = waited[0]  # the one that waited ran after the other finished
        expected = analysed if same or last == 0 else reference_other
        assert outputs(out) == outputs(expected), trial
        s2 = json.loads(next(out.glob("FieldScan_Gate200*/s2_results.json")).read_text())
        threshold = s2["lineage"]["config"]["prepare"]["threshold_s2"]
        assert threshold == (0.4 if same or last == 0 else 0.6)


def test_no_wait_refuses_while_another_command_holds_the_folder(raw, tmp_path):
    from ratag_xr.io.lock import output_lock

    out = tmp_path / "busy"
    with output_lock(out):  # this process holds it; the CLI is another process
        proc = ratag("run", raw, "--out", out, "--no-wait", *CLUSTER)
    assert proc.returncode == 2
    assert "another ratag-xr command is writing here" in proc.stderr and str(out) in proc.stderr
    assert not (out / "results.zarr").exists()


def test_a_killed_holder_never_blocks(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time, sys; from ratag_xr.io.lock import output_lock\n"
        f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    from ratag_xr.io.lock import output_lock

    t0 = time.monotonic()
    with output_lock(out, wait=False):
        pass
    assert time.monotonic() - t0 < 5
    assert "pid" in (out / ".ratag_xr.lock").read_text()


# ---------------------------------------------------------------- 3. config values


BAD_VALUES = [
    ("prepare:\n  threshold_s2: -0.4\n", "prepare.threshold_s2", ">= 0"),
    ("prepare:\n  threshold_s2: .nan\n", "prepare.threshold_s2", "finite"),
    ("integrate:\n  bs_threshold: -0.8\n", "integrate.bs_threshold", ">= 0"),
    ("prepare:\n  ma_window: 8\n", "prepare.ma_window", "odd"),
    ("ingest:\n  chunk_mb: 0\n", "ingest.chunk_mb", "> 0"),
    ("ingest:\n  chunk_mb: -3\n", "ingest.chunk_mb", "> 0"),
    ("prepare:\n  s2_method: mad\nprepare:\n  s2_method: std\n", "'prepare' given twice",
     "keep one"),
    ("integrate:\n  nbins: 0\n", "integrate.nbins", ">= 1"),
    ("integrate:\n  nbins: -5\n", "integrate.nbins", ">= 1"),
    ("integrate:\n  per_set:\n    FieldScan_Gate200_Anode1700: {bin_cuts: [2, 0]}\n",
     "integrate.per_set.FieldScan_Gate200_Anode1700", "low < high"),
    ("calibrate:\n  xray_bin_cuts: [20, 0.6]\n", "calibrate.xray_bin_cuts", "low < high"),
    ("calibrate:\n  xray_nbins: 0\n", "calibrate.xray_nbins", ">= 1"),
    ("ingest:\n  shuffle: wrong\n", "ingest.shuffle", "one of"),
    ("ingest:\n  clevel: 99\n", "ingest.clevel", "<= 9"),
    ("ingest:\n  compressor: foo\n", "ingest.compressor", "one of"),
    ("integrate:\n  exclude_index: 150\n", "integrate.exclude_index", "integrate.nbins"),
    ("prepare:\n  ma_windw: 9\n", "ma_windw", "known"),
    ("integrate:\n  nbins: many\n", "integrate.nbins", "whole number"),
]
DATA_VALUES = [  # need the record length or the set names: checked after ingest
    ("prepare:\n  n_pedestal: 90000\n", "prepare.n_pedestal", "longer than the record"),
    ("integrate:\n  per_set:\n    FieldScan_Gate999_Anode1:\n      nbins: 20\n",
     "FieldScan_Gate999_Anode1", "does not have"),
]


def _cli(args, capsys) -> tuple[int, str]:
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("text", "key", "allowed"), BAD_VALUES,
                         ids=[k for _, k, _ in BAD_VALUES])
def test_bad_config_values_stop_before_any_work(raw, tmp_path, capsys, text, key, allowed):
    config = tmp_path / "bad.yaml"
    config.write_text(f"run:\n  run_dir: {raw}\n{text}")
    out = tmp_path / "out"
    code, err = _cli(["run", config, "--out", out, *CLUSTER], capsys)
    assert code == 2
    assert "bad.yaml" in err and key in err and allowed in err, err
    assert "Traceback" not in err
    assert not out.exists()  # refused before the output folder was even made


@pytest.mark.parametrize(("text", "key", "allowed"), DATA_VALUES,
                         ids=[k for _, k, _ in DATA_VALUES])
def test_values_checked_against_the_data_stop_before_any_stage(raw, analysed, tmp_path,
                                                                capsys, text, key, allowed):
    out = tmp_path / "out"
    shutil.copytree(analysed, out)
    before = digests(out)
    config = tmp_path / "bad.yaml"
    config.write_text(f"run:\n  run_dir: {raw}\n{text}")
    code, err = _cli(["run", config, "--out", out, *CLUSTER], capsys)
    assert code == 2 and "bad.yaml" in err and key in err and allowed in err, err
    assert "stage prepare" not in err  # no stage ran
    assert digests(out) == before


@pytest.mark.parametrize("nfiles", ["0", "-1"])
def test_nfiles_must_be_at_least_one(raw, tmp_path, capsys, nfiles):
    code, err = _cli(["run", raw, "--out", tmp_path / "out", "--nfiles", nfiles], capsys)
    assert code == 2 and "--nfiles" in err and ">= 1" in err


# ---------------------------------------------------------------- 4./5. odd folders, hand edits


def test_an_odd_folder_is_skipped_and_deleted_outputs_are_rewritten(raw, analysed, tmp_path):
    run_dir = tmp_path / "RUN1"
    shutil.copytree(raw, run_dir)
    odd = run_dir / "calibration_run"
    odd.mkdir()
    shutil.copy(next(raw.glob("*/*.wfm")), odd / "cal_0001.wfm")
    out = tmp_path / "out"
    shutil.copytree(analysed, out)
    proc = ratag("run", run_dir, "--out", out, *CLUSTER)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "calibration_run" in proc.stderr  # said once, and the run went on
    gone = [out / "FieldScan_Gate200_Anode1700" / "s2_areas.npy",
            out / "plots" / "FieldScan_Gate400_Anode1900_waveform_validation.png",
            out / "plots" / "RUN1_xray_metadata.json"]
    kept = {p: p.read_bytes() for p in gone}
    for path in gone:
        path.unlink()
    proc = ratag("run", run_dir, "--out", out, *CLUSTER)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "output missing" in proc.stderr
    for path in gone:
        assert path.is_file(), path
        if path.suffix != ".png":
            assert path.read_bytes() == kept[path]
    np.testing.assert_array_equal(np.load(gone[0]), np.load(analysed / gone[0].relative_to(
        out)))


# ---------------------------------------------------------------- 6. read-only, full disk


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path("/tmp") / f"ratag-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=False)
    probe.rmdir()
    return ok


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and mount(8) (tmpfs "
                                 "and bind mounts) to make a read-only folder and a full disk")


@pytest.fixture
def mounts():
    made = []

    def mount(*args):
        subprocess.run(["mount", *map(str, args)], check=True)
        made.append(args[-1])

    yield mount
    for target in reversed(made):
        subprocess.run(["umount", "-l", str(target)], check=False)


@needs_mount
def test_read_only_run_folder_and_unwritable_out(raw, tmp_path, mounts):
    ro = tmp_path / "ro"
    ro.mkdir()
    src = tmp_path / "src"
    shutil.copytree(raw, src)
    mounts("--bind", src, ro)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
    before = raw_digests(ro)
    proc = ratag("run", ro, *CLUSTER)  # no --out: the outputs would go into the run folder
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and str(ro) in proc.stderr and "--out" in proc.stderr
    proc = ratag("run", src, "--out", ro / "out", *CLUSTER)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--out" in proc.stderr
    assert raw_digests(ro) == before


@needs_mount
def test_full_disk_says_so_and_the_rerun_completes(raw, analysed, tmp_path, mounts):
    disk = tmp_path / "disk"
    disk.mkdir()
    size = sum(p.stat().st_size for p in raw.rglob("*.wfm"))
    mounts("-t", "tmpfs", "-o", f"size={size // 5}", "tmpfs", disk)
    out = disk / "out"
    proc = ratag("run", raw, "--out", out, *CLUSTER)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(out.rglob(".*.tmp-*"))  # nothing half-written under a final name
    subprocess.run(["mount", "-o", f"remount,size={size * 10}", str(disk)], check=True)
    proc = ratag("run", raw, "--out", out, *CLUSTER)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert outputs(out) == outputs(analysed)
