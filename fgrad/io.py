"""Checkpoints: save and load pytrees of arrays, atomically, without pickle.

File format: a zip archive (NumPy's ``.npz`` layout) holding one ``.npy`` member per
array leaf, plus ``__structure__.json`` describing the tree (dicts, lists, tuples,
namedtuples, None, Python scalars and strings) and ``__checksum__.json`` with a SHA-256
of the structure and of every array's bytes. Loading never unpickles anything
(``allow_pickle=False``), so an untrusted file cannot run code.

Writes are atomic: the archive is written to a temporary file in the same directory,
flushed and fsynced, then renamed over the target (and the directory fsynced). A crash,
a full disk or a kill mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import os
import re
import tempfile
import zipfile
from collections import namedtuple
from typing import Any

import numpy as np

from fgrad import tree as tree_util
from fgrad.core import Array

FORMAT_VERSION = 1
_STRUCTURE = "__structure__.json"
_CHECKSUM = "__checksum__.json"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted, or does not fit the template."""


# ---------------------------------------------------------------- encoding the tree


def _encode(node: Any, arrays: list[np.ndarray], path: str) -> Any:
    if node is None:
        return {"t": "none"}
    if isinstance(node, Array | np.ndarray | np.generic):
        arr = np.asarray(node)
        if arr.dtype == object:
            raise CheckpointError(f"save: leaf {path or '(root)'} has dtype object")
        arrays.append(arr)
        return {"t": "array", "i": len(arrays) - 1}
    if isinstance(node, bool):
        return {"t": "bool", "v": node}
    if isinstance(node, int):
        return {"t": "int", "v": node}
    if isinstance(node, float):
        return {"t": "float", "v": repr(node)}
    if isinstance(node, str):
        return {"t": "str", "v": node}
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return {
            "t": "namedtuple",
            "name": type(node).__name__,
            "fields": list(node._fields),
            "c": [_encode(v, arrays, f"{path}.{f}") for f, v in zip(node._fields, node)],
        }
    if isinstance(node, tuple | list):
        return {
            "t": "tuple" if isinstance(node, tuple) else "list",
            "c": [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(node)],
        }
    if isinstance(node, dict):
        for k in node:
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise CheckpointError(
                    f"save: dict key {k!r} at {path or '(root)'} is not a str/int"
                )
        keys = sorted(node, key=lambda k: (isinstance(k, str), k))
        return {
            "t": "dict",
            "k": [{"int": k} if isinstance(k, int) else k for k in keys],
            "c": [_encode(node[k], arrays, f"{path}[{k!r}]") for k in keys],
        }
    # Registered pytree classes (dataclasses, ...): store their children generically;
    # load with ``like=`` to get the class back.
    leaves, treedef = tree_util.tree_flatten(node)
    if treedef.num_leaves == 1 and leaves[0] is node:
        raise CheckpointError(
            f"save: leaf {path or '(root)'} of type {type(node).__name__} is not an array, "
            f"scalar or string"
        )
    return {
        "t": "node",
        "name": type(node).__name__,
        "c": [_encode(v, arrays, f"{path}<{i}>") for i, v in enumerate(leaves)],
    }


def _decode(spec: dict, arrays: dict[int, np.ndarray]) -> Any:
    t = spec["t"]
    if t == "none":
        return None
    if t == "array":
        return Array(arrays[spec["i"]])
    if t in ("bool", "int", "str"):
        return spec["v"]
    if t == "float":
        return float(spec["v"])
    if t == "namedtuple":
        cls = namedtuple(spec["name"], spec["fields"])  # a stand-in class: no code is run
        return cls(*[_decode(c, arrays) for c in spec["c"]])
    if t in ("tuple", "list", "node"):
        items = [_decode(c, arrays) for c in spec["c"]]
        return tuple(items) if t == "tuple" else items
    if t == "dict":
        keys = [k["int"] if isinstance(k, dict) else k for k in spec["k"]]
        return {k: _decode(c, arrays) for k, c in zip(keys, spec["c"])}
    raise CheckpointError(f"load: unknown node type {t!r} in the structure description")


def _digest(structure: bytes, arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256(structure)
    for a in arrays:
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.asarray(a, order="C").tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- save / load


def save(path: str | os.PathLike, tree: Any) -> None:
    """Write ``tree`` to ``path`` atomically (the old file survives any failure).

    Args:
        path: destination file (``.npz`` is a good suffix; any name works).
        tree: a pytree of arrays, Python scalars, strings and None (params,
            optimizer states, BatchNorm statistics, step counters...).

    Example:
        >>> import os, tempfile, fgrad, fgrad.numpy as fnp
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
        >>> fgrad.io.save(path, {"w": fnp.ones(2), "step": 3})
        >>> fgrad.io.load(path)["step"]
        3
    """
    path = os.fspath(path)
    arrays: list[np.ndarray] = []
    spec = {"format": FORMAT_VERSION, "tree": _encode(tree, arrays, "")}
    structure = json.dumps(spec, sort_keys=True).encode()
    checksum = json.dumps({"sha256": _digest(structure, arrays)}).encode()
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ckpt", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr(_STRUCTURE, structure)
                for i, a in enumerate(arrays):
                    buf = _io.BytesIO()
                    np.lib.format.write_array(buf, np.asarray(a, order="C"), allow_pickle=False)
                    zf.writestr(f"leaf_{i}.npy", buf.getvalue())
                zf.writestr(_CHECKSUM, checksum)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load(path: str | os.PathLike, like: Any = None) -> Any:
    """Read a checkpoint written by ``save``; verify its checksum (and a template).

    Args:
        path: the file.
        like: optional template pytree; the loaded tree must have its structure, and
            each array its shape and dtype. The result then has the template's node
            types (namedtuples, registered classes).

    Returns:
        The pytree, with arrays as ``fgrad.Array``.

    Raises:
        CheckpointError: missing, truncated or corrupted file, or a template mismatch
            (the message names the first differing key path).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"load: no checkpoint at {path!r}")
    try:
        with zipfile.ZipFile(path, "r") as zf:
            names = set(zf.namelist())
            if _STRUCTURE not in names or _CHECKSUM not in names:
                raise CheckpointError(f"load: {path!r} is not an fgrad checkpoint (incomplete)")
            structure = zf.read(_STRUCTURE)
            checksum = json.loads(zf.read(_CHECKSUM))["sha256"]
            spec = json.loads(structure)
            n = sum(1 for name in names if name.startswith("leaf_"))
            arrays = [
                np.lib.format.read_array(_io.BytesIO(zf.read(f"leaf_{i}.npy")), allow_pickle=False)
                for i in range(n)
            ]
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as e:
        raise CheckpointError(
            f"load: {path!r} is truncated or corrupted ({type(e).__name__}: {e})"
        ) from None
    if _digest(structure, arrays) != checksum:
        raise CheckpointError(f"load: checksum mismatch in {path!r}: the file is corrupted")
    if spec.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"load: unsupported checkpoint format {spec.get('format')!r}")
    tree = _decode(spec["tree"], dict(enumerate(arrays)))
    return tree if like is None else _match_template(tree, like, path)


def _match_template(tree: Any, like: Any, path: str) -> Any:
    got_leaves = tree_util.tree_leaves(tree)
    like_leaves, like_def = tree_util.tree_flatten(like)
    if len(got_leaves) != len(like_leaves):
        raise CheckpointError(
            f"load: {path!r} holds {len(got_leaves)} leaves but the template has "
            f"{len(like_leaves)}; structures differ"
        )
    # Compare structure paths leaf by leaf (namedtuple/class names may differ).
    got_paths = [tree_util.keystr(p) for p, _ in tree_util.tree_flatten_with_path(tree)[0]]
    like_paths = [tree_util.keystr(p) for p, _ in tree_util.tree_flatten_with_path(like)[0]]
    for g, t, gv, tv in zip(got_paths, like_paths, got_leaves, like_leaves):
        if _norm_path(g) != _norm_path(t):
            raise CheckpointError(
                f"load: {path!r} has a leaf at {g or '(root)'} where the template has {t or '(root)'}"
            )
        if isinstance(tv, Array | np.ndarray | np.generic) or hasattr(tv, "shape"):
            ga = np.asarray(gv)
            if tuple(ga.shape) != tuple(np.shape(tv)) or ga.dtype != np.asarray(tv).dtype:
                raise CheckpointError(
                    f"load: leaf {t or '(root)'} in {path!r} is {ga.dtype}{list(ga.shape)} but "
                    f"the template expects {np.asarray(tv).dtype}{list(np.shape(tv))}"
                )
    return tree_util.tree_unflatten(like_def, got_leaves)


def _norm_path(p: str) -> str:
    # Compare by dict keys only: registered classes come back as lists (their node
    # types live in the template), so attribute and index steps may differ.
    return "".join(re.findall(r"\['[^']*'\]", p))
