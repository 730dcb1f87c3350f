#!/usr/bin/env bash
# One SLURM job analyses a whole run: a Dask LocalCluster inside the allocation, one
# single-threaded worker per allocated CPU, the allocation's memory shared among them.
#
#   sbatch [--cpus-per-task=N --mem=M --time=T] deploy/run-batch.sh RUN_DIR OUT_DIR [OPTIONS]
#
# OPTIONS go to `ratag-xr run` (e.g. --force, --stages prepare integrate, --nfiles 2).
# RUN_DIR (the raw .wfm files) and OUT_DIR (waveforms.zarr, results.zarr, exports, plots)
# may be on the shared file system; workers spill to node-local $TMPDIR (see README.md).
# Environment: RATAG_VENV=/path/to/venv is activated first if set.
#
#SBATCH --job-name=ratag-run
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=02:00:00
#SBATCH --output=ratag-run-%j.out
#
# Alternative for runs too large for one node: a small, long driver job whose Dask workers
# are further batch jobs, submitted by dask-jobqueue with the settings of jobqueue.yaml
# (compute nodes must be allowed to run sbatch, and reach the driver's node):
#
#   sbatch --cpus-per-task=1 --mem=4G --time=08:00:00 --wrap \
#       "ratag-xr run RUN_DIR --out OUT_DIR --cluster slurm --jobs 8 --workers 4 --memory 4GiB"
#
# (--jobs: batch jobs, --workers: worker processes per job, --threads: threads per worker,
# --memory: memory per worker; `--cluster pbs` is the same on PBS.)
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: sbatch $0 RUN_DIR OUT_DIR [ratag-xr run options]" >&2
    exit 2
fi
run_dir=$1
out_dir=$2
shift 2

if [[ -n ${RATAG_VENV:-} ]]; then
    # shellcheck disable=SC1091
    source "$RATAG_VENV/bin/activate"
fi

workers=${SLURM_CPUS_PER_TASK:-1}
# Memory per worker: the allocation (MB) less 10 % for the driver process, split evenly.
if [[ -n ${SLURM_MEM_PER_NODE:-} ]]; then
    total_mb=$SLURM_MEM_PER_NODE
elif [[ -n ${SLURM_MEM_PER_CPU:-} ]]; then
    total_mb=$((SLURM_MEM_PER_CPU * workers))
else
    total_mb=$((2048 * workers))
fi
per_worker_mb=$((total_mb * 9 / 10 / workers))

# Spill to node-local disk, never to the shared file system.
export DASK_TEMPORARY_DIRECTORY=${TMPDIR:-/tmp}

echo "ratag-run: job ${SLURM_JOB_ID:-?} on $(hostname): $workers worker(s) x 1 thread," \
    "${per_worker_mb} MiB each; run $run_dir -> $out_dir"
exec ratag-xr run "$run_dir" --out "$out_dir" --cluster local --workers "$workers" \
    --threads 1 --memory "${per_worker_mb}MiB" --quiet "$@"
