"""The test cluster itself: a batch job runs on both nodes, each with its own hostname, and is accounted."""

from __future__ import annotations

from tests.functional.slurm_cluster import SlurmCluster


def test_a_batch_job_runs_on_both_nodes_and_is_accounted(slurm: SlurmCluster, tmp_path) -> None:
    out = tmp_path / "hosts.txt"
    submitted = slurm.command(
        "sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", f"--output={out}",
        "--wrap", "srun cat /proc/sys/kernel/hostname",
    )  # fmt: skip
    job_id = submitted.stdout.strip().split(";")[0]
    assert slurm.wait_job(job_id) == "COMPLETED"
    assert sorted(out.read_text().split()) == slurm.node_names
    line = slurm.command("sacct", "-c", "-j", job_id, "-n", "-P", "--format=JobID,State,ExitCode,NodeList").stdout
    assert line.strip() == f"{job_id}|COMPLETED|0:0|flf2v-n[1-2]"
