"""Actor options and placement checks: pure functions over the compute profile and the cluster's nodes."""

from __future__ import annotations

from featurebus.common.events import ComputeProfile
from featurebus.inference.placement import actor_options, placement_problem

GIB = 2**30
NODE = {"CPU": 2.0, "memory": 8.0 * GIB, "object_store_memory": 2.0 * GIB}


def test_actor_options_follow_the_compute_profile() -> None:
    cpu = actor_options(ComputeProfile(actor_memory_gb=1.5, max_concurrency=2), actor_num_cpus=0.5, node_cpus=8)
    assert cpu == {
        "num_cpus": 0.5,
        "memory": int(1.5 * GIB),
        "max_concurrency": 2,
        "scheduling_strategy": "SPREAD",
        "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "OMP_WAIT_POLICY": "PASSIVE"}},
    }
    assert "num_gpus" not in cpu
    assert actor_options(ComputeProfile(resource_type="gpu"), 0.5)["num_gpus"] == 1


def threads(options: dict) -> str:  # type: ignore[type-arg]
    return str(options["runtime_env"]["env_vars"]["OMP_NUM_THREADS"])


def test_a_pool_shares_the_nodes_cores_between_its_actors() -> None:
    # Ray would give an actor with half a CPU one math thread: a pool of one actor then uses one
    # core of the node however many it has.
    assert threads(actor_options(ComputeProfile(max_concurrency=1), 0.5, node_cpus=2)) == "2"
    assert threads(actor_options(ComputeProfile(max_concurrency=2), 0.5, node_cpus=2)) == "1"
    assert threads(actor_options(ComputeProfile(max_concurrency=8), 0.5, node_cpus=2)) == "1"


def test_api_plugins_ask_for_little_cpu_and_gpu_memory_becomes_a_share_of_a_gpu() -> None:
    api = actor_options(ComputeProfile(resource_type="api"), 0.5, node_cpus=16)
    assert (api["num_cpus"], threads(api)) == (0.1, "1")
    small = ComputeProfile(resource_type="gpu", gpu_memory_gb=4)
    assert actor_options(small, 0.5, gpu_size_gb=16)["num_gpus"] == 0.25  # four such actors share a card
    assert actor_options(small, 0.5, gpu_size_gb=4)["num_gpus"] == 1
    big = ComputeProfile(resource_type="gpu", gpu_memory_gb=40)
    problem = placement_problem("p", big, 0.5, [{**NODE, "GPU": 2.0}], gpu_size_gb=24)
    assert problem and "gpu_memory_gb" in problem and "FEATUREBUS_GPU_MEMORY_GB" in problem


def test_a_pools_actors_are_spread_over_the_nodes_whatever_the_profile() -> None:
    # SPREAD, not Ray's default (pack the driver's node until it is half used): the actors of one
    # pool run frames side by side, and a lost node takes only part of the pool with it.
    profiles = [ComputeProfile(), ComputeProfile(resource_type="gpu"), ComputeProfile(max_concurrency=16)]
    assert {actor_options(p, 1.0)["scheduling_strategy"] for p in profiles} == {"SPREAD"}


def test_placement_problems_name_the_setting_to_change() -> None:
    assert placement_problem("p", ComputeProfile(), 0.5, [NODE]) is None
    gpu = placement_problem("p", ComputeProfile(resource_type="gpu"), 0.5, [NODE])
    assert gpu and "resource_type" in gpu and "has none" in gpu
    assert placement_problem("p", ComputeProfile(resource_type="gpu"), 0.5, [{**NODE, "GPU": 1.0}]) is None
    memory = placement_problem("p", ComputeProfile(actor_memory_gb=16), 0.5, [NODE])
    assert memory and "actor_memory_gb" in memory and "8.0GiB" in memory
    cpus = placement_problem("p", ComputeProfile(), 4, [NODE])
    assert cpus and "FEATUREBUS_ACTOR_NUM_CPUS" in cpus


def test_an_actor_must_fit_one_node_not_the_sum_of_them() -> None:
    small = {"CPU": 1.0, "memory": 4.0 * GIB}
    # Two 1-CPU nodes add up to 2 CPUs, yet an actor asking for 1.5 fits on neither.
    cpus = placement_problem("p", ComputeProfile(actor_memory_gb=1), 1.5, [small, small])
    assert cpus and "largest Ray node has 1" in cpus and "node 2: CPU=1" in cpus
    memory = placement_problem("p", ComputeProfile(actor_memory_gb=6), 0.5, [small, small])
    assert memory and "largest Ray node offers actors 4.0GiB" in memory
    assert placement_problem("p", ComputeProfile(actor_memory_gb=3), 1.0, [small, small]) is None


def test_what_no_single_node_has_together_is_a_problem_too() -> None:
    gpu_node = {"CPU": 1.0, "GPU": 1.0, "memory": 1.0 * GIB}
    big_node = {"CPU": 8.0, "memory": 32.0 * GIB}
    gpu = ComputeProfile(resource_type="gpu", actor_memory_gb=4)
    # A GPU exists and 4 GiB exist, but not on the same node.
    problem = placement_problem("p", gpu, 0.5, [gpu_node, big_node])
    assert problem and "no single Ray node" in problem and "a GPU" in problem
    assert placement_problem("p", gpu, 0.5, [{**gpu_node, "memory": 8.0 * GIB}, big_node]) is None


def test_a_large_cluster_is_summed_up_not_listed_node_by_node() -> None:
    problem = placement_problem("p", ComputeProfile(resource_type="gpu"), 0.5, [NODE] * 40)
    assert problem and "node 4:" in problem and "node 5:" not in problem and "and 36 more nodes" in problem


def test_a_cluster_without_live_nodes_cannot_place_anything() -> None:
    problem = placement_problem("p", ComputeProfile(), 0.5, [])
    assert problem and "no live nodes" in problem


def test_nodes_that_report_no_memory_resource_are_judged_on_cpus_alone() -> None:
    assert placement_problem("p", ComputeProfile(actor_memory_gb=64), 0.5, [{"CPU": 1.0}]) is None


def test_a_steps_resource_type_is_honoured_beside_the_profiles() -> None:
    gpu_step = ComputeProfile(step_resource_types=["cpu", "gpu"])
    # a GPU step gets a GPU where the cluster has one, and runs on CPU where it has none
    assert actor_options(gpu_step, 0.5, cluster_gpus=True)["num_gpus"] == 1
    assert "num_gpus" not in actor_options(gpu_step, 0.5, cluster_gpus=False)
    assert placement_problem("img_1_0_0", gpu_step, 0.5, [NODE]) is None
    # the profile's "gpu" stays a requirement
    assert placement_problem("img_1_0_0", ComputeProfile(resource_type="gpu"), 0.5, [NODE]) is not None
    # an "api" plugin with a CPU step is not cut to an API actor's CPUs and one thread
    api_only = actor_options(ComputeProfile(resource_type="api", step_resource_types=["api"]), 1.0, node_cpus=8)
    mixed = actor_options(ComputeProfile(resource_type="api", step_resource_types=["api", "cpu"]), 1.0, node_cpus=8)
    assert api_only["num_cpus"] < 1.0 and threads(api_only) == "1"
    assert mixed["num_cpus"] == 1.0 and threads(mixed) == "4"
