"""The distinct convolution layers of well-known networks, for tuning and benchmarks.

Each layer is a :class:`Layer`: a name, the input and weight shapes (batch 1, channels-first)
and the convolution keywords. Only distinct geometries are listed: a network's repeated blocks
appear once.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True, repr=False)
class Layer:
    """One convolution layer: ``conv{n}d(x of x_shape, weight of w_shape, **kwargs)``."""

    name: str
    x_shape: tuple
    w_shape: tuple
    kwargs: dict = field(default_factory=dict)

    @property
    def n_spatial(self):
        return len(self.w_shape) - 2

    def __repr__(self):
        # Short, because benchmark reports group and label by it.
        return f"{self.name} x{list(self.x_shape)} w{list(self.w_shape)}"


def _conv2d(name, c_in, c_out, kernel, size, stride=1, groups=1, dilation=1, padding=None):
    if padding is None:
        padding = dilation * (kernel - 1) // 2
    kwargs = {"stride": stride, "padding": padding}
    if groups != 1:
        kwargs["groups"] = groups
    if dilation != 1:
        kwargs["dilation"] = dilation
    return Layer(name, (1, c_in, size, size), (c_out, c_in // groups, kernel, kernel), kwargs)


def _resnet50():
    layers = [_conv2d("conv1", 3, 64, 7, 224, stride=2)]
    c_in, size = 64, 56
    for stage, (width, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        out_size = size // stride
        layers += [
            _conv2d(f"layer{stage}.0.conv1", c_in, width, 1, size),
            _conv2d(f"layer{stage}.0.conv2", width, width, 3, size, stride=stride),
            _conv2d(f"layer{stage}.0.conv3", width, 4 * width, 1, out_size),
            _conv2d(f"layer{stage}.0.downsample", c_in, 4 * width, 1, size, stride=stride),
            _conv2d(f"layer{stage}.1.conv1", 4 * width, width, 1, out_size),
        ]
        if stride != 1:
            layers.append(_conv2d(f"layer{stage}.1.conv2", width, width, 3, out_size))
        c_in, size = 4 * width, out_size
    return layers


def _vgg16():
    layers, c_in = [], 3
    for size, widths in ((224, (64, 64)), (112, (128, 128)), (56, (256, 256)),
                         (28, (512, 512)), (14, (512,))):
        for width in widths:
            layers.append(_conv2d(f"conv{len(layers) + 1}_{c_in}x{size}", c_in, width, 3, size))
            c_in = width
    return layers


def _mobilenet_v2():
    layers = [_conv2d("conv_stem", 3, 32, 3, 224, stride=2),
              _conv2d("block0.dw", 32, 32, 3, 112, groups=32),
              _conv2d("block0.project", 32, 16, 1, 112)]
    c_in, size = 16, 112
    # (expansion, c_out, stride) of the first block of each stage, then one repeat if any.
    for index, (c_out, stride, repeats) in enumerate(
        ((24, 2, 2), (32, 2, 3), (64, 2, 4), (96, 1, 3), (160, 2, 3), (320, 1, 1)), start=1
    ):
        for repeat in range(min(repeats, 2)):
            hidden = 6 * c_in
            step = stride if repeat == 0 else 1
            layers += [
                _conv2d(f"stage{index}.{repeat}.expand", c_in, hidden, 1, size),
                _conv2d(f"stage{index}.{repeat}.dw", hidden, hidden, 3, size, stride=step,
                        groups=hidden),
                _conv2d(f"stage{index}.{repeat}.project", hidden, c_out, 1, size // step),
            ]
            c_in, size = c_out, size // step
    layers.append(_conv2d("conv_head", 320, 1280, 1, 7))
    return layers


def _resnext50():
    layers = []
    c_in, size = 64, 56
    for stage, (width, stride) in enumerate(((128, 1), (256, 2), (512, 2), (1024, 2)), start=1):
        layers += [
            _conv2d(f"layer{stage}.conv1", c_in, width, 1, size),
            _conv2d(f"layer{stage}.conv2_g32", width, width, 3, size, stride=stride, groups=32),
        ]
        if stride != 1:
            layers.append(_conv2d(f"layer{stage}.1.conv2_g32", width, width, 3, size // stride,
                                  groups=32))
        c_in, size = 2 * width, size // stride
    return layers


def _deeplab():
    return [
        _conv2d("layer3.conv2_d2", 256, 256, 3, 28, dilation=2),
        _conv2d("layer4.conv2_d4", 512, 512, 3, 28, dilation=4),
        _conv2d("aspp_d6", 512, 256, 3, 28, dilation=6),
        _conv2d("aspp_d12", 512, 256, 3, 28, dilation=12),
        _conv2d("aspp_d18", 512, 256, 3, 28, dilation=18),
    ]


def _tcn():
    # Causal dilated convolutions (WaveNet/TCN): all padding before, none after.
    return [Layer(f"tcn_d{d}", (1, 64, 4096), (64, 64, 3),
                  {"dilation": d, "padding": ((2 * d, 0),)}) for d in (1, 2, 4, 8, 16)]


def _depthwise_conv1d():
    return [Layer(f"dw1d_k{k}", (1, 256, 4096), (256, 1, k), {"groups": 256, "padding": "same"})
            for k in (31, 63)]


def _c3d():
    # C3D (Tran et al., 2015) at a 56x56 input, half its usual size, to keep benchmarks short.
    def conv3d(name, c_in, c_out, depth, size):
        return Layer(name, (1, c_in, depth, size, size), (c_out, c_in, 3, 3, 3), {"padding": 1})
    return [conv3d("conv1a", 3, 64, 16, 56), conv3d("conv2a", 64, 128, 16, 28),
            conv3d("conv3a", 128, 256, 8, 14), conv3d("conv3b", 256, 256, 8, 14),
            conv3d("conv4a", 256, 512, 4, 7)]


MODELS = {
    "resnet50": _resnet50,
    "vgg16": _vgg16,
    "mobilenet_v2": _mobilenet_v2,
    "resnext50": _resnext50,
    "deeplab": _deeplab,
    "tcn": _tcn,
    "depthwise_conv1d": _depthwise_conv1d,
    "c3d": _c3d,
}


def model_layers(name, batch=1):
    """The distinct convolution layers of network ``name`` (a key of :data:`MODELS`).

    Parameters
    ----------
    name : str
    batch : int
        Samples per call; the layer tables are written for batch 1.

    Returns
    -------
    list of Layer
    """
    try:
        layers = MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return [Layer(layer.name, (batch,) + layer.x_shape[1:], layer.w_shape, layer.kwargs)
            for layer in layers]
