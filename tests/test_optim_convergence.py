"""Every optimizer minimises a convex quadratic and the Rosenbrock function.

Gradients come from ``fgrad.grad``; each case states its hyperparameters, the number
of steps and the loss it must reach (float64, fixed start, so runs are deterministic).
The Rosenbrock tolerances are honest about the method: plain SGD, Adagrad, AdaMax
and AdaDelta crawl along the curved valley, momentum and Adam-type methods reach
the minimum.
"""

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
from fgrad import optim

A = np.array([1.0, 10.0])  # curvatures: condition number 10
C = np.array([1.0, -2.0])  # the minimiser


def quadratic(w):
    """f(w) = 1/2 sum_i a_i (w_i - c_i)^2; f = 253 at the start (5, 5), 0 at c."""
    return 0.5 * fnp.sum(fnp.asarray(A) * (w - fnp.asarray(C)) ** 2)


def rosenbrock(w):
    """f(x, y) = (1 - x)^2 + 100 (y - x^2)^2; f = 24.2 at (-1.2, 1), 0 at (1, 1)."""
    return (1.0 - w[0]) ** 2 + 100.0 * (w[1] - w[0] ** 2) ** 2


def minimise(opt, f, start, steps):
    grad_f = fgrad.grad(f)
    w = fnp.asarray(np.array(start, np.float64))
    state = opt.init(w)
    for _ in range(steps):
        updates, state = opt.update(grad_f(w), state, w)
        w = optim.apply_updates(w, updates)
    return w


def cosine(peak, steps, alpha):
    return optim.cosine_decay_schedule(peak, steps, alpha)


# name -> (optimizer, steps, loss tolerance)
QUADRATIC = {
    "sgd": (lambda: optim.sgd(0.15), 100, 1e-10),
    "momentum": (lambda: optim.sgd(0.05, momentum=0.9), 200, 1e-6),
    "nesterov": (lambda: optim.sgd(0.05, momentum=0.9, nesterov=True), 150, 1e-10),
    "adagrad": (lambda: optim.adagrad(1.0), 200, 1e-8),
    "rmsprop": (lambda: optim.rmsprop(cosine(0.3, 100, 1e-3)), 100, 1e-12),
    "rmsprop_centered": (lambda: optim.rmsprop(cosine(0.3, 100, 1e-3), centered=True), 100, 1e-12),
    "adadelta": (lambda: optim.adadelta(1.0, eps=1e-2), 100, 1e-12),
    "adamax": (lambda: optim.adamax(cosine(0.5, 200, 1e-3)), 200, 1e-3),
    "adam": (lambda: optim.adam(cosine(0.5, 200, 1e-3)), 200, 1e-5),
    "nadam": (lambda: optim.nadam(cosine(0.5, 200, 1e-3)), 200, 1e-6),
    "adamw": (lambda: optim.adamw(cosine(0.5, 200, 1e-3), weight_decay=1e-4), 200, 1e-6),
    "lamb": (lambda: optim.lamb(cosine(0.5, 200, 1e-3)), 200, 1e-3),
}

ROSENBROCK = {
    "sgd": (lambda: optim.sgd(2e-3), 1000, 0.15),
    "momentum": (lambda: optim.sgd(3e-3, momentum=0.9), 500, 1e-5),
    "nesterov": (lambda: optim.sgd(1e-3, momentum=0.9, nesterov=True), 750, 1e-3),
    "adagrad": (lambda: optim.adagrad(1.5), 1000, 0.05),
    "rmsprop_momentum": (
        lambda: optim.rmsprop(cosine(0.01, 1000, 0.01), momentum=0.5),
        1000,
        1e-3,
    ),
    "rmsprop_centered": (
        lambda: optim.rmsprop(cosine(0.01, 500, 0.01), centered=True, momentum=0.9),
        500,
        1e-6,
    ),
    "adadelta": (lambda: optim.adadelta(cosine(1.0, 1000, 0.01), rho=0.95, eps=1e-3), 1000, 0.1),
    "adamax": (lambda: optim.adamax(cosine(1.0, 1000, 0.01)), 1000, 0.1),
    "adam": (lambda: optim.adam(cosine(0.3, 1000, 0.01)), 1000, 1e-3),
    "nadam": (lambda: optim.nadam(cosine(0.3, 1000, 0.01)), 1000, 1e-4),
    "adamw": (lambda: optim.adamw(cosine(0.3, 1000, 0.01), weight_decay=1e-4), 1000, 1e-3),
    "lamb": (lambda: optim.lamb(cosine(0.1, 1000, 0.01)), 1000, 1e-3),
}


@pytest.mark.parametrize("name", list(QUADRATIC))
def test_minimises_convex_quadratic(name):
    make, steps, tol = QUADRATIC[name]
    w = minimise(make(), quadratic, [5.0, 5.0], steps)
    loss = float(quadratic(w))
    assert loss < tol, f"{name}: f = {loss:.3e} after {steps} steps, wanted < {tol:g}"


@pytest.mark.parametrize("name", list(ROSENBROCK))
def test_minimises_rosenbrock(name):
    make, steps, tol = ROSENBROCK[name]
    w = minimise(make(), rosenbrock, [-1.2, 1.0], steps)
    loss = float(rosenbrock(w))
    assert np.all(np.isfinite(np.asarray(w)))
    assert loss < tol, f"{name}: f = {loss:.3e} after {steps} steps, wanted < {tol:g}"
    if tol <= 1e-3:  # converged ones are also near the minimiser (1, 1)
        assert np.max(np.abs(np.asarray(w) - 1.0)) < 0.1
