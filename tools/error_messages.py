"""Print the error messages shown in docs/errors.md, by running each mistake.

Run: python tools/error_messages.py > /tmp/errors.md (the user script is "train.py").
"""

import re
import warnings

import fgrad
import fgrad.numpy as fnp
from fgrad import lax

warnings.simplefilter("ignore")


def show(title, fn):
    """Run ``fn`` and print the error it raises as a Markdown section."""
    try:
        fn()
        print(f"### {title}\n(no error)\n")
    except Exception as e:
        msg = re.sub(r"'/tmp/[^']*/ckpt.npz'", "'ckpt.npz'", str(e))
        print(f"### {title}\n\n```text\n{type(e).__name__}: {msg}\n```\n")


USER_SCRIPT = r"""
show("Shape mismatch (eager)", lambda: fnp.ones((3, 4)) + fnp.ones((3, 5)))
show("Shape mismatch in a primitive", lambda: lax.dot_general(fnp.ones((3, 4)), fnp.ones((5, 2)), (((1,), (0,)), ((), ()))))
show("Shape mismatch under jit", lambda: fgrad.jit(lambda x, w: x @ w)(fnp.ones((8, 3)), fnp.ones((4, 2))))
def concrete():
    @fgrad.jit
    def f(x):
        if x.sum() > 0:
            return x
        return -x
    f(fnp.ones(3))
show("Python control flow on a traced value", concrete)
leaked = []
def leak():
    fgrad.grad(lambda x: (leaked.append(x * 2.0), (x * x).sum())[1])(fnp.ones(2))
    return leaked[0] + 1.0
show("A tracer that escaped its transformation", leak)
show("grad of a non-scalar output", lambda: fgrad.grad(lambda x: x * 2.0)(fnp.ones(3)))
show("grad with respect to an integer input", lambda: fgrad.grad(lambda p: (p["w"] * p["n"]).sum())({"w": fnp.ones(2), "n": fnp.asarray([1, 2])}))
show("Pytree mismatch", lambda: fgrad.tree.map(lambda a, b: a - b, {"w": 1.0, "b": 2.0}, {"w": 1.0}))
def mutate():
    x = fnp.ones(3)
    x[0] = 5.0
show("In-place update", mutate)
def nan():
    fgrad.config.debug_nans = True
    try:
        fgrad.jit(lambda x: fnp.log(x - 2.0).sum())(fnp.ones(3))
    finally:
        fgrad.config.debug_nans = False
show("debug_nans under jit", nan)
from fgrad.lax.control_flow import CarryTypeError
show("A loop carry that changes type", lambda: lax.scan(lambda c, x: (c.astype(fnp.float64), x), fnp.ones(2), fnp.ones((3, 2))))
show("Unhashable static argument", lambda: fgrad.jit(lambda x, cfg: x, static_argnums=1)(fnp.ones(2), [1, 2]))
import tempfile, os
d = tempfile.mkdtemp(); p = os.path.join(d, "ckpt.npz")
fgrad.io.save(p, {"w": fnp.ones((2, 3))})
show("Checkpoint that does not fit the template", lambda: fgrad.io.load(p, like={"w": fnp.ones((3, 2))}))
open(p, "r+b").write(b"garbage")
show("Corrupted checkpoint", lambda: fgrad.io.load(p))
show("Reverse mode through while_loop", lambda: fgrad.grad(lambda x: lax.while_loop(lambda v: v < 10.0, lambda v: v * x, 1.0))(2.0))
"""

namespace = {"fgrad": fgrad, "fnp": fnp, "lax": lax, "show": show}
exec(compile(USER_SCRIPT, "train.py", "exec"), namespace)  # noqa: S102 - our own script
