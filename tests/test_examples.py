"""Smoke tests: every example runs at a reduced budget and still shows its claim.

Each test calls the script's ``main(argv)`` in-process (compiled kernels are shared
and cached on disk) and asserts the metric the example exists to demonstrate. The
digits examples need scikit-learn (installed by the dev and examples extras); they
fail rather than skip without it, so a CI that lost the dependency is noticed.
"""

import os
import subprocess
import sys

import pytest

from fgrad.examples import list_examples, load_example

EXAMPLES = [
    "autoencoder",
    "cnn_digits",
    "digits_mlp",
    "gan_2d",
    "lstm_sequence",
    "perceptron",
    "rbm",
    "regularization",
    "vanishing_gradients",
    "xor_mlp",
]

try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False


def run(name, tmp_path, *argv):
    metrics = load_example(name).main([*argv, "--out", str(tmp_path)])
    if HAVE_MATPLOTLIB:  # each example saves its PNG into --out
        assert os.path.isfile(metrics["plot"]) and metrics["plot"].endswith(".png")
    return metrics


def test_every_example_is_listed_with_a_summary():
    listed = list_examples()
    assert set(EXAMPLES) <= set(listed)
    assert all(summary for summary in listed.values())


@pytest.mark.parametrize("name", EXAMPLES)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_example(name).main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"python examples/{name}.py" in out and "--seed" in out and "--out" in out


def test_python_m_fgrad_examples_lists_them():
    result = subprocess.run(
        [sys.executable, "-m", "fgrad.examples"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for name in EXAMPLES:
        assert name in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "fgrad.examples", "no_such_example"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "cnn_digits" in result.stderr


# ------------------------------------------------------------------ the claims


def test_perceptron_separable_yes_xor_no(tmp_path):
    m = run("perceptron", tmp_path)
    assert m["separable_converged"] and m["separable_accuracy"] == 1.0
    assert m["xor_perceptron_mistakes_last_epoch"] > 0  # never converges on XOR
    assert m["xor_perceptron_accuracy"] <= 0.75
    assert m["xor_logistic_accuracy"] <= 0.75
    assert m["xor_logistic_loss"] == pytest.approx(0.6931, abs=1e-3)  # stuck at p = 0.5


def test_xor_mlp_truth_table(tmp_path):
    m = run("xor_mlp", tmp_path)
    assert m["truth_table"] == [0, 1, 1, 0]


def test_digits_mlp_reaches_90_percent(tmp_path):
    m = run("digits_mlp", tmp_path, "--epochs", "6")
    assert m["val_accuracy"] > 0.90


def test_digits_mlp_flags(tmp_path):
    m = run(
        "digits_mlp", tmp_path, "--epochs", "6", "--optimizer", "adam", "--lr", "3e-3", "--schedule",
        "warmup-cosine", "--l1", "1e-5", "--l2", "1e-4", "--dropout", "0.1", "--batchnorm",
        "--init", "he_normal", "--early-stopping", "2",
    )  # fmt: skip
    assert m["val_accuracy"] > 0.90


def test_vanishing_gradients(tmp_path):
    m = run("vanishing_gradients", tmp_path, "--epochs", "2")
    assert m["sigmoid_first_last_ratio"] < 1e-3  # the first layer's gradient vanishes
    assert m["relu_he_first_last_ratio"] > 0.1  # ReLU + He keeps it
    assert m["relu_he_val_accuracy"] > m["sigmoid_val_accuracy"] + 0.3


def test_regularization_l1_gives_exact_zeros(tmp_path):
    m = run("regularization", tmp_path, "--steps", "100")
    assert m["zeros_l1"] > 100  # L1 (proximal): many weights exactly zero
    assert m["zeros_l2"] == 0 and m["zeros_none"] == 0  # L2 only shrinks
    assert m["mean_abs_l2"] < 0.9 * m["mean_abs_none"]


def test_cnn_digits_course_model_over_95_percent(tmp_path):
    m = run("cnn_digits", tmp_path, "--epochs", "15")
    assert m["test_accuracy"] > 0.95


def test_autoencoder_denoises(tmp_path):
    m = run("autoencoder", tmp_path, "--epochs", "10")
    assert m["reconstruction_mse"] < 0.7 * m["noisy_mse"]
    assert m["reconstruction_mse"] < m["first_epoch_mse"]


def test_rbm_error_falls_and_pretraining_helps(tmp_path):
    m = run("rbm", tmp_path, "--epochs", "5", "--finetune-epochs", "8")
    assert m["rbm_error_last_epoch"] < 0.8 * m["rbm_error_first_epoch"]
    assert m["rbm2_error_last_epoch"] < m["rbm2_error_first_epoch"]
    assert m["pretrained_accuracy"] > m["random_init_accuracy"] + 0.1


def test_lstm_solves_adding_problem_mlp_does_not(tmp_path):
    m = run("lstm_sequence", tmp_path, "--epochs", "25")
    assert m["lstm_test_mse"] < 0.1 * m["baseline_mse"]
    assert m["mlp_test_mse"] > 0.6 * m["baseline_mse"]


def test_gan_covers_the_modes(tmp_path):
    m = run("gan_2d", tmp_path, "--steps", "1000")
    assert m["modes_covered"] >= 5
    assert m["high_quality_fraction"] > 0.35
