"""PyTorch eager column: the same models in torch ops, ``torch.optim.SGD``/``Adam``.

Threads are pinned to ``THREADS``: ``BENCH_THREADS`` when set (``run --threads``), else
the machine's cores, as OpenBLAS and XLA use by default. Images are
NCHW here: the HWIO conv kernels are permuted to OIHW and the first dense kernel's rows
reordered to NCHW flattening once, at set-up, so the function computed is identical. The
LSTM cell is written out (the same math as the other columns), not ``torch.nn.LSTM``.
"""

from __future__ import annotations

import os

from benchmarks.workloads import ADAM, LSTM_HIDDEN, LSTM_STEPS, SGD_LR, cnn_dense_rows_nchw

THREADS = int(os.environ.get("BENCH_THREADS") or os.cpu_count() or 1)


def _to_torch_layout(name: str, params0: dict) -> dict:
    if name != "cnn":
        return dict(params0)
    p = dict(params0)
    p["c1_w"] = p["c1_w"].transpose(3, 2, 0, 1).copy()
    p["c2_w"] = p["c2_w"].transpose(3, 2, 0, 1).copy()
    p["d1_w"] = cnn_dense_rows_nchw(p["d1_w"])
    return p


def build(workload, params0: dict, data, mode: str):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    name = workload.name

    def softmax_ce(logits, y):
        return torch.mean(torch.logsumexp(logits, dim=1) - torch.sum(logits * y, dim=1))

    def xor_loss(p, x, y):
        h = torch.tanh(x @ p["l1_w"] + p["l1_b"])
        out = torch.sigmoid(h @ p["l2_w"] + p["l2_b"])
        return torch.mean((out - y) ** 2)

    def mlp_loss(p, x, y):
        h = torch.relu(x @ p["l1_w"] + p["l1_b"])
        h = torch.relu(h @ p["l2_w"] + p["l2_b"])
        return softmax_ce(h @ p["l3_w"] + p["l3_b"], y)

    def cnn_loss(p, x, y):
        h = torch.relu(F.conv2d(x, p["c1_w"], p["c1_b"], padding=1))
        h = torch.relu(F.conv2d(h, p["c2_w"], p["c2_b"], padding=1))
        h = F.max_pool2d(h, 2).reshape(h.shape[0], -1)
        h = torch.relu(h @ p["d1_w"] + p["d1_b"])
        return softmax_ce(h @ p["d2_w"] + p["d2_b"], y)

    def lstm_loss(p, x, y):
        n, hid = x.shape[0], LSTM_HIDDEN
        xw = (x.reshape(n * LSTM_STEPS, -1) @ p["wx"]).reshape(n, LSTM_STEPS, 4 * hid)
        h = torch.zeros((n, hid))
        c = torch.zeros((n, hid))
        for t in range(LSTM_STEPS):
            z = xw[:, t] + h @ p["wh"] + p["b"]
            i = torch.sigmoid(z[:, :hid])
            f = torch.sigmoid(z[:, hid : 2 * hid])
            g = torch.tanh(z[:, 2 * hid : 3 * hid])
            o = torch.sigmoid(z[:, 3 * hid :])
            c = f * c + i * g
            h = o * torch.tanh(c)
        return torch.mean((h @ p["p_w"] + p["p_b"] - y) ** 2)

    loss_fn = {"xor": xor_loss, "mlp": mlp_loss, "cnn": cnn_loss, "lstm": lstm_loss}[name]
    tparams = _to_torch_layout(name, params0)

    def init():
        params = {k: torch.tensor(v, requires_grad=True) for k, v in tparams.items()}
        if workload.optimizer == "sgd":
            opt = torch.optim.SGD(params.values(), lr=SGD_LR)
        else:
            opt = torch.optim.Adam(
                params.values(), lr=ADAM["lr"], betas=(ADAM["b1"], ADAM["b2"]), eps=ADAM["eps"]
            )
        return params, opt

    def step(params, opt, x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(params, x, y)
        loss.backward()
        opt.step()
        return params, opt, loss

    x, y = data
    if name == "cnn":
        x = x.transpose(0, 3, 1, 2).copy()
    return {
        "init": init,
        "step": step,
        "x": torch.from_numpy(x),
        "y": torch.from_numpy(y),
        "to_float": lambda loss: float(loss.detach()),
        "sync": lambda out: None,
        "jitted": None,
    }
