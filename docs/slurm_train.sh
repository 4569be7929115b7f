#!/bin/bash
# Data-parallel EP training over several GPU nodes with Slurm: one eqdyn process per node, all
# of them in one jax.distributed job, the batch split over every GPU of every node.
#
#   sbatch docs/slurm_train.sh
#
# Every process runs the same command; --process-id tells them apart. Process 0 hosts the
# coordination service on the first node (the port must be free there) and is the only one that
# writes the run directory (config.json, checkpoint.*, metrics.json), which must therefore be on
# a file system every node sees if you want to --resume from another node.
# The global batch (--batch-size) must be a multiple of the total number of GPUs.
#SBATCH --job-name=eqdyn-dp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00

set -euo pipefail
# pip install 'eqdyn[gpu]' in this environment beforehand (jax with CUDA 12)
source "${EQDYN_VENV:-$HOME/venvs/eqdyn}/bin/activate"

COORDINATOR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):12355"
RUN_DIR="${RUN_DIR:-$PWD/runs/sb17-1h-dp-$SLURM_JOB_ID}"

# single quotes: $SLURM_PROCID is expanded by each task, not by this script
srun bash -c 'eqdyn train --preset sb17-1h --data-dir "$EQDYN_DATA_DIR" \
    --batch-size 160 --devices all \
    --coordinator '"$COORDINATOR"' --num-processes "$SLURM_NTASKS" --process-id "$SLURM_PROCID" \
    --run-dir '"$RUN_DIR"
