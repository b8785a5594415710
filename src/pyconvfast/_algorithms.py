"""The built-in algorithms: for each kernel, which problems it supports and how it is called.

Importing this module registers them (``pyconvfast._api`` does so). Each ``run`` receives the
5-D channels-first views described in :mod:`pyconvfast._registry`.
"""

import functools
import math
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
def im2col_chunk(problem, n_threads, itemsize, max_chunk=None):
    """Output positions lowered at once by one im2col task.

    As many as each thread's share of the workspace bound allows (``max_chunk``, a tuning
    parameter, can cap it lower), and few enough that every thread gets a task.
    """
    n_positions = math.prod(problem.out_size)
    n_taps = problem.c_in // problem.groups * math.prod(problem.kernel)
    bytes_per_position = (n_taps + problem.c_out // problem.groups) * itemsize
    budget = workspace_bytes() // n_threads
    chunk = min(n_positions, max(1, budget // bytes_per_position), max_chunk or n_positions)
    images = problem.batch * problem.groups
    if images < n_threads:
        chunk = min(chunk, -(-n_positions // -(-n_threads // images)))
    return chunk


def _im2col_weight_matrix(problem, weight):
    return np.ascontiguousarray(weight).reshape(problem.c_out, -1)


def _im2col_param_space(problem):
    """Chunk sizes to try: the default (largest the workspace allows), then smaller ones."""
    n_positions = math.prod(problem.out_size)
    return [{}] + [{"max_chunk": chunk} for chunk in (256, 1024, 4096) if chunk < n_positions]


def _run_im2col(problem, x, matrix, bias, out, n_threads, params):
    chunk = im2col_chunk(problem, n_threads, x.itemsize, **params)
    with blas_threads.limit(1):
        conv_im2col(x, matrix, _bias_or_empty(bias, x.dtype), out, *_tap_tables(problem),
                    problem.groups, chunk, n_threads)


register(Algorithm(
    name="im2col",
    summary="lowering + BLAS GEMM: dense layers with many channels, any stride, dilation, padding",
    supports=lambda problem: None,
    run=_run_im2col,
    prepare=_im2col_weight_matrix,
    param_space=_im2col_param_space,
))
