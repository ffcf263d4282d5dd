"""Launchers: TPU VMs (tpu_vm.py), one GPU node (gpu.py), SLURM (slurm.py), sweeps (sweep.py)."""
