"""The frozen description of one convolution problem: geometry, dtype and layout."""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from types import MappingProxyType

CHANNELS_FIRST = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
CHANNELS_LAST = {1: "NLC", 2: "NHWC", 3: "NDHWC"}
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@dataclass(frozen=True)
class ConvProblem:
    """A validated convolution problem; every tuple has one entry per spatial axis.

    The API builds it from the user's arguments; algorithms read it to say whether they can run
    the problem, and the tuner uses :attr:`key` to remember choices.
    """

    batch: int
    c_in: int
    c_out: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad_before: tuple[int, ...]
    pad_after: tuple[int, ...]
    padding_mode: str
    dtype: str
    layout: str
    flip: bool = False
    has_bias: bool = False
    unbatched: bool = False
    # The weight was found rank-1 in every slice (pyconvfast._algorithms.separable.mark): the "separable"
    # algorithm may run it.
    rank1_kernel: bool = False
    # "accurate": only the algorithms within the plain summation bound may run it
    # (pyconvfast._config); choices are cached apart.
    precision: str = "fast"

    def __hash__(self):
        # Hashed several times a call (the tuner's choices and the kernels' tables are keyed by
        # the problem): the generated hash rebuilt a tuple of all the fields each time, 1 us of
        # a small call's 20 us budget. Kept in __dict__, like the cached properties.
        try:
            return self.__dict__["_hash"]
        except KeyError:
            value = self.__dict__["_hash"] = hash(tuple(
                getattr(self, field.name) for field in fields(self)))
            return value

    def __getstate__(self):
        # The kept hash is of this process's string hashes: a pickled copy computes its own.
        state = dict(self.__dict__)
        state.pop("_hash", None)
        state.pop("_as_3d", None)  # a read-only view, which does not pickle; made again
        return state

    @cached_property
    def n_spatial(self) -> int:
        """Number of spatial axes: 1, 2 or 3."""
        return len(self.kernel)

    @cached_property
    def channels_last(self) -> bool:
        """True for the NLC / NHWC / NDHWC layouts."""
        return self.layout == CHANNELS_LAST[self.n_spatial]

    @cached_property
    def out_size(self) -> tuple[int, ...]:
        """Output spatial size, ``(in + before + after - dilation*(k-1) - 1) // stride + 1``."""
        return tuple(
            (i + pb + pa - d * (k - 1) - 1) // s + 1
            for i, k, s, d, pb, pa in zip(
                self.in_size, self.kernel, self.stride, self.dilation,
                self.pad_before, self.pad_after,
            )
        )

    @cached_property
    def out_shape(self) -> tuple[int, ...]:
        """Output array shape in the problem's layout, unbatched when the input was."""
        if self.channels_last:
            shape = (self.batch, *self.out_size, self.c_out)
        else:
            shape = (self.batch, self.c_out, *self.out_size)
        return shape[1:] if self.unbatched else shape

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two floating-point operations."""
        n_out = self.batch * self.c_out
        for size in self.out_size:
            n_out *= size
        taps = self.c_in // self.groups
        for k in self.kernel:
            taps *= k
        return 2 * n_out * taps

    def as_3d(self) -> Mapping[str, tuple[int, ...]]:
        """The geometry padded to three spatial axes (leading axes of size 1), for the kernels.

        Returns
        -------
        mapping of str to tuple of 3 ints
            ``in_size``, ``out_size``, ``kernel``, ``stride``, ``dilation``, ``pad_before``;
            read-only, made once per problem (kernel adapters read it on every call).
        """
        try:
            return self.__dict__["_as_3d"]
        except KeyError:
            pass
        lead = 3 - self.n_spatial
        geometry = self.__dict__["_as_3d"] = MappingProxyType({
            "in_size": (1,) * lead + self.in_size,
            "out_size": (1,) * lead + self.out_size,
            "kernel": (1,) * lead + self.kernel,
            "stride": (1,) * lead + self.stride,
            "dilation": (1,) * lead + self.dilation,
            "pad_before": (0,) * lead + self.pad_before,
        })
        return geometry

    @property
    def key(self) -> str:
        """A string that names the problem exactly, for caches and reports."""
        return (
            f"conv{self.n_spatial}d|n{self.batch}|c{self.c_in}|k{self.c_out}|g{self.groups}"
            f"|in{_axes(self.in_size)}|w{_axes(self.kernel)}|s{_axes(self.stride)}"
            f"|d{_axes(self.dilation)}|p{_axes(self.pad_before)}-{_axes(self.pad_after)}"
            f"|{self.padding_mode}|{self.dtype}|{self.layout}|flip{int(self.flip)}"
            + ("|rank1" if self.rank1_kernel else "")
            + ("|accurate" if self.precision == "accurate" else "")
        )


def _axes(values):
    return "x".join(str(v) for v in values)
