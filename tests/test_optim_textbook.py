"""The course's textbook update rules, each shown equal to fgrad's optax-form optimizer.

Each test writes the rule the way a textbook does (Goodfellow, Bengio & Courville,
*Deep Learning*, Algorithms 8.2-8.7, and the papers cited), runs it in NumPy on a
convex quadratic with explicit hyperparameters, runs the fgrad optimizer with the
same hyperparameters (gradients from ``fgrad.grad``), and compares the whole
parameter trajectory.
"""

import numpy as np

import fgrad
import fgrad.numpy as fnp
from fgrad import optim

# f(w) = 1/2 w^T H w - b^T w, gradient H w - b.
H = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
B = np.array([1.0, -2.0, 0.5])
W0 = np.array([2.0, -1.0, 3.0])
STEPS = 30


def loss(w):
    return 0.5 * fnp.sum(w * (fnp.asarray(H) @ w)) - fnp.sum(fnp.asarray(B) * w)


def grad_np(w):
    return H @ w - B


def fgrad_trajectory(opt, steps=STEPS):
    g = fgrad.grad(loss)
    w = fnp.asarray(W0)
    state = opt.init(w)
    out = [np.asarray(w)]
    for _ in range(steps):
        u, state = opt.update(g(w), state, w)
        w = optim.apply_updates(w, u)
        out.append(np.asarray(w))
    return np.array(out)


def assert_same_trajectory(fgrad_ws, textbook_ws):
    np.testing.assert_allclose(fgrad_ws, np.array(textbook_ws), rtol=1e-10, atol=1e-12)


def test_momentum_textbook_rule():
    """Polyak momentum, v <- mu v - eta g; w <- w + v (Goodfellow Alg. 8.2).

    optax's trace keeps v' = g + mu v' and steps -eta v'; with v = -eta v' the two
    coincide, so sgd(eta, momentum=mu) has the textbook trajectory.
    """
    eta, mu = 0.1, 0.8
    w, v, ws = W0.copy(), np.zeros(3), [W0.copy()]
    for _ in range(STEPS):
        v = mu * v - eta * grad_np(w)
        w = w + v
        ws.append(w.copy())
    assert_same_trajectory(fgrad_trajectory(optim.sgd(eta, momentum=mu)), ws)


def test_nesterov_textbook_rule():
    """Nesterov momentum (Sutskever et al. 2013; Goodfellow Alg. 8.3).

    v <- mu v - eta grad f(w + mu v); w <- w + v. optax's form evaluates the
    gradient at the parameters it stores, which are the look-ahead point
    theta = w + mu v of the textbook rule (Bengio et al. 2013's reformulation):
    theta_t of sgd(eta, momentum=mu, nesterov=True) equals w_t + mu v_t.
    """
    eta, mu = 0.1, 0.8
    w, v, thetas = W0.copy(), np.zeros(3), [W0.copy()]
    for _ in range(STEPS):
        v = mu * v - eta * grad_np(w + mu * v)
        w = w + v
        thetas.append(w + mu * v)
    assert_same_trajectory(fgrad_trajectory(optim.sgd(eta, momentum=mu, nesterov=True)), thetas)


def test_adagrad_textbook_rule():
    """Adagrad, r <- r + g^2; w <- w - eta g / (delta + sqrt(r)) (Duchi et al. 2011, Alg. 8.4).

    optax's form puts eps inside the root and starts r at 0.1; with
    initial_accumulator_value=r0 and eps=0 it is the textbook rule with r starting
    at r0 and delta = 0.
    """
    eta, r0 = 0.5, 0.25
    w, r, ws = W0.copy(), np.full(3, r0), [W0.copy()]
    for _ in range(STEPS):
        g = grad_np(w)
        r = r + g * g
        w = w - eta * g / np.sqrt(r)
        ws.append(w.copy())
    opt = optim.adagrad(eta, initial_accumulator_value=r0, eps=0.0)
    assert_same_trajectory(fgrad_trajectory(opt), ws)


def test_rmsprop_textbook_rule():
    """RMSProp with decay rho (Tieleman & Hinton 2012; Goodfellow Alg. 8.5).

    r <- rho r + (1 - rho) g^2; w <- w - eta g / sqrt(delta + r): delta inside the
    root, as optax's default eps_in_sqrt=True.
    """
    eta, rho, delta = 0.01, 0.7, 1e-6
    w, r, ws = W0.copy(), np.zeros(3), [W0.copy()]
    for _ in range(STEPS):
        g = grad_np(w)
        r = rho * r + (1 - rho) * g * g
        w = w - eta * g / np.sqrt(delta + r)
        ws.append(w.copy())
    assert_same_trajectory(fgrad_trajectory(optim.rmsprop(eta, decay=rho, eps=delta)), ws)


def test_rmsprop_with_nesterov_momentum_textbook_rule():
    """RMSProp with momentum (Goodfellow Alg. 8.6, Nesterov form).

    The textbook keeps v <- alpha v - eta g / sqrt(r) with r accumulated from the
    gradient at the look-ahead point; optax applies momentum after the RMS scaling
    and evaluates at the stored (look-ahead) point, so theta_t = w_t + alpha v_t.
    """
    eta, rho, alpha = 0.01, 0.9, 0.5
    w, v, r = W0.copy(), np.zeros(3), np.zeros(3)
    thetas = [W0.copy()]
    for _ in range(STEPS):
        g = grad_np(w + alpha * v)
        r = rho * r + (1 - rho) * g * g
        v = alpha * v - eta * g / np.sqrt(r)
        w = w + v
        thetas.append(w + alpha * v)
    opt = optim.rmsprop(eta, decay=rho, eps=0.0, momentum=alpha, nesterov=True)
    assert_same_trajectory(fgrad_trajectory(opt), thetas)


def test_adam_textbook_rule_with_bias_correction():
    """Adam (Kingma & Ba 2015, Algorithm 1; Goodfellow Alg. 8.7).

    s <- rho1 s + (1 - rho1) g; r <- rho2 r + (1 - rho2) g^2;
    s_hat = s / (1 - rho1^t); r_hat = r / (1 - rho2^t);
    w <- w - eta s_hat / (sqrt(r_hat) + delta).
    """
    eta, rho1, rho2, delta = 0.05, 0.8, 0.95, 1e-8
    w, s, r, ws = W0.copy(), np.zeros(3), np.zeros(3), [W0.copy()]
    for t in range(1, STEPS + 1):
        g = grad_np(w)
        s = rho1 * s + (1 - rho1) * g
        r = rho2 * r + (1 - rho2) * g * g
        s_hat = s / (1 - rho1**t)
        r_hat = r / (1 - rho2**t)
        w = w - eta * s_hat / (np.sqrt(r_hat) + delta)
        ws.append(w.copy())
    assert_same_trajectory(fgrad_trajectory(optim.adam(eta, b1=rho1, b2=rho2, eps=delta)), ws)


def test_adam_bias_correction_makes_first_step_lr_sized():
    """With bias correction the first Adam step is -eta * g / |g| (about -eta sign g)."""
    eta = 0.05
    ws = fgrad_trajectory(optim.adam(eta), steps=1)
    np.testing.assert_allclose(ws[1] - ws[0], -eta * np.sign(grad_np(W0)), rtol=1e-6)


def test_decreasing_learning_rate_textbook_rule():
    """The linear decay eta_k = (1 - k/tau) eta_0 + (k/tau) eta_tau (Goodfellow Sec. 8.3.1).

    The first update uses k = 0; after tau steps the rate stays eta_tau.
    """
    eta0, eta_tau, tau = 0.3, 0.03, 10
    w, ws = W0.copy(), [W0.copy()]
    for k in range(STEPS):
        a = min(k / tau, 1.0)
        w = w - ((1 - a) * eta0 + a * eta_tau) * grad_np(w)
        ws.append(w.copy())
    sched = optim.linear_schedule(eta0, eta_tau, transition_steps=tau)
    assert_same_trajectory(fgrad_trajectory(optim.sgd(sched)), ws)


def test_l2_and_l1_regularisation_as_transformations():
    """Weight decay and the L1 (sign) penalty added to the gradient before the step.

    w <- w - eta (g + lambda2 w + lambda1 sign(w)), i.e. SGD on
    f + lambda2/2 ||w||^2 + lambda1 ||w||_1.
    """
    eta, l2, l1 = 0.05, 0.1, 0.02
    w, ws = W0.copy(), [W0.copy()]
    for _ in range(STEPS):
        w = w - eta * (grad_np(w) + l2 * w + l1 * np.sign(w))
        ws.append(w.copy())
    opt = optim.chain(optim.add_decayed_weights(l2), optim.add_l1_penalty(l1), optim.sgd(eta))
    assert_same_trajectory(fgrad_trajectory(opt), ws)
