"""`flf2v doctor` with the Slurm backend configured: against the running test cluster, and against one whose
controller does not answer."""

from __future__ import annotations

from tests.functional.queue_helpers import flf2v
from tests.functional.slurm_cluster import CTLD_PORT, SlurmCluster


def test_doctor_checks_slurm_and_the_shared_folder(slurm: SlurmCluster, qhome) -> None:
    env = {"SLURM_CONF": str(slurm.conf), "FLF2V_BACKEND": "slurm"}
    done = flf2v(qhome, "doctor", timeout=180, env=env)
    lines = done.stdout.splitlines()
    assert any(line.startswith("ok    slurm      sbatch, squeue, sacct, scancel") for line in lines), done.stdout
    assert any(line.startswith("ok    slurm ctl") for line in lines), done.stdout
    assert f"ok    shared     a compute node sees {qhome.resolve()}" in done.stdout, done.stdout
    assert not list((qhome / "jobs").glob(".doctor*"))  # its token file is gone again


def test_doctor_says_when_the_slurm_controller_does_not_answer(slurm: SlurmCluster, qhome, tmp_path) -> None:
    conf = tmp_path / "slurm.conf"
    text = slurm.conf.read_text().replace(f"SlurmctldPort={CTLD_PORT}", f"SlurmctldPort={CTLD_PORT + 100}")
    conf.write_text(text + "MessageTimeout=2\n")
    done = flf2v(qhome, "doctor", "--backend", "slurm", timeout=180, env={"SLURM_CONF": str(conf)})
    assert done.returncode == 1
    assert "FAIL  slurm ctl  squeue:" in done.stdout and "fix: check SLURM_CONF" in done.stdout, done.stdout


def test_doctor_without_the_slurm_backend_does_not_look_for_slurm(qhome) -> None:
    done = flf2v(qhome, "doctor", timeout=180)
    assert [line for line in done.stdout.splitlines() if line[6:11] in ("slurm", "share")] == []


def test_a_slurm_worker_where_slurm_is_not_installed_is_one_line(qhome, tmp_path) -> None:
    done = flf2v(qhome, "worker", "--backend", "slurm", "--once", env={"PATH": str(tmp_path)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: --backend slurm: sbatch, squeue, sacct, scancel not found on PATH")
    doctor = flf2v(qhome, "doctor", "--backend", "slurm", timeout=180, env={"PATH": str(tmp_path)})
    assert doctor.returncode == 1 and "FAIL  slurm      sbatch, squeue, sacct, scancel, srun not found" in doctor.stdout
