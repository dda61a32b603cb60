"""Model zoo: the networks the papers prune, as functional tf_keras models.

Every builder returns a functional ``keras.Model`` with stable layer names (the
same names on every call), so policies and masks saved for one build apply to
another. ``build(name, input_shape, num_classes)`` is the one entry point;
``MODELS`` lists what it accepts.
"""
from tfautocompress._keras import keras

layers = keras.layers

def _conv_bn_relu(x, filters, name, kernel_size=3, strides=1, relu=True):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                      use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x

# VGG-16 for CIFAR as in the ADMM / AutoCompress CIFAR-10 tables: 13 CONV
# layers with BN and a single classifier layer (14.7 M CONV params).
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M")

def _vgg_features(x, cfg):
    """CONV-BN-ReLU stacks per ``cfg`` (channels, or "M" for a 2x2 max-pool)."""
    block, index = 1, 1
    for item in cfg:
        if item == "M":
            x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            block, index = block + 1, 1
        else:
            x = _conv_bn_relu(x, item, name=f"block{block}_{index}")
            index += 1
    return x


def vgg16_cifar(input_shape=(32, 32, 3), num_classes=10):
    """VGG-16 with BatchNorm for 32x32 inputs (AutoCompress Table 1)."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = _vgg_features(inputs, _VGG16_CFG)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="vgg16_cifar")

def digits_vgg(input_shape=(32, 32, 3), num_classes=10):
    """A small VGG-style net (6 CONV layers) for the offline digits data set."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = _vgg_features(inputs, (32, 32, "M", 64, 64, "M", 128, 128, "M"))
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="fc1")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="digits_vgg")

def _basic_block(x, filters, strides, name):
    """ResNet basic block (two 3x3 CONVs); projection shortcut when the shape changes."""
    shortcut = x
    y = _conv_bn_relu(x, filters, f"{name}_1", strides=strides)
    y = _conv_bn_relu(y, filters, f"{name}_2", relu=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn_relu(x, filters, f"{name}_shortcut", kernel_size=1,
                                 strides=strides, relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)

def _cifar_resnet(stage_filters, blocks_per_stage, input_shape, num_classes, name):
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv_bn_relu(inputs, stage_filters[0], "stem")
    for stage, (filters, blocks) in enumerate(zip(stage_filters, blocks_per_stage), 1):
        for block in range(1, blocks + 1):
            strides = 2 if (stage > 1 and block == 1) else 1
            x = _basic_block(x, filters, strides, f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)

def resnet18_cifar(input_shape=(32, 32, 3), num_classes=10):
    """ResNet-18 for CIFAR (3x3 stem, no max-pool; 11.2 M params)."""
    return _cifar_resnet((64, 128, 256, 512), (2, 2, 2, 2), input_shape, num_classes,
                         "resnet18_cifar")

def resnet20_cifar(input_shape=(32, 32, 3), num_classes=10):
    """ResNet-20 for CIFAR (He et al. 2016, 3 stages of 3 blocks, 16/32/64 filters;
    0.27 M params). Shortcuts as in :func:`resnet56_cifar` (1x1 projections)."""
    return _cifar_resnet((16, 32, 64), (3, 3, 3), input_shape, num_classes,
                         "resnet20_cifar")

def resnet56_cifar(input_shape=(32, 32, 3), num_classes=10):
    """ResNet-56 for CIFAR (He et al. 2016, 3 stages of 9 blocks, 16/32/64 filters).

    Down-sampling shortcuts are 1x1 projections (option B), so that every
    coupling is a real layer the channel graph can follow.
    """
    return _cifar_resnet((16, 32, 64), (9, 9, 9), input_shape, num_classes,
                         "resnet56_cifar")

def _bottleneck(x, width, strides, name):
    """ResNet-50 v1.5 bottleneck: 1x1 -> 3x3 (carries the stride) -> 1x1 (4x width)."""
    shortcut = x
    y = _conv_bn_relu(x, width, f"{name}_1", kernel_size=1)
    y = _conv_bn_relu(y, width, f"{name}_2", strides=strides)
    y = _conv_bn_relu(y, 4 * width, f"{name}_3", kernel_size=1, relu=False)
    if strides != 1 or x.shape[-1] != 4 * width:
        shortcut = _conv_bn_relu(x, 4 * width, f"{name}_shortcut", kernel_size=1,
                                 strides=strides, relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet50_v1_5(input_shape=(224, 224, 3), num_classes=1000):
    """ResNet-50 v1.5 (torchvision's, pruned in the AutoCompress ImageNet tables).

    It differs from ``tf_keras.applications.ResNet50`` (v1) only in putting each
    stage's stride in the 3x3 CONV: 4.1 G MACs instead of v1's 3.9 G.
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = _conv_bn_relu(inputs, 64, "stem", kernel_size=7, strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), 1):
        for block in range(1, blocks + 1):
            strides = 2 if (stage > 1 and block == 1) else 1
            x = _bottleneck(x, width, strides, f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet50_v1_5")


# (expansion t, output channels c, repeats n, stride s) of MobileNetV2; the
# CIFAR variant of the LcP paper sets the stem and blocks two and four to stride 1,
# so 32x32 inputs end in 8x8 maps.
_MBV2_CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_MBV2_CIFAR_STRIDE_ONE = (2, 4)  # 1-based block groups whose stride becomes 1

def _inverted_residual(x, expansion, filters, strides, name):
    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = layers.Conv2D(in_channels * expansion, 1, use_bias=False,
                          name=f"{name}_expand")(y)
        y = layers.BatchNormalization(name=f"{name}_expand_bn")(y)
        y = layers.ReLU(6.0, name=f"{name}_expand_relu")(y)
    y = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                               name=f"{name}_depthwise")(y)
    y = layers.BatchNormalization(name=f"{name}_depthwise_bn")(y)
    y = layers.ReLU(6.0, name=f"{name}_depthwise_relu")(y)
    y = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(y)
    y = layers.BatchNormalization(name=f"{name}_project_bn")(y)
    if strides == 1 and in_channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y

def mobilenetv2_cifar(input_shape=(32, 32, 3), num_classes=10):
    """MobileNetV2 adapted to 32x32 inputs as in the LcP paper (2.2 M params)."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for group, (t, c, n, s) in enumerate(_MBV2_CFG, 1):
        if group in _MBV2_CIFAR_STRIDE_ONE:
            s = 1
        for i in range(n):
            x = _inverted_residual(x, t, c, s if i == 0 else 1, f"block{group}_{i + 1}")
    x = layers.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="mobilenetv2_cifar")

def lenet5(input_shape=(32, 32, 1), num_classes=10):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling."""
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(6, 5, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="lenet5")

def _application(constructor, default_shape, bn_momentum=None, **options):
    """A builder of ``constructor`` (``options``: its fixed arguments, e.g. no input
    rescaling, since the zoo's data come in [0, 1]). ``bn_momentum``: the
    BatchNormalization momentum to train with (0.999, the phone nets' ImageNet
    setting, leaves the moving statistics near their start after a few thousand
    steps on a small data set, and the model scores at chance in inference)."""
    def build_application(input_shape=default_shape, num_classes=1000, weights=None):
        if weights is not None and num_classes != 1000:
            raise ValueError(
                f"{constructor.__name__}: pretrained weights={weights!r} need "
                f"num_classes=1000, got {num_classes}; pass weights=None to train "
                "from scratch with another number of classes."
            )
        model = constructor(weights=weights, input_shape=tuple(input_shape),
                            classes=num_classes, **options)
        for layer in model.layers:
            if bn_momentum is not None and isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum
        return model
    build_application.__name__ = constructor.__name__.lower()
    build_application.__doc__ = (
        f"`tf_keras.applications.{constructor.__name__}` (weights optional, default None)."
    )
    return build_application

MODELS = {
    "digits_vgg": digits_vgg,
    "lenet5": lenet5,
    "vgg16_cifar": vgg16_cifar,
    "resnet18_cifar": resnet18_cifar,
    "resnet20_cifar": resnet20_cifar,
    "resnet56_cifar": resnet56_cifar,
    "mobilenetv2_cifar": mobilenetv2_cifar,
    "resnet50_v1_5": resnet50_v1_5,
    "vgg16": _application(keras.applications.VGG16, (224, 224, 3)),
    "resnet50": _application(keras.applications.ResNet50, (224, 224, 3)),
    "mobilenetv2": _application(keras.applications.MobileNetV2, (224, 224, 3)),
    "mobilenetv3small": _application(keras.applications.MobileNetV3Small, (224, 224, 3),
                                     bn_momentum=0.9, include_preprocessing=False),
    "efficientnetb0": _application(keras.applications.EfficientNetB0, (224, 224, 3),
                                   bn_momentum=0.9),
}

def build(name, input_shape=None, num_classes=None, **kwargs):
    """Build zoo model ``name``; ``input_shape``/``num_classes`` default to the model's own."""
    if name not in MODELS:
        raise ValueError(
            f"unknown model {name!r}; the zoo has: {', '.join(sorted(MODELS))}. "
            "A saved model is given by its file path instead."
        )
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return MODELS[name](**kwargs)
