"""The GPU path's decisions, exercised on CPU: precision policy, XLA, the accelerator description."""

from __future__ import annotations

import pytest

from tuning import load_spec, runtime, search
from tuning.errors import SpecError
from tuning.runtime import Accelerator, compile_options, jit_setting, precision_policy, steps_per_execution

from .conftest import tiny

CPU = Accelerator()
AMPERE = Accelerator("gpu", 2, (8, 0), ("A100", "A100"))
HOPPER = Accelerator("gpu", 1, (9, 0), ("H100",))
TURING = Accelerator("gpu", 1, (7, 5), ("T4",))


@pytest.mark.parametrize(
    "setting, accelerator, policy",
    [
        ("auto", CPU, "float32"),
        ("auto", AMPERE, "mixed_bfloat16"),
        ("auto", HOPPER, "mixed_bfloat16"),
        ("auto", TURING, "mixed_float16"),  # Keras adds loss scaling for float16
        (False, HOPPER, "float32"),
        (True, CPU, "mixed_bfloat16"),
        (True, TURING, "mixed_float16"),
    ],
)
def test_mixed_precision_by_default_on_gpus_only(setting, accelerator, policy):
    assert precision_policy(setting, accelerator) == policy


def test_xla_is_off_on_cpu_unless_asked():
    assert jit_setting("auto", CPU) is False and jit_setting("auto", HOPPER) == "auto"
    assert jit_setting(True, CPU) is True and jit_setting(False, HOPPER) is False
    assert HOPPER.describe() == "1 GPU (H100)" and CPU.describe() == "CPU"


def test_jax_steps_are_compiled_on_cpu_too():
    """Without XLA, Keras runs a JAX step op by op: epochs 1.6x slower on 2 CPU cores."""
    assert jit_setting("auto", CPU, "jax") == "auto" and jit_setting("auto", CPU, "torch") == "auto"
    assert jit_setting(False, CPU, "jax") is False  # asked for


def test_several_steps_per_call_where_measured_to_pay_unless_asked():
    assert steps_per_execution("auto", "tensorflow") == 32 and steps_per_execution("auto", "jax") == 1 and steps_per_execution("auto", "torch") == 1
    assert steps_per_execution("auto", "jax", on_gpu=True) == 32 and steps_per_execution("auto", "torch", on_gpu=True) == 1
    assert steps_per_execution(4, "jax") == 4 and steps_per_execution(1, "torch") == 1
    with pytest.raises(SpecError, match=r"space.yaml: training.steps_per_execution: 4 needs the TensorFlow or JAX backend.*Use auto or 1"):
        steps_per_execution(4, "torch", "space.yaml")


def test_compile_options_follow_the_backend_and_the_machine(monkeypatch):
    spec = load_spec(tiny())
    monkeypatch.setattr(runtime, "backend", lambda: "jax")
    assert compile_options(spec, HOPPER) == {"jit_compile": "auto", "steps_per_execution": 32}
    assert compile_options(spec, CPU) == {"jit_compile": "auto", "steps_per_execution": 1}


@pytest.mark.slow
def test_a_search_in_mixed_precision_and_the_policy_is_restored(tmp_path):
    import keras

    run = search(
        tiny(model={"blocks": 1, "filters": 8}, training={"mixed_precision": True}, search={"algorithm": "random", "max_trials": 1, "max_epochs": 2}),
        name="mixed",
        out=tmp_path,
        quiet=True,
    )
    assert run.manifest["precision"] == "mixed_bfloat16" and run.manifest["jit_compile"] is False and run.manifest["device"] == "CPU"
    assert run.manifest["steps_per_execution"] == 32  # TensorFlow, the tests' backend
    model = run.best_model()
    assert model.steps_per_execution == 1  # the saved model trains on every backend, PyTorch included
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16" and model.get_layer("block1_conv1").variable_dtype == "float32"
    assert model.output.dtype == "float32" and run.best["test"]["accuracy"] > 0.3
    assert keras.config.dtype_policy().name == "float32"  # the search did not leave its policy behind
