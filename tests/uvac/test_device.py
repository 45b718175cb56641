"""The thread policy: each workload's count, the host's cores shared by the service's
processes, overrides, and the settings that feed it."""

from __future__ import annotations

import pytest
import torch

from service_config import Settings
from uvac.audio import FeatureConfig
from uvac.device import WORKLOADS, ThreadPolicy, available_cores, choose_thread_policy
from uvac.training import build_configs, training_workload
from worker.job_support import thread_policy


@pytest.mark.parametrize(
    ("cores", "processes", "expected"),
    [
        # cores, processes: encoder, network, small network, serving
        (2, 1, ThreadPolicy(encoder=2, network=2, small_network=1, serving=2)),
        (2, 2, ThreadPolicy(encoder=1, network=1, small_network=1, serving=1)),
        (2, 3, ThreadPolicy(encoder=1, network=1, small_network=1, serving=1)),
        (16, 2, ThreadPolicy(encoder=8, network=8, small_network=1, serving=8)),
        (16, 3, ThreadPolicy(encoder=5, network=5, small_network=1, serving=5)),
        (1, 1, ThreadPolicy(encoder=1, network=1, small_network=1, serving=1)),
    ],
)
def test_each_workload_gets_its_count_from_the_process_share(
    cores: int, processes: int, expected: ThreadPolicy
) -> None:
    policy = choose_thread_policy(cores=cores, processes=processes)
    assert policy == expected
    # The API and the workers of one host never ask for more threads than it has cores
    # (a single-core share is the floor: every process needs one).
    assert processes * max(policy.threads(w) for w in WORKLOADS) <= max(cores, processes)


def test_overrides_fix_a_workload_and_leave_the_others_to_the_policy() -> None:
    policy = choose_thread_policy(
        cores=16, processes=2, overrides={"small_network": 2, "encoder": None}
    )
    assert policy == ThreadPolicy(encoder=8, network=8, small_network=2, serving=8)
    with pytest.raises(ValueError, match="bad thread override"):
        choose_thread_policy(cores=2, overrides={"decoder": 1})
    with pytest.raises(ValueError, match="at least one core"):
        choose_thread_policy(cores=0)


def test_settings_map_to_overrides() -> None:
    assert Settings().thread_overrides() == dict.fromkeys(WORKLOADS)
    fixed = Settings(torch_threads=3).thread_overrides()
    assert fixed == dict.fromkeys(WORKLOADS, 3)
    mixed = Settings(torch_threads=3, encoder_threads=4, training_threads=1).thread_overrides()
    assert mixed == {"encoder": 4, "network": 1, "small_network": 1, "serving": 3}


def test_a_worker_divides_this_host_among_the_service_processes() -> None:
    cores = available_cores()
    policy = thread_policy(Settings(host_processes=2))
    assert policy.encoder == max(1, cores // 2)
    assert policy.small_network == 1
    assert thread_policy(Settings(training_threads=2)).small_network == 2


def test_using_sets_the_workload_count_and_restores_the_caller_s() -> None:
    policy = ThreadPolicy(encoder=2, network=2, small_network=1, serving=2)
    torch.set_num_threads(2)
    with policy.using("small_network") as count:
        assert count == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_networks_on_embeddings_are_the_small_network_workload() -> None:
    scenes, _ = build_configs("scenes")
    assert training_workload(scenes) == "small_network"
    assert training_workload(FeatureConfig()) == "network"
