"""Keras 3 <-> tf_keras model conversion; the one module that imports Keras 3.

TensorFlow 2.16+ gives Keras 3 as ``keras``; TF-MOT, and so tfautocompress, runs on
tf_keras (Keras 2). ``to_tf_keras(model)`` rebuilds a Keras 3 Sequential/functional
model (nested models and shared layers included) as a tf_keras functional model
with the same layer names, configs and weights; ``to_keras3(model)`` does the
reverse for a tf_keras model (what ``compact`` and the pipeline produce). Both walk
the source's layer graph node by node, build each layer once with the other
library's class ``from_config`` on a translated config, call it as the source node
did, and copy the weights (the same arrays in the same order in both libraries;
checked by weight name for every layer).

Config translation (measured with keras 3.15 / tf_keras 2.21):

* ``dtype``: a Keras 3 ``DTypePolicy`` (or tf_keras ``Policy``) dict becomes its
  name (``"float32"``, ``"mixed_float16"``), which both libraries take.
* ``InputLayer`` is rebuilt as ``Input(batch_shape=..., dtype=..., name=...)``
  (Keras 3 configs say ``batch_shape``, tf_keras ones ``batch_input_shape``);
  sparse and ragged inputs are refused. A ``batch_input_shape`` in another layer's
  config (tf_keras writes one for a Sequential's first layer) is dropped: the
  graph's inputs carry the shape.
* renamed keys: ``LeakyReLU``'s ``negative_slope`` (Keras 3) is ``alpha`` (tf_keras).
* a key the other library's class does not take (Keras 3: ``Dense``'s
  ``quantization_config``, the initializers' ``input_axes``/``output_axes``;
  tf_keras: ``DepthwiseConv2D``'s ``groups``, ``SeparableConv2D``'s unused
  ``kernel_*``) is dropped when the source class, rebuilt without it, gives it the
  same value (nothing is lost); any other value raises a ValueError naming it.
* serialized initializers, regularizers and constraints (``{"module":
  "keras.initializers", "class_name": ..., "config": ...}``, the same form in
  both) keep their form, their configs under the same key rule against the other
  library's class of that name; custom (registered) objects are refused.
* call arguments: Keras 3 records ``training`` in a node (Dropout's default False)
  and lets the model's call override it, while tf_keras would keep a recorded one,
  so ``training`` is not carried over from Keras 3 nodes; a tf_keras node's explicit
  ``training=`` is carried to Keras 3 (which then lets ``fit`` override it).
* an activation given by name must compute the same function in both libraries
  (compared on [-6, 6]): ``hard_sigmoid`` does not (Keras 3: relu6(x + 3) / 6,
  tf_keras: clip(0.2 x + 0.5)) and is refused, as are names one library lacks.

``LAYERS`` (class name -> ``Converter``) is the table of layer classes that
convert; any other layer (a custom layer, a ``keras.ops`` call in a Keras 3 graph,
a TF-MOT wrapper) raises one ValueError naming it, its class and the table.
``register(keras3_class, tf_keras_class)`` adds a pair (its Keras 3 class must be
``keras.saving.register_keras_serializable`` for ``keras.models.load_model``).
"""
import dataclasses
import functools
import inspect

import keras
import numpy as np
import tensorflow as tf
from keras.src.models.functional import Functional

from tfautocompress import graph as graph_lib
from tfautocompress.artifacts import first_line
from tfautocompress._keras import check_model, keras as tf_keras

__all__ = ["Converter", "LAYERS", "register", "to_tf_keras", "to_keras3", "load_model"]


@dataclasses.dataclass(frozen=True)
class Converter:
    """One layer class in both libraries. ``renames``: ``(keras3 key, tf_keras key)``
    pairs of config keys that differ only by name; ``weight_names``: the same for
    weight names (the weights themselves are the same arrays in the same order);
    ``to_keras3`` / ``to_tf_keras``: None or ``(config, source layer) -> config``,
    run on a config after the module's rules."""

    keras3: type
    tf_keras: type
    renames: tuple = ()
    weight_names: tuple = ()
    to_keras3: object = None
    to_tf_keras: object = None


def _single_axis(config, layer):
    """tf_keras stores a built BatchNormalization's axis as a list of positive axes
    (``[3]`` for -1 of a 4-D input); Keras 3 takes one int (counted from the end, as
    Keras 3 writes it)."""
    axis = config["axis"]
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise ValueError(f"axis={list(axis)}: Keras 3 normalizes over one axis only")
        axis = int(axis[0])
        rank = layer.input_spec.ndim if layer.input_spec is not None else None
        config = dict(config, axis=axis - rank if rank and axis >= 0 else axis)
    return config


_STANDARD = (
    "Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
    "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
    "SeparableConv2D", "BatchNormalization", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Activation", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianDropout", "GaussianNoise", "AlphaDropout", "ActivityRegularization",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
    "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Flatten",
    "Reshape", "Permute", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
    "Concatenate", "Rescaling", "Normalization")
_DEPTHWISE = {"weight_names": (("kernel", "depthwise_kernel"),)}
_SPECIAL = {"LeakyReLU": {"renames": (("negative_slope", "alpha"),)},
            "BatchNormalization": {"to_keras3": _single_axis},
            "DepthwiseConv1D": _DEPTHWISE, "DepthwiseConv2D": _DEPTHWISE}
LAYERS = {name: Converter(getattr(keras.layers, name), getattr(tf_keras.layers, name),
                          **_SPECIAL.get(name, {})) for name in _STANDARD}

_POLICIES = ("DTypePolicy", "FloatDTypePolicy", "Policy")
_NAMESPACES = {  # a serialized object's "module" -> (Keras 3 namespace, tf_keras namespace)
    f"keras.{name}": (getattr(keras, name), getattr(tf_keras, name))
    for name in ("initializers", "regularizers", "constraints")}
_DROPPED = ("batch_input_shape", "batch_shape")  # layer configs: the Inputs hold the shape
_MISSING = object()


def register(keras3_class, tf_keras_class, renames=(), weight_names=(), to_keras3=None,
             to_tf_keras=None):
    """Convert layers of ``keras3_class`` to ``tf_keras_class`` and back (configs by
    the module's rules, then ``renames`` and the hooks of ``Converter``; weights
    copied in order, their names checked through ``weight_names``).

    Returns the converter registered before under ``tf_keras_class``'s name, or None.
    A tfautocompress layer (e.g. a lowered CONV of ``compact``) gets its Keras 3 twin
    here, in the one module that imports Keras 3, decorated with
    ``keras.saving.register_keras_serializable("tfautocompress")`` so that
    ``keras.models.load_model`` finds it, and one line: ``register(Twin, Layer)``.
    """
    for cls, base, library in ((keras3_class, keras.layers.Layer, "Keras 3"),
                               (tf_keras_class, tf_keras.layers.Layer, "tf_keras")):
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"register: {cls!r} is not a {library} Layer subclass.")
    name = tf_keras_class.__name__
    previous = LAYERS.get(name)
    LAYERS[name] = Converter(keras3_class, tf_keras_class, tuple(map(tuple, renames)),
                             tuple(map(tuple, weight_names)), to_keras3, to_tf_keras)
    return previous


def load_model(path):
    """A ``.keras`` file saved by Keras 3, loaded with Keras 3 (not compiled)."""
    return keras.models.load_model(path, compile=False)


def to_tf_keras(model, what="model"):
    """``model`` (a built Keras 3 Sequential/functional model) as a tf_keras
    functional model: same layer names, translated configs, same weights."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{what} must be a Keras 3 model, got {type(model).__name__}.")
    if not _is_graph(model, keras3=True):
        raise TypeError(
            f"{what} {model.name!r} is a subclassed Keras 3 model ({type(model).__name__}); "
            "conversion rebuilds the layer graph, so build it as a functional model "
            "(`keras.Model(inputs, outputs)`) or a `keras.Sequential`.")
    if isinstance(model, keras.Sequential) and getattr(model, "_functional", None) is None:
        raise ValueError(f"{what} {model.name!r} is not built: give it an input shape "
                         "(`keras.Input(shape=...)` as the first layer) before converting.")
    return _Rebuild(to_keras3=False, what=what).model(model)


def to_keras3(model, what="model"):
    """``model`` (a tf_keras Sequential/functional model) as a Keras 3 functional
    model: same layer names, translated configs, same weights."""
    check_model(model, what)
    return _Rebuild(to_keras3=True, what=what).model(model)


def _is_graph(layer, keras3):
    if keras3:
        return isinstance(layer, (keras.Sequential, Functional))
    return graph_lib.is_graph_model(layer)


class _Rebuild:
    """One conversion: Keras 3 -> tf_keras (``to_keras3=False``) or back."""

    def __init__(self, to_keras3, what):
        self.to_keras3, self.what = to_keras3, what
        self.target = keras if to_keras3 else tf_keras
        self.library = "Keras 3" if to_keras3 else "tf_keras"
        self.new = {}  # id(source layer or model) -> its counterpart

    def model(self, model):
        graph = model if self.to_keras3 or not isinstance(model, keras.Sequential) \
            else model._functional  # noqa: SLF001 - a Keras 3 Sequential's layer graph
        inputs = [self._input(t) for t in graph.inputs]
        outputs = graph_lib.walk(graph, inputs, self._visit, node_inputs=(
            (lambda node: node.keras_inputs) if self.to_keras3 else
            (lambda node: node.input_tensors)))
        return self.target.Model(tf.nest.pack_sequence_as(graph.input, inputs),
                                 tf.nest.pack_sequence_as(graph.output, outputs),
                                 name=model.name)

    def _input(self, tensor):
        layer = tensor._keras_history[0]  # noqa: SLF001 - the InputLayer of the tensor
        config = layer.get_config()
        if config.get("sparse") or config.get("ragged"):
            raise ValueError(f"{self.what}: input {layer.name!r} is sparse or ragged; only "
                             "dense inputs convert between Keras 3 and tf_keras.")
        return self.target.Input(batch_shape=tuple(tensor.shape),
                                 dtype=tf.as_dtype(tensor.dtype).name, name=layer.name)

    def _visit(self, node, value_of):
        if self.to_keras3:
            layer, args, kwargs = node.layer, node.call_args, node.call_kwargs
        else:  # Keras 3 records the default ``training=False`` of e.g. Dropout, and a
            # model's call overrides it; in tf_keras a recorded value would win
            layer, args = node.operation, node.arguments.args
            kwargs = {k: v for k, v in node.arguments.kwargs.items() if k != "training"}
        new = self.new.get(id(layer))
        first = new is None
        graph = _is_graph(layer, keras3=not self.to_keras3)
        if first:
            new = self.model(layer) if graph else self._layer(layer)
            self.new[id(layer)] = new
        args, kwargs = tf.nest.map_structure(value_of, (tuple(args), dict(kwargs)))
        # None is every call argument's default (Keras 3 records mask=None for models)
        outputs = new(*args, **{k: v for k, v in kwargs.items() if v is not None})
        if first and not graph:
            self._copy_weights(layer, new, self._converter(layer))
        return tf.nest.flatten(outputs)

    def _converter(self, layer):
        return next((c for c in LAYERS.values()
                     if type(layer) is (c.tf_keras if self.to_keras3 else c.keras3)), None)

    def _layer(self, layer):
        converter = self._converter(layer)
        if converter is None:
            cls = type(layer)
            raise ValueError(
                f"{self.what}: layer {layer.name!r} ({cls.__module__}.{cls.__name__}) has no "
                f"{self.library} counterpart; converted are InputLayer, Sequential and "
                f"functional models and {', '.join(sorted(LAYERS))} (add a pair with "
                "tfautocompress.keras3.register).")
        source, target = ((converter.tf_keras, converter.keras3) if self.to_keras3
                          else (converter.keras3, converter.tf_keras))
        renames = self._oriented(converter.renames)
        where = f"{self.what}: layer {layer.name!r} ({source.__name__})"
        config = {k: v for k, v in layer.get_config().items() if k not in _DROPPED}
        config = self._translate(config, source, target, renames, where)
        hook = converter.to_keras3 if self.to_keras3 else converter.to_tf_keras
        try:
            return target.from_config(hook(config, layer) if hook else config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {self.library} cannot build it from the translated "
                             f"config ({type(err).__name__}: {first_line(err)}).") from err

    def _translate(self, config, source, target, renames, where):
        """``config`` of a ``source`` object as a config of ``target`` (module doc)."""
        accepted = _parameters(target)
        dropped = [key for key in config if renames.get(key, key) not in accepted]
        if dropped:
            rebuilt = source.from_config(
                {k: v for k, v in config.items() if k not in dropped}).get_config()
            lost = {k: config[k] for k in dropped if rebuilt.get(k, _MISSING) != config[k]}
            if lost:
                raise ValueError(f"{where}: {lost} cannot be expressed in {self.library} "
                                 f"({target.__name__} takes no such argument); only default "
                                 "values of these keys convert.")
        translated = {}
        for key, value in config.items():
            if key in dropped:
                continue
            if key == "activation" and isinstance(value, str) and not _same_activation(value):
                raise ValueError(f"{where}: activation {value!r} is not the same function in "
                                 "Keras 3 and tf_keras (or one lacks it); use another or a "
                                 "layer both have.")
            translated[renames.get(key, key)] = self._value(value, f"{where} {key}")
        return translated

    def _value(self, value, where):
        if isinstance(value, dict) and "class_name" in value and "config" in value:
            return self._object(value, where)
        if isinstance(value, dict):
            return {k: self._value(v, where) for k, v in value.items()}
        if isinstance(value, list):  # tf_keras configs may hold trackable ListWrappers
            return [self._value(v, where) for v in value]
        if isinstance(value, tuple):
            return tuple(self._value(v, where) for v in value)
        return value

    def _object(self, value, where):
        """A serialized dtype policy, initializer, regularizer or constraint."""
        name, module = value["class_name"], value.get("module")
        if name in _POLICIES:
            return value["config"]["name"]
        namespaces = _NAMESPACES.get(module, (None, None))
        if self.to_keras3:
            namespaces = namespaces[::-1]
        source, target = (getattr(n, name, None) for n in namespaces)
        if source is None or target is None or value.get("registered_name") not in (None, name):
            raise ValueError(f"{where}: {module}.{name} does not convert; the built-in "
                             "initializers, regularizers and constraints do.")
        return dict(value, config=self._translate(value["config"], source, target, {},
                                                  f"{where} ({name})"))

    def _oriented(self, pairs):
        """``(keras3 name, tf_keras name)`` pairs as ``{source name: target name}``."""
        return dict((b, a) if self.to_keras3 else (a, b) for a, b in pairs)

    def _copy_weights(self, source, target, converter):
        renames = self._oriented(converter.weight_names)
        names = [renames.get(n, n) for n in map(_short_name, source.weights)]
        if names != [_short_name(w) for w in target.weights]:
            raise ValueError(
                f"{self.what}: layer {source.name!r} ({type(source).__name__}) has weights "
                f"{names}, its {self.library} counterpart "
                f"{[_short_name(w) for w in target.weights]}; a Converter for this class "
                "needs the same weights in the same order.")
        target.set_weights(source.get_weights())


def _short_name(variable):
    """``kernel`` of Keras 3's ``kernel`` and tf_keras' ``conv/kernel:0``."""
    return variable.name.rsplit("/", 1)[-1].split(":")[0]


@functools.lru_cache(maxsize=None)
def _parameters(cls):
    """The keyword arguments ``cls(...)`` takes: those of its ``__init__`` and of its
    bases' while each passes ``**kwargs`` on."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return frozenset(names - {"self"})


@functools.lru_cache(maxsize=None)
def _same_activation(name):
    x = tf.constant(np.linspace(-6.0, 6.0, 49, dtype=np.float32)[None])
    try:
        ours, theirs = keras.activations.get(name)(x), tf_keras.activations.get(name)(x)
    except (TypeError, ValueError):
        return False
    return bool(np.allclose(np.asarray(ours), np.asarray(theirs), atol=1e-6))

