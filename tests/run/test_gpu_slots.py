"""launcher=gpu_node on a CPU machine: the GPU count is faked, and each job's GPU and thread settings are checked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from joblib.externals.loky import get_reusable_executor

from kd_lightning import PROJECT_ROOT
from kd_lightning.run import gpu_slots
from kd_lightning.run.gpu_slots import GpuSlotError, GpuSlots
from kd_lightning.seeding import member_seed
from kd_lightning.tools import train
from tests.helpers import CONF_DIR, FAST, compose_cfg

ROOT = PROJECT_ROOT


@pytest.fixture(autouse=True)
def _restore_process_state(monkeypatch):
    """Claims in this process change its environment, thread count and held slot: undo them after each test."""
    for name in (gpu_slots.VISIBLE_ENV, *gpu_slots.THREAD_ENV):
        monkeypatch.setenv(name, "unset-by-test")  # recorded by monkeypatch, so restored (or removed) afterwards
        monkeypatch.delenv(name)
    threads = torch.get_num_threads()
    yield
    gpu_slots.release()
    gpu_slots._claim_error = None
    torch.set_num_threads(threads)


def claim_together(pool: Path, jobs: int, **kwargs) -> list:
    """``jobs`` threads claim at the same moment; each returns its (Slot, lock) or the exception it raised."""
    start = threading.Barrier(jobs)

    def one(_: int):
        start.wait()
        try:
            return gpu_slots.claim(pool, ["0", "1"], 2, **kwargs)
        except GpuSlotError as exc:
            return exc

    with ThreadPoolExecutor(jobs) as pool_:
        return list(pool_.map(one, range(jobs)))


def test_four_concurrent_jobs_on_two_gpus_get_0_0_1_1_and_a_fifth_fails_clearly(tmp_path):
    results = claim_together(tmp_path, 5, wait_s=0.3, cores=16)
    errors = [r for r in results if isinstance(r, Exception)]
    slots = sorted((r[0] for r in results if not isinstance(r, Exception)), key=lambda s: (s.device, s.number))
    assert [(s.device, s.number) for s in slots] == [("0", 0), ("0", 1), ("1", 0), ("1", 1)]
    assert {s.threads for s in slots} == {16 // 4} and {s.jobs for s in slots} == {4}
    assert len(errors) == 1
    assert "hydra.launcher.n_jobs <= 4" in str(errors[0]) and "slots_per_gpu" in str(errors[0])


def test_jobs_spread_over_gpus_before_sharing_one(tmp_path):
    claims = [
        gpu_slots.claim(tmp_path, ["0", "1", "2"], 2) for _ in range(4)
    ]  # locks kept: a dropped lock frees its slot
    assert [slot.device for slot, _ in claims] == ["0", "1", "2", "0"]


def test_a_waiting_job_gets_the_slot_a_finished_job_frees(tmp_path):
    held = [gpu_slots.claim(tmp_path, ["0", "1"], 2)[1] for _ in range(4)]
    threading.Timer(0.3, held[2].release).start()
    slot, _ = gpu_slots.claim(tmp_path, ["0", "1"], 2, wait_s=10, poll_s=0.05)
    assert (slot.device, slot.number) == ("0", 1)  # the third claim's slot, now free


def test_a_killed_jobs_slot_is_not_lost(tmp_path):
    """The OS releases a dead process's file lock: a crashed job frees its slot."""
    script = (
        "import time; from kd_lightning.run.gpu_slots import claim; "
        f"held = claim({str(tmp_path)!r}, ['0'], 1); print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(GpuSlotError, match="were held"):
            gpu_slots.claim(tmp_path, ["0"], 1)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    slot, _ = gpu_slots.claim(tmp_path, ["0"], 1)
    assert slot.device == "0"


def test_visible_devices_from_the_environment_or_the_device_count(monkeypatch):
    monkeypatch.setattr(gpu_slots, "_STARTUP_VISIBLE", "2,3")
    assert gpu_slots.visible_devices("auto") == ["2", "3"]  # the physical ids the jobs may use
    assert gpu_slots.visible_devices(1) == ["2"]
    with pytest.raises(GpuSlotError, match=r"hydra\.callbacks\.gpu_slots\.gpus=3: only 2"):
        gpu_slots.visible_devices(3)
    monkeypatch.setattr(gpu_slots, "_STARTUP_VISIBLE", None)
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: 4)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: pytest.fail("device_count() obeys a claim's narrowing"))
    assert gpu_slots.visible_devices("auto") == ["0", "1", "2", "3"] and gpu_slots.visible_devices(2) == ["0", "1"]
    # a reused loky worker: its last job's claim set CUDA_VISIBLE_DEVICES=1; the pool is still every GPU
    monkeypatch.setenv(gpu_slots.VISIBLE_ENV, "1")
    assert gpu_slots.visible_devices("auto") == ["0", "1", "2", "3"]
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", lambda: 0)
    with pytest.raises(GpuSlotError, match=r"gpus=auto: no GPU is visible"):
        gpu_slots.visible_devices("auto")

    def no_nvml() -> int:
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    # without NVML, torch.cuda.device_count() would initialise CUDA here: the count must be given
    monkeypatch.setattr(torch.cuda, "_raw_device_count_nvml", no_nvml)
    with pytest.raises(GpuSlotError, match=r"gpus=auto: NVML cannot be read.*launcher=joblib"):
        gpu_slots.visible_devices("auto")
    assert gpu_slots.visible_devices(2) == ["0", "1"]
    assert gpu_slots.pool_size(3, 2) == 6


@pytest.mark.parametrize(
    ("gpus", "slots_per_gpu", "key"), [(0, 1, "gpus=0"), ("two", 1, "gpus='two'"), (1, 0, "slots_per_gpu=0")]
)
def test_bad_pool_settings_name_the_key(gpus, slots_per_gpu, key):
    with pytest.raises(GpuSlotError, match=f"hydra.callbacks.gpu_slots.{key}"):
        gpu_slots.pool_size(gpus, slots_per_gpu)


def test_a_process_keeps_its_slot_and_gets_its_gpu_and_thread_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "cpu_cores", lambda: 8)
    slot = gpu_slots.claim_for_process(tmp_path, ["0", "1"], 2)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == slot.device == "0"
    assert (
        all(os.environ[name] == "2" for name in gpu_slots.THREAD_ENV) and torch.get_num_threads() == 2 == slot.threads
    )
    # the next job of the same worker process keeps the slot (CUDA, once started, stays on its GPU)
    assert gpu_slots.claim_for_process(tmp_path, ["0", "1"], 2) == slot
    assert gpu_slots.held_slot()["device"] == "0"
    gpu_slots.release()
    assert gpu_slots.held_slot() is None and gpu_slots.claim(tmp_path, ["0"], 1)[0].number == 0


def test_a_job_without_a_slot_fails_before_training(tmp_path, fake_data_dir):
    _, lock = gpu_slots.claim(tmp_path / "pool", ["0"], 1)  # another job holds the only slot
    GpuSlots(gpus=1, slots_per_gpu=1, pool_dir=str(tmp_path / "pool"), wait_s=0).on_job_start(config=None)
    cfg = compose_cfg(["method=scratch"], data_dir=fake_data_dir, out_dir=tmp_path / "out")
    with pytest.raises(GpuSlotError, match="no GPU slot for this job"):
        train.run(cfg)
    record = json.loads((Path(cfg.paths.run_dir) / "results.json").read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "GpuSlotError"
    assert not (Path(cfg.paths.run_dir) / "checkpoints").exists()
    lock.release()


def test_gpu_node_launcher_composes_n_jobs_from_gpus_and_slots():
    overrides = [
        "launcher=gpu_node",
        "experiment=study",
        "hydra.callbacks.gpu_slots.gpus=2",
        "hydra.callbacks.gpu_slots.slots_per_gpu=3",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher.n_jobs == 6 and cfg.hydra.launcher.backend == "loky"
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.callbacks.gpu_slots._target_ == "kd_lightning.run.gpu_slots.GpuSlots"
    assert "failed_runs" in cfg.hydra.callbacks  # the multirun still exits 1 when a run failed


@pytest.mark.slow
def test_gpu_node_multirun_spreads_jobs_and_trains_the_shared_teacher_once(tmp_path, fake_data_dir, monkeypatch):
    """The real path: Hydra multirun, joblib (loky processes), two fake GPUs with one slot each. Both students, in
    two processes started together, distil from the same missing 2-member ensemble: each member is a registry
    teacher trained under the registry's lock (kd_lightning/run/teacher_kinds.py), so the job that takes the lock
    trains it and the other waits for it (or, started late, finds it published): each member is trained once. The
    race is likely, not forced (the jobs start at once)."""
    args = [
        "-m",
        "launcher=gpu_node",
        "hydra.callbacks.gpu_slots.gpus=2",
        "hydra.callbacks.gpu_slots.slots_per_gpu=1",
        "dataset=usps",
        "method=rkd,ikd",
        "teacher=ensemble",
        "teacher.members=2",
        f"paths.data_dir={fake_data_dir}",
        f"paths.output_dir={tmp_path}",
        *FAST,
        "efficiency.measure=false",
    ]
    monkeypatch.setattr(sys, "argv", ["kd_lightning.train", *args])
    started = time.monotonic()
    try:
        train.main()
    finally:  # end the loky workers: their slots and open log files go with them
        get_reusable_executor().shutdown(wait=True)
    sweep = tmp_path / "default" / "usps"
    records = {m: json.loads((sweep / m / "seed0" / "results.json").read_text()) for m in ("rkd", "ikd")}
    assert all(r["status"] == "completed" for r in records.values())
    envs = [r["environment"] for r in records.values()]
    # each job ran on its own (fake) GPU, set before CUDA started, with cores // 2 CPU threads
    assert sorted(e["cuda_visible_devices"] for e in envs) == ["0", "1"]
    assert sorted(e["gpu_slot"]["device"] for e in envs) == ["0", "1"]
    expected_threads = max(1, gpu_slots.cpu_cores() // 2)
    assert all(e["cpu_threads"] == e["gpu_slot"]["threads"] == expected_threads for e in envs)
    assert all(e["gpu_slot"]["pool_dir"] == str(tmp_path / "default" / ".gpu-slots") for e in envs)
    # one ensemble, each member trained once, used by both students
    assert len(list((tmp_path / "teachers").rglob("teacher.ckpt"))) == 2
    assert records["rkd"]["teacher"]["members"] == records["ikd"]["teacher"]["members"]
    logs = "".join(p.read_text() for p in sweep.glob("*/seed0/*.log"))
    for k in range(2):
        assert logs.count(f"fitting usps teacher seed={member_seed(0, k)}") == 1, logs
    print(f"gpu_node multirun: {time.monotonic() - started:.0f}s")


def test_gpu_node_without_a_gpu_answers_in_one_line(tmp_path, monkeypatch, capfd):
    """``launcher=gpu_node`` where no GPU is visible: the reason and what to change, in one line, exit 1.

    The command's own code in this process (``main`` with its argv, ``CUDA_VISIBLE_DEVICES=""`` as the process
    started with it): everything it writes to stdout and stderr, and the line Python prints for the
    ``SystemExit`` it ends with (a message, not a number: exit status 1)."""
    monkeypatch.setattr(gpu_slots, "_STARTUP_VISIBLE", "")  # read from the environment when the module is imported
    monkeypatch.setenv(gpu_slots.VISIBLE_ENV, "")
    argv = ["kd_lightning.train", "-m", "launcher=gpu_node", f"paths.output_dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        train.main()
    code = exit_info.value.code
    assert isinstance(code, str)  # the interpreter prints it to stderr and exits 1
    out, err = capfd.readouterr()
    lines = (out + err + code).strip().splitlines()
    assert len(lines) == 1, lines[-20:]
    assert "launcher=gpu_node" in lines[0] and "no GPU is visible" in lines[0]
