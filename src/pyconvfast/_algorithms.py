"""The built-in algorithms: for each kernel, which problems it supports and how it is called.

Importing this module registers them (``pyconvfast._api`` does so). Each ``run`` receives the
5-D channels-first views described in :mod:`pyconvfast._registry`.
"""

import functools
import os

import numpy as np

from pyconvfast._lib.direct import conv_direct
from pyconvfast._lib.im2col import conv_im2col
from pyconvfast._padding import tap_table
from pyconvfast._registry import Algorithm, register
from pyconvfast._threads import blas_threads


@functools.lru_cache(maxsize=512)
def _tap_tables(problem):
    """The (depth, height, width) tap tables of a problem, built once per problem (read-only)."""
    geometry = problem.as_3d()
    tables = []
    for i, o, k, s, d, p in zip(
        geometry["in_size"], geometry["out_size"], geometry["kernel"],
        geometry["stride"], geometry["dilation"], geometry["pad_before"],
    ):
        table = tap_table(i, o, k, s, d, p, problem.padding_mode)
        table.flags.writeable = False
        tables.append(table)
    return tuple(tables)


def _bias_or_empty(bias, dtype):
    return np.empty(0, dtype=dtype) if bias is None else bias


def _run_direct(problem, x, weight, bias, out, n_threads, params):
    conv_direct(x, weight, _bias_or_empty(bias, x.dtype), out, *_tap_tables(problem), n_threads)


register(Algorithm(
    name="direct",
    summary="exact-order loop over every problem: any stride, dilation, padding mode and groups",
    supports=lambda problem: None,
    run=_run_direct,
))


# --- im2col + BLAS ------------------------------------------------------------------------------

def workspace_bytes():
    """The bound on im2col's column buffers, all threads together.

    ``PYCONVFAST_WORKSPACE_MB`` sets it in MiB (default 128).
    """
    text = os.environ.get("PYCONVFAST_WORKSPACE_MB", "128")
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = float("nan")
    if not 0 < megabytes < 2**40:
        raise ValueError(f"PYCONVFAST_WORKSPACE_MB must be a positive number of MiB, got {text!r}")
    return int(megabytes * 2**20)


@functools.lru_cache(maxsize=512)
def _im2col_schedule(problem, n_threads, itemsize, max_rows=None):
    """(rows_per_chunk, tasks_in_parallel) for a problem on ``n_threads`` threads.

    A row is one (od, oh) line of W_out outputs. Tasks (sample, group, chunk of rows) run one per
    thread when there are enough of them; else they run in turn, each GEMM on BLAS's threads.
    ``max_rows`` (a tuning parameter) caps the chunk below what the workspace bound allows.
    """
    geometry = problem.as_3d()
    d_out, h_out, w_out = geometry["out_size"]
    n_rows = d_out * h_out
    n_taps = problem.c_in // problem.groups * int(np.prod(problem.kernel))
    k_per_group = problem.c_out // problem.groups
    row_bytes = (n_taps + k_per_group) * w_out * itemsize
    images = problem.batch * problem.groups
    tasks_in_parallel = n_threads > 1 and images * n_rows >= n_threads
    budget = workspace_bytes() // (n_threads if tasks_in_parallel else 1)
    rows = max(1, min(n_rows, budget // row_bytes, max_rows or n_rows))
    if tasks_in_parallel and images < n_threads:
        # Split each image into enough chunks that every thread has work.
        rows = min(rows, -(-n_rows // -(-n_threads // images)))
    return rows, tasks_in_parallel


def _im2col_weight_matrix(problem, weight):
    return np.ascontiguousarray(weight).reshape(problem.c_out, -1)


def _im2col_param_space(problem):
    """Chunk heights to try: the default (largest the workspace allows), then smaller ones."""
    n_rows = int(np.prod(problem.as_3d()["out_size"][:2]))
    return [{}] + [{"max_rows": rows} for rows in (1, 4, 16, 64) if rows < n_rows]


def _run_im2col(problem, x, matrix, bias, out, n_threads, params):
    rows, tasks_in_parallel = _im2col_schedule(problem, n_threads, x.itemsize, **params)
    with blas_threads.limit(1 if tasks_in_parallel else n_threads):
        conv_im2col(x, matrix, _bias_or_empty(bias, x.dtype), out, *_tap_tables(problem),
                    problem.groups, rows, tasks_in_parallel, n_threads)


register(Algorithm(
    name="im2col",
    summary="lowering + BLAS GEMM: dense layers with many channels, any stride, dilation, padding",
    supports=lambda problem: None,
    run=_run_im2col,
    prepare=_im2col_weight_matrix,
    param_space=_im2col_param_space,
))
