"""The slurm runner: a SLURM job per run, submitted, watched and read back from the study folder."""
