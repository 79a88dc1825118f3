"""A real SLURM run: part of the demo through profiles/slurm on a one-node test cluster.

The fixture starts munged, slurmctld and slurmd on this machine (Debian's slurm-wlm; one node
``localhost`` with a fake A100 declared as a gres), the test runs the twins, the data stage,
one anonymized tree and one training / prediction / evaluation run through
``--profile`` = profiles/slurm/config.yaml with tests/slurm/overlay.yaml merged over it, and
checks in the scheduler's own records that every non-local job went through sbatch.
Needs root and the daemons (``bash .ci/install-slurm`` installs them); skipped otherwise,
except in CI (CI=true), where it must run.
"""

from __future__ import annotations

import collections
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from anonymization_impact.evaluation import validate_metrics_document
from anonymization_impact.io import read_json

from conftest import REPO, SMALL_TWINS, SNAKEMAKE
from tools.cost_plan import read_profile
from test_workflow import TINY_TRAINING

HERE = Path(__file__).resolve().parent / "slurm"
ETC = Path("/etc/slurm")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
BINARIES = ["munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel"]
PARTITION = "debug"  # the overlay profile's partition, for CPU and GPU rules alike
SHORT_PARTITION = "short"  # MaxTime=1 (minute), for the chained training run
TARGETS = [
    "results/annotations/cityscapes/train/persons.json",
    "results/anonymized/cityscapes/body-maskout/audit.json",
    "results/metrics/cityscapes/original/mask_rcnn_r50_fpn/seed0.json",
]
GPU_RULES = {"train_model", "predict"}  # the rules profiles/slurm gives gpu: 1, gpu_model: a100
RUN_TIMEOUT = 420


def _unavailable() -> str | None:
    """Why this machine cannot run the test cluster, or None."""
    if os.geteuid() != 0:
        return "needs root to write /etc/slurm and start munged, slurmctld and slurmd"
    missing = [name for name in BINARIES if not shutil.which(name, path=SEARCH_PATH)]
    if missing:
        return f"SLURM / munge not installed (missing {', '.join(missing)}); run `bash .ci/install-slurm` as root"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (the munge package is not installed properly)"
    running = sorted({name for name in map(_read, Path("/proc").glob("[0-9]*/comm")) if name in {"slurmctld", "slurmd", "slurmdbd"}})
    if running:
        return f"a SLURM daemon already runs on this machine ({', '.join(running)}); the test only uses a cluster it starts itself"
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:  # the process ended meanwhile
        return ""


def _tool(name: str) -> str:
    return shutil.which(name, path=SEARCH_PATH)


def _slurm(*args: str, timeout: int = 30) -> subprocess.CompletedProcess:
    return subprocess.run([_tool(args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout)


def _munge_works() -> bool:
    encode = subprocess.run([_tool("munge"), "-n"], capture_output=True, timeout=10)
    return encode.returncode == 0


def _wait(condition, timeout: float, what: str, cluster: "Cluster", extra_logs: tuple[Path, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        dead = [name for name, process in cluster.processes if process.poll() is not None]
        if dead:
            problem = f"{', '.join(dead)} exited"
            break
        time.sleep(0.5)
    else:
        problem = f"not reached within {timeout:.0f} s"
    tails = "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for log in [*cluster.logs(), *extra_logs] if log.exists())
    raise RuntimeError(f"test cluster: {what}: {problem}\n{tails}")


def _node_memory_mb() -> int:
    """RealMemory for the node: well below what the machine has, so slurmd never drains it."""
    total_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return min(4096, total_kb * 3 // 4 // 1024)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Cluster:
    def __init__(self, state: Path):
        self.state = state
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.restore: list[tuple[Path, Path | None]] = []  # (written file, its backup or None)
        self.created: list[Path] = []

    def write(self, path: Path, text: str) -> None:
        if path.exists() or path.is_symlink():
            backup = self.state / "backup" / path.name
            backup.parent.mkdir(exist_ok=True)
            shutil.move(path, backup)
            self.restore.append((path, backup))
        else:
            self.restore.append((path, None))
        path.write_text(text)

    def start(self, name: str, command: list[str], **kwargs) -> subprocess.Popen:
        out = open(self.state / f"{name}.out", "w")
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
        out.close()
        self.processes.append((name, process))
        return process

    def logs(self) -> list[Path]:
        return sorted(self.state.glob("*.out")) + sorted(self.state.glob("*.log"))

    def teardown(self) -> None:
        """Cancel the jobs, stop the daemons started here (only those), restore /etc/slurm."""
        try:
            if any(name == "slurmctld" for name, _ in self.processes):
                subprocess.run([_tool("scancel"), "--full", "--partition", f"{PARTITION},{SHORT_PARTITION}"], capture_output=True, timeout=30)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    queue = _slurm("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED", "--format=%i")
                    if queue.returncode != 0 or not queue.stdout.strip():
                        break
                    time.sleep(1)
        except subprocess.SubprocessError:
            pass  # the daemons are stopped below anyway
        for _, process in reversed(self.processes):  # slurmd, slurmctld, then munged
            _stop(process)
        for path, backup in reversed(self.restore):
            path.unlink(missing_ok=True)
            if backup is not None:
                shutil.move(backup, path)
        for path in reversed(self.created):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running one-node SLURM cluster; yields its state directory (logs under it)."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM test, but {reason}")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    for sub in ("ctld", "spool"):
        (state / sub).mkdir()
    cluster = Cluster(state)
    try:
        munge = pwd.getpwnam("munge")
        if not MUNGE_RUN.exists():
            MUNGE_RUN.mkdir(mode=0o755, parents=True)
            cluster.created.append(MUNGE_RUN)
        os.chown(MUNGE_RUN, munge.pw_uid, munge.pw_gid)
        if not _munge_works():  # reuse a munged that already runs, else start one
            if not MUNGE_KEY.exists():
                MUNGE_KEY.parent.mkdir(mode=0o700, exist_ok=True)
                MUNGE_KEY.write_bytes(os.urandom(1024))
                cluster.created.append(MUNGE_KEY)
                os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)
                MUNGE_KEY.chmod(0o400)
            munge_dir = Path(tempfile.mkdtemp(prefix="slurm-test-munge-"))  # the munge user cannot enter tmp_path
            cluster.created.append(munge_dir)
            os.chown(munge_dir, munge.pw_uid, munge.pw_gid)
            cluster.start(
                "munged",
                [_tool("munged"), "--foreground", f"--log-file={munge_dir / 'munged.log'}", f"--pid-file={munge_dir / 'munged.pid'}"],
                user=munge.pw_uid,
                group=munge.pw_gid,
                extra_groups=[],
            )
            _wait(_munge_works, 20, "munged answering", cluster, (munge_dir / "munged.log",))
        ETC.mkdir(exist_ok=True)
        settings = {"state": state, "cpus": os.cpu_count() or 1, "memory": _node_memory_mb(), "partition": PARTITION, "short_partition": SHORT_PARTITION}
        cluster.write(ETC / "slurm.conf", (HERE / "slurm.conf.in").read_text().format(**settings))
        cluster.write(ETC / "gres.conf", (HERE / "gres.conf.in").read_text())
        cluster.start("slurmctld", [_tool("slurmctld"), "-D", "-i"])
        _wait(lambda: _slurm("scontrol", "ping").stdout.count("UP") > 0, 30, "slurmctld UP", cluster)
        cluster.start("slurmd", [_tool("slurmd"), "-D", "-N", "localhost"])
        _wait(lambda: _slurm("sinfo", "--noheader", "--nodes=localhost", "--format=%T").stdout.strip() == "idle", 60, "node localhost idle", cluster)
        yield state
    finally:
        cluster.teardown()


def _profile(directory: Path, extra: dict | None = None) -> Path:
    """profiles/slurm/config.yaml with tests/slurm/overlay.yaml (and ``extra``) merged over it."""

    def merge(base: dict, overlay: dict) -> dict:
        merged = dict(base)
        for key, value in overlay.items():
            if value is None:
                merged.pop(key, None)
            elif isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = value
        return merged

    real = read_profile(REPO / "profiles" / "slurm")  # the site's values (__variables__) filled in
    overlay = merge(yaml.safe_load((HERE / "overlay.yaml").read_text()), extra or {})
    assert set(overlay["set-resources"]) <= set(real["set-resources"]), "the overlay may only adjust rules the real profile names"
    directory.mkdir()
    (directory / "config.yaml").write_text(yaml.safe_dump(merge(real, overlay), sort_keys=False))
    return directory


def _run_through_slurm(workdir: Path, profile: Path, config: Path, *extra: str, targets: list[str] = TARGETS) -> tuple[int, str]:
    command = [*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--profile", str(profile), *targets, "--configfile", str(REPO / "config.yaml"), str(config), *extra]
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    env["PATH"] = os.pathsep.join([str(Path(SNAKEMAKE[0]).parent), SEARCH_PATH])  # jobs run snakemake from the venv
    with open(workdir / "snakemake.out", "w+") as out:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # lets the executor scancel what it submitted
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        out.seek(0)
        return process.returncode, out.read()


def _jobs_of_run(run_id: str) -> dict[str, dict[str, str]]:
    """{job id: scontrol's record} of every job submitted with this run's job name."""
    shown = _slurm("scontrol", "--details", "--oneliner", "show", "job")
    assert shown.returncode == 0, shown.stderr
    jobs = {}
    for line in shown.stdout.splitlines():
        record = dict(re.findall(r"(\w+)=(\S*)", line))
        if record.get("JobName") == run_id:
            jobs[record["JobId"]] = record
    return jobs


@pytest.fixture(scope="module")
def demo_run(slurm_cluster, tmp_path_factory) -> dict:
    """Part of the demo through the profile; its working directory (twins, annotations, the
    pre-trained backbone) is reused by the chained training run."""
    base = tmp_path_factory.mktemp("demo")
    workdir = base / "work"
    workdir.mkdir()
    config = base / "overlay.yaml"
    only_cityscapes = {"coco": {"enabled": False}, "bdd100k": {"enabled": False}}
    # the node's A100 is fake (gres on /dev/null): the GPU jobs train on the CPU on purpose
    on_cpu = {"training": {**TINY_TRAINING["training"], "device": "cpu"}}
    config.write_text(yaml.safe_dump({"synthetic": SMALL_TWINS, **on_cpu, "datasets": only_cityscapes, "anonymization": {"shards": 2}}))
    profile = _profile(base / "profile")
    returncode, output = _run_through_slurm(workdir, profile, config)
    return {"workdir": workdir, "config": config, "profile": profile, "returncode": returncode, "output": output}


def test_demo_part_runs_through_the_slurm_profile(demo_run, slurm_cluster):
    workdir, config, profile, returncode, output = (demo_run[key] for key in ("workdir", "config", "profile", "returncode", "output"))
    ctld_log = (slurm_cluster / "slurmctld.log").read_text(errors="replace")
    assert returncode == 0, output[-6000:] + "\n--- slurmctld.log\n" + ctld_log[-3000:]

    # The outputs.
    assert read_json(workdir / TARGETS[0])["annotations"]
    assert read_json(workdir / TARGETS[1])["instances"]["anonymized"] > 0
    validate_metrics_document(read_json(workdir / TARGETS[2]))

    # What Snakemake ran: rules submitted to SLURM ("rule x:", or "Job n: train_model ..." for
    # train_model, whose message names the backend) and local ones ("localrule x:").
    remote = collections.Counter(re.findall(r"^rule (\w+):$", output, re.MULTILINE))
    remote.update(re.findall(r"^Job \d+: (train_model) \S+ with backend \w+ -> ", output, re.MULTILINE))
    local = collections.Counter(re.findall(r"^localrule (\w+):$", output, re.MULTILINE))
    assert local == {"assemble_tree": 1}, output[-3000:]
    assert remote == {"generate_twin": 1, "generate_pretraining_set": 1, "pretrain_backbone": 1, "normalize_annotations": 2, "anonymize_shard": 2, "train_model": 1, "predict": 1, "evaluate": 1}, output[-3000:]
    submitted = dict(re.findall(r"^Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.$", output, re.MULTILINE))
    assert len(submitted) == sum(remote.values())

    # The scheduler's records: one batch job per non-local job, all through sbatch, all completed.
    run_id = re.search(r"^SLURM run ID: (\S+)$", output, re.MULTILINE)
    assert run_id, "the run did not use the slurm executor"
    jobs = _jobs_of_run(run_id.group(1))
    assert set(jobs) == set(submitted), (sorted(jobs), sorted(submitted))
    rules = collections.Counter(re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["Comment"]).group(1) for job in jobs.values())
    assert rules == remote
    for job_id, job in jobs.items():
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["Partition"] == PARTITION and job["BatchFlag"] == "1", job
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={job_id} ", ctld_log), f"no sbatch submission of job {job_id} in slurmctld.log"
        started = rf"(sched: Allocate JobId={job_id} NodeList=localhost|sched/backfill: _start_job: Started JobId={job_id} in {PARTITION} on localhost)"
        assert re.search(started, ctld_log), f"job {job_id} never started on localhost"
        assert re.search(rf"_job_complete: JobId={job_id} WEXITSTATUS 0", ctld_log), f"job {job_id} did not exit 0"
        assert Path(submitted[job_id]).is_file(), f"no SLURM log of job {job_id}"
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)
        gpu_request = job.get("TresPerJob", "")
        gres_allocation = re.search(rf"gres_job_state gres:gpu\(\d+\) type:a100\(\d+\) job:{job_id} ", ctld_log)
        if rule in GPU_RULES:  # requested as --gpus=a100:1 and allocated the node's fake A100
            assert gpu_request == "gres:gpu:a100:1" and job.get("JOB_GRES") == "gpu:a100:1", job
            assert gres_allocation, f"no gres/gpu allocation of job {job_id} in slurmctld.log"
        else:
            assert "gpu" not in gpu_request and job.get("JOB_GRES") in (None, "(null)"), job
            assert not gres_allocation
    assert len(re.findall(r"_slurm_rpc_submit_batch_job: JobId=", ctld_log)) == len(jobs), "jobs other than this run's went to the test cluster"

    # The GPU guard: with training.device auto, train_model gets the fake A100 from the scheduler,
    # which it cannot use (no driver): it refuses to train on the CPU and says why, in its log.
    guarded = config.parent / "auto.yaml"
    guarded.write_text(yaml.safe_dump({"training": {"device": "auto"}}))
    returncode, output = _run_through_slurm(workdir, profile, config, str(guarded), "--forcerun", "train_model", "--retries", "0")
    assert returncode != 0
    log = (workdir / "logs" / "models" / "cityscapes" / "original" / "mask_rcnn_r50_fpn" / "seed0.log").read_text()
    assert "training.device is auto and the scheduler gave this job a GPU, but the job cannot use it" in log, log[-2000:]
    assert "Refusing to run on the CPU" in log


MODEL = "results/models/cityscapes/original/mask_rcnn_r50_fpn/seed0/model_final.pth"
CHAINED_ITERATIONS = 600  # ~25 s of training here


def test_training_longer_than_the_partition_allows_runs_as_a_chain_of_jobs(demo_run, slurm_cluster, tmp_path):
    """cluster.max_runtime_minutes 1 on a partition with MaxTime=1: each train_model job stops
    30-50 s before SLURM's end of it with a checkpoint (exit 75), Snakemake's retries submit the
    next, which resumes; the weights equal an uninterrupted run's, byte for byte."""
    longer = tmp_path / "longer.yaml"
    longer.write_text(yaml.safe_dump({"training": {"synthetic": {"iterations": CHAINED_ITERATIONS}}}))
    uninterrupted, chained = tmp_path / "uninterrupted", tmp_path / "chained"
    for workdir in (uninterrupted, chained):  # the demo's twins, annotations and backbone
        shutil.copytree(demo_run["workdir"], workdir, symlinks=True)

    local = subprocess.run([*SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(uninterrupted), "--cores", "1", MODEL,
                            "--configfile", str(REPO / "config.yaml"), str(demo_run["config"]), str(longer)], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert local.returncode == 0, local.stderr[-4000:]
    trained = read_json(uninterrupted / MODEL.replace("model_final.pth", "training.json"))
    assert trained["resumed_at"] == 0
    # Each job stops `margin` s before its 60: about a third of this machine's training time after
    # its ~6 s start-up, so that it takes about three jobs here and at least two on a faster one;
    # runtime_margin 10: retries for 10x the expected time (a model, not this machine's speed).
    margin = min(50.0, max(30.0, 60 - 6 - trained["seconds"] / 3))
    limited = tmp_path / "limited.yaml"
    limited.write_text(yaml.safe_dump({"cluster": {"max_runtime_minutes": 1, "stop_margin_minutes": margin / 60, "runtime_margin": 10}}))

    short = {"set-resources": {"train_model": {"slurm_partition": SHORT_PARTITION, "runtime": None}}}  # runtime from the cost model, capped at 1
    profile = _profile(tmp_path / "profile", short)
    returncode, output = _run_through_slurm(chained, profile, demo_run["config"], str(longer), str(limited), targets=[MODEL])
    ctld_log = (slurm_cluster / "slurmctld.log").read_text(errors="replace")
    assert returncode == 0, output[-6000:] + "\n--- slurmctld.log\n" + ctld_log[-3000:]
    assert (chained / MODEL).read_bytes() == (uninterrupted / MODEL).read_bytes()
    assert read_json(chained / MODEL.replace("model_final.pth", "training.json"))["resumed_at"] > 0

    # The scheduler's records: a chain of train_model jobs on the short partition, each but the
    # last stopped by itself before the limit (FAILED, not TIMEOUT), the last completed.
    run_id = re.search(r"^SLURM run ID: (\S+)$", output, re.MULTILINE).group(1)
    chain = sorted((job for job in _jobs_of_run(run_id).values() if job["Comment"].startswith("rule_train_model")), key=lambda job: int(job["JobId"]))
    assert len(chain) >= 2, output[-3000:]
    for job in chain:
        assert job["Partition"] == SHORT_PARTITION and job["TimeLimit"] == "00:01:00", job
    for job in chain[:-1]:
        assert job["JobState"] == "FAILED", job
    assert chain[-1]["JobState"] == "COMPLETED" and chain[-1]["ExitCode"] == "0:0", chain[-1]
    logs = dict(re.findall(r"^Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.$", output, re.MULTILINE))
    for job in chain[:-1]:  # the job's Snakemake ran the command once, which stopped itself (exit 75)
        said = Path(logs[job["JobId"]]).read_text()
        assert len(re.findall(rf"TimeLimitReached: stopped after iteration \d+ of {CHAINED_ITERATIONS} .* before its time limit", said)) == 1, said[-3000:]
        assert "Trying to restart job" not in said and "forcing job termination" not in said, said[-3000:]
    print(f"\n{trained['seconds']:.0f} s uninterrupted, stop margin {margin:.0f} s; {len(chain)} jobs: " + ", ".join(f"{job['JobId']} {job['JobState']} {job['RunTime']}" for job in chain))
