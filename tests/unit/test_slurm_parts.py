"""The Slurm backend's parts that need no cluster: the batch script, the settings, what a Slurm end means,
and how ls and show put a Slurm attempt."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from engine.errors import BadInputError
from flf2v_tui.job_text import gpus_text, note, show_text
from flf2v_tui.worker.launchers.settings import resolve
from flf2v_tui.worker.launchers.slurm import node_of_rank, slurm_outcome
from flf2v_tui.worker.launchers.slurm_script import SlurmOptions, batch_script, engine_command, rdzv_port
from flf2v_tui.worker.launchers.slurm_status import NOT_SHARED_EXIT, SlurmStatus, rss_bytes, sacct_record


def _script(tmp_path: Path, options: SlurmOptions) -> str:
    return batch_script(
        job_id=3, number=2, attempt_id=17, name="flf2v-abc-a17", folder=tmp_path, nodes=2, ranks_per_node=4,
        torchrun=["/venv/bin/torchrun"], engine=engine_command(["torchrun", "--nnodes", "1", "-m", "engine.generate",
        "--prompt", "it's a \"bird\" $HOME", "--size", "64*64"]),
        env={"PYTHONPATH": "/src", "CUDA_VISIBLE_DEVICES": "0,1", "FLF2V_JOB_ID": "3"}, options=options,
    )  # fmt: skip


def test_the_batch_script_asks_for_the_nodes_and_runs_the_same_engine_arguments(tmp_path):
    options = SlurmOptions(partition="gpu", account="vision", time="2:00:00", sbatch_args=["--qos=high"])
    script = _script(tmp_path, options)
    sbatch = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert sbatch[:5] == ["#SBATCH --job-name=flf2v-abc-a17", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
                          "#SBATCH --no-requeue", "#SBATCH --gpus-per-node=4"]  # fmt: skip
    assert sbatch[-4:] == ["#SBATCH --partition=gpu", "#SBATCH --account=vision", "#SBATCH --time=2:00:00",
                           "#SBATCH --qos=high"]  # fmt: skip
    assert "CUDA_VISIBLE_DEVICES" not in script  # Slurm hands out the GPUs
    assert '--rdzv-endpoint="$head:$port"' in script and "--nnodes $SLURM_NNODES" in script
    # The port comes from the Slurm job id, the same in the script as in the worker's rdzv_port().
    port_line = next(x for x in script.splitlines() if x.startswith("port="))
    for slurm_job in ("17", "123456", "20017"):
        said = subprocess.run(["bash", "-c", f"SLURM_JOB_ID={slurm_job}\n{port_line}\necho $port"],
                              capture_output=True, text=True).stdout  # fmt: skip
        assert int(said) == rdzv_port(slurm_job) and 20000 <= int(said) < 30000
    assert rdzv_port("123456") != rdzv_port("123457")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    # The prompt reaches the engine as one argument, unexpanded: run the srun line's arguments through bash.
    line = next(x for x in script.splitlines() if x.startswith("srun --kill-on-bad-exit"))
    args = line.split(" -m ", 1)[1]
    echoed = subprocess.run(["bash", "-c", f"printf '%s\\n' {args}"], capture_output=True, text=True).stdout
    assert echoed.splitlines() == ["engine.generate", "--prompt", 'it\'s a "bird" $HOME', "--size", "64*64"]


def test_cpu_nodes_ask_for_cpus_instead_of_gpus(tmp_path):
    script = _script(tmp_path, SlurmOptions(device="cpu"))
    assert "#SBATCH --cpus-per-task=4" in script and "--gpus-per-node" not in script
    assert "srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task=4 " in script


def test_gpu_nodes_ask_for_cpus_per_gpu_and_the_render_step_asks_for_them_again(tmp_path):
    script = _script(tmp_path, SlurmOptions(cpus_per_gpu=6))  # 4 GPUs per node
    assert "#SBATCH --gpus-per-node=4" in script and "#SBATCH --cpus-per-task=24" in script
    # srun 22.05 and later do not pass the job's --cpus-per-task on to a step by themselves.
    assert "srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task=24 " in script


def test_settings_come_from_the_command_line_then_the_environment_then_the_file(tmp_path, monkeypatch):
    (tmp_path / "worker.toml").write_text(
        'backend = "slurm"\n[slurm]\npartition = "file"\naccount = "acct"\nsbatch_args = ["--qos=low"]\n'
    )
    monkeypatch.delenv("FLF2V_BACKEND", raising=False)
    monkeypatch.setenv("FLF2V_SLURM_PARTITION", "env")
    settings = resolve(tmp_path, time_limit="1:00:00")
    assert settings.backend == "slurm"
    assert (settings.slurm.partition, settings.slurm.account, settings.slurm.time) == ("env", "acct", "1:00:00")
    assert settings.slurm.sbatch_args == ["--qos=low"] and settings.slurm.device == "cuda"
    assert resolve(tmp_path, partition="cli", sbatch_args=["--exclusive"]).slurm.partition == "cli"
    assert resolve(tmp_path, backend="local").backend == "local"


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"backend": "k8s"}, "--backend 'k8s': expected one of local, slurm"),
        ({"backend": "slurm", "sbatch_args": ["qos=high"]}, "--sbatch-arg 'qos=high': expected an sbatch option"),
        ({"backend": "slurm", "time_limit": " "}, "Slurm time ' ': expected one word"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, monkeypatch, given, said):
    monkeypatch.delenv("FLF2V_BACKEND", raising=False)
    with pytest.raises(BadInputError, match="^" + said.replace("(", r"\(").replace(")", r"\)")):
        resolve(tmp_path, **given)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("FLF2V_SLURM_POLL_S", "abc", "FLF2V_SLURM_POLL_S = 'abc': expected seconds between Slurm polls"),
        ("FLF2V_SLURM_POLL_S", "inf", "FLF2V_SLURM_POLL_S = 'inf': expected seconds"),
        ("FLF2V_SLURM_POLL_S", "nan", "FLF2V_SLURM_POLL_S = 'nan': expected seconds"),
        ("FLF2V_SLURM_POLL_S", "0.1", "FLF2V_SLURM_POLL_S = '0.1': expected seconds between Slurm polls, at least 0.5"),
        ("FLF2V_SLURM_MAX_JOBS", "x", "FLF2V_SLURM_MAX_JOBS = 'x': expected a whole number of Slurm jobs"),
        ("FLF2V_SLURM_MAX_JOBS", "0", "FLF2V_SLURM_MAX_JOBS = '0': expected a whole number"),
    ],
)
def test_bad_numbers_in_the_environment_are_one_line_naming_the_variable(tmp_path, monkeypatch, variable, value, said):
    monkeypatch.setenv(variable, value)
    with pytest.raises(BadInputError, match="^" + re.escape(said)):
        resolve(tmp_path, backend="slurm")


def test_bad_numbers_in_the_config_file_name_the_file_and_the_key(tmp_path, monkeypatch):
    for variable in ("FLF2V_SLURM_POLL_S", "FLF2V_SLURM_MAX_JOBS"):
        monkeypatch.delenv(variable, raising=False)
    (tmp_path / "worker.toml").write_text('[slurm]\nmax_jobs = "lots"\n')
    with pytest.raises(BadInputError, match=r"worker\.toml \[slurm\] max_jobs = 'lots': expected a whole number"):
        resolve(tmp_path, backend="slurm")
    (tmp_path / "worker.toml").write_text("[slurm]\npoll_s = 1e400\n")
    with pytest.raises(BadInputError, match=r"worker\.toml \[slurm\] poll_s = inf: expected seconds"):
        resolve(tmp_path, backend="slurm")
    (tmp_path / "worker.toml").write_text("[slurm]\npoll_s = 3\nmax_jobs = 4\n")
    options = resolve(tmp_path, backend="slurm").slurm
    assert (options.poll_s, options.max_jobs) == (3.0, 4)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"partition": "gpu long"}, "Slurm partition 'gpu long': expected one word"),
        ({"account": "a\tb"}, "Slurm account 'a\\tb': expected one word"),
        ({"time_limit": "1:00\n#SBATCH --x"}, "Slurm time"),
        ({"sbatch_args": ["--qos=normal\nrm -rf ~"]}, "--sbatch-arg '--qos=normal\\nrm -rf ~': no spaces or control"),
        ({"sbatch_args": ["--comment=two words"]}, "--sbatch-arg '--comment=two words': no spaces"),
    ],
)
def test_a_value_that_would_break_its_sbatch_line_is_refused(tmp_path, monkeypatch, given, said):
    monkeypatch.delenv("FLF2V_BACKEND", raising=False)
    with pytest.raises(BadInputError, match="^" + re.escape(said)):
        resolve(tmp_path, backend="slurm", **given)


@pytest.mark.parametrize("folder", ["my home", "100%", "tab\there"])
def test_a_home_whose_path_would_break_the_sbatch_lines_is_refused(tmp_path, folder):
    home = tmp_path / folder
    home.mkdir()
    with pytest.raises(BadInputError, match=r"^FLF2V_HOME .*: the Slurm backend needs a path without spaces"):
        resolve(home, backend="slurm")
    assert resolve(home, backend="local").backend == "local"


def test_a_broken_config_file_is_named(tmp_path):
    (tmp_path / "worker.toml").write_text("backend = \n")
    with pytest.raises(BadInputError, match=r"worker\.toml"):
        resolve(tmp_path)


@pytest.mark.parametrize(
    ("state", "state_class", "failure", "words"),
    [
        ("NODE_FAIL", "interrupted", "worker_lost", "ended NODE_FAIL on n[1-2]: the cluster's failure"),
        ("PREEMPTED", "interrupted", "worker_lost", "ended PREEMPTED"),
        ("BOOT_FAIL", "interrupted", "worker_lost", "ended BOOT_FAIL"),
        ("OUT_OF_MEMORY", "failed", "oom", "ran out of memory on n[1-2]"),
        ("TIMEOUT", "failed", "timeout", "reached its time limit after 00:10:00: raise the worker's --time"),
    ],
)
def test_what_a_slurm_end_means(tmp_path, state, state_class, failure, words):
    status = SlurmStatus("41", state, nodes="n[1-2]", elapsed="00:10:00")
    outcome = slurm_outcome("41", status, None, tmp_path)
    assert (outcome.state, outcome.failure_class) == (state_class, failure)
    assert words in outcome.message


def test_a_folder_the_nodes_cannot_see_is_said_plainly(tmp_path):
    outcome = slurm_outcome("41", SlurmStatus("41", "FAILED", exit_code=NOT_SHARED_EXIT), NOT_SHARED_EXIT, tmp_path)
    assert outcome.failure_class == "user_input" and "must be on a file system every node mounts" in outcome.message
    (tmp_path / "torchrun.log").write_text("Traceback ...")
    assert slurm_outcome("41", SlurmStatus("41", "FAILED", exit_code=1), 1, tmp_path) is None  # the logs tell


@pytest.mark.parametrize(
    ("status", "failure", "words"),
    [
        (SlurmStatus("41", "CANCELLED"), "killed", "ended CANCELLED before the render could finish"),
        (SlurmStatus("41", "FAILED", reason="launch failed requeued held"), "killed", "ended FAILED"),
        (SlurmStatus("41", "FAILED", nodes="n1", exit_code=1), "user_input", "cannot see"),
    ],
)
def test_a_job_that_never_ran_is_not_blamed_on_the_shared_folder(tmp_path, status, failure, words):
    outcome = slurm_outcome("41", status, None, tmp_path)  # no torchrun.log, no exit.json
    assert outcome.failure_class == failure and words in outcome.message


def test_the_node_of_a_rank_comes_from_its_log(tmp_path):
    (tmp_path / "rank1.log").write_text("[t] INFO: rank 1 of 2 on node gpu-07 (local rank 0, pid 5)\n")
    assert node_of_rank(tmp_path, 1) == "gpu-07" and node_of_rank(tmp_path, 0) is None


def _job(**attempt: object) -> dict:
    return {"id": 5, "state": "running", "gpus": 1, "nodes": 2, "stage": "denoise", "step": 3, "steps_total": 8,
            "slurm_job": "41", **attempt}  # fmt: skip


def test_ls_shows_why_a_slurm_job_is_pending_and_where_it_runs():
    assert note(_job(slurm_state="PENDING", slurm_reason="Priority"), 0) == "slurm 41 pending, why pending: Priority"
    assert note(_job(slurm_state="RUNNING", node_list="n[1-2]"), 0) == "denoise 3/8"
    assert gpus_text(_job(slurm_state="RUNNING"), "running") == "slurm 41 2×1"
    assert gpus_text({"gpus": 2, "nodes": 3}, "queued") == "3×2"


def test_show_names_the_slurm_job_and_its_nodes():
    job = {"id": 5, "state": "running", "state_reason": None, "prompt": "p", "gpus": 1, "nodes": 2, "priority": 0,
           "labels": [], "retries_used": 0, "max_retries": 2, "retry_on": "comm", "created_at": 1.0,
           "started_at": 2.0, "finished_at": None}  # fmt: skip
    attempt = {"number": 1, "state": "running", "started_at": 2.0, "device": "cpu", "gpus": "slurm0",
               "peak_memory": {}, "log_dir": "/x", "slurm_job": "41", "slurm_state": "RUNNING",
               "node_list": "n[1-2]"}  # fmt: skip
    text = show_text(job, [attempt])
    assert "  slurm      41 RUNNING on n[1-2]" in text and "2 nodes × 1 rank(s) = 2 rank(s)" in text
    assert "slurm 41" in text and "slurm use" not in text  # the attempts table; nothing measured yet
    ended = {**attempt, "slurm_state": "COMPLETED", "slurm_elapsed": "00:01:02", "slurm_max_rss": "2.5G"}
    assert "  slurm use  elapsed 00:01:02, MaxRSS 2.5G (sacct)" in show_text(job, [ended])


def test_sacct_gives_the_jobs_own_state_and_the_largest_maxrss_of_its_steps():
    # sacct -n -P -j 41 --format=JobID,State,ExitCode,NodeList,Elapsed,MaxRSS on a cluster with accounting:
    text = (
        "41|FAILED|1:0|n[1-2]|00:03:10|\n"
        "41.batch|FAILED|1:0|n1|00:03:10|812344K\n"
        "41.extern|COMPLETED|0:0|n[1-2]|00:03:10|1024K\n"
        "41.0|FAILED|1:0|n[1-2]|00:03:05|1.5G\n"
    )
    record = sacct_record("41", text)
    assert (record.state, record.exit_code, record.nodes, record.elapsed) == ("FAILED", 1, "n[1-2]", "00:03:10")
    assert record.max_rss == "1.5G"
    # The job completion log (sacct -c) has whole jobs only, and no MaxRSS.
    only = sacct_record("41", "41|COMPLETED|0:0|n1|00:00:09\n")
    assert (only.state, only.elapsed, only.max_rss) == ("COMPLETED", "00:00:09", "")
    assert rss_bytes("2M") == 2 << 20 and rss_bytes("") == 0


def test_warm_groups_are_the_local_backends_only(conn, home):
    # --keep-warm keeps torchrun groups loaded on this machine; on Slurm every attempt is one sbatch job.
    from flf2v_tui.worker.launchers.local import LocalLauncher
    from flf2v_tui.worker.launchers.slurm import SlurmLauncher, slurm_pool
    from flf2v_tui.worker.loop import Worker, WorkerConfig
    from flf2v_tui.worker.pool import Pool

    config = WorkerConfig(quiet=True, keep_warm_s=600.0)
    local = Worker(home, conn, Pool("cpu", ["cpu0"]), config, lambda _: None, LocalLauncher())
    options = SlurmOptions(device="cpu", max_jobs=2)
    slurm = Worker(home, conn, slurm_pool(options), config, lambda _: None, SlurmLauncher(options))
    assert local.groups.enabled and not slurm.groups.enabled
