"""lowering: ColumnSparseConv2D computes the masked Conv2D from its kept rows, in every form."""
import numpy as np
import pytest

from tfautocompress import lowering
from tfautocompress._keras import keras

L = keras.layers


LOWERED_CONVS = [dict(kernel_size=3, padding="same"), dict(kernel_size=3, padding="valid"),
                 dict(kernel_size=3, strides=2, padding="same"),
                 dict(kernel_size=(3, 2), strides=(2, 1), padding="valid"),
                 dict(kernel_size=3, dilation_rate=2, padding="same"),
                 dict(kernel_size=1, padding="valid"), dict(kernel_size=5, strides=3,
                                                            padding="same")]


@pytest.mark.parametrize("form", lowering.FORMS)
@pytest.mark.parametrize("conv", LOWERED_CONVS, ids=[str(c) for c in LOWERED_CONVS])
def test_column_sparse_conv_computes_the_masked_conv(conv, form):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 9, 8, 6)).astype(np.float32)
    dense = L.Conv2D(7, activation="relu", name="c", **conv)
    dense(x)
    kernel, bias = dense.get_weights()
    mask = np.ones(kernel.shape, np.float32)
    mask[rng.random(kernel.shape[:-1]) < 0.6] = 0
    mask.reshape(-1, 7)[0] = 1  # one position keeps every channel: no gather there
    if kernel.shape[0] > 1:
        mask[1] = 0  # a kernel row without kept entries: that position vanishes
    dense.set_weights([kernel * mask, bias])
    rows = lowering.kept_rows(mask)
    low = lowering.ColumnSparseConv2D.from_conv(dense.get_config(), rows, form)
    low(x)
    low.set_weights(low.conv_weights([kernel * mask, bias]))
    assert low.kernel.shape == (rows.size, 7)
    np.testing.assert_allclose(low(x).numpy(), dense(x).numpy(), atol=1e-5)
    again = lowering.ColumnSparseConv2D.from_config(low.get_config())
    again(x)
    again.set_weights(low.get_weights())
    np.testing.assert_array_equal(again(x).numpy(), low(x).numpy())


def test_bad_rows_and_forms_are_errors():
    with pytest.raises(ValueError, match="rows must be"):
        lowering.ColumnSparseConv2D(4, 3, rows=[3, 1])
    with pytest.raises(ValueError, match="form='im2col'.*rows, slices"):
        lowering.ColumnSparseConv2D(4, 3, rows=[1], form="im2col")
    with pytest.raises(ValueError, match="row 27 is out of range for a 3x3x3 kernel"):
        lowering.ColumnSparseConv2D(4, 3, rows=[27])(np.zeros((1, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="columns='keep'; accepted: 'auto', 'lower'"):
        lowering.decide([], "keep")


def test_lowerable_takes_only_column_sparse_plain_conv2d():
    conv, depthwise = L.Conv2D(4, 3), L.DepthwiseConv2D(3)
    inputs = keras.Input((6, 6, 2))
    keras.Model(inputs, [conv(inputs), depthwise(inputs)])
    mask = np.ones((3, 3, 2, 4), np.float32)
    assert lowering.lowerable(conv, mask) is None  # nothing pruned
    mask[0, 0, 1] = 0
    np.testing.assert_array_equal(lowering.lowerable(conv, mask), np.delete(np.arange(18), 1))
    assert lowering.lowerable(conv, np.zeros_like(mask)) is None  # nothing kept
    assert lowering.lowerable(depthwise, np.ones((3, 3, 2, 1), np.float32)) is None



def test_lowered_convs_through_tflite_match_the_masked_keras_model():
    """A stride-2 and a dilated column-sparse Conv2D, lowered in each form, converted to
    a .tflite and run by LiteRT's interpreter, compute the Keras model of the masked
    Conv2Ds."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(7)
    convs = [L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="stride2"),
             L.Conv2D(5, 3, dilation_rate=2, padding="valid", name="dilated")]
    inputs = keras.Input((13, 12, 4), name="input")
    reference = keras.Model(inputs, convs[1](convs[0](inputs)))
    for conv in convs:
        kernel, bias = conv.get_weights()
        mask = (rng.random(kernel.shape[:-1]) < 0.4)[..., None] * np.ones(kernel.shape[-1])
        mask[0, 0] = 1  # a position with every channel kept, one with none
        mask[2, 1] = 0
        conv.set_weights([kernel * mask, bias + 0.1])
    x = rng.normal(size=(3, 13, 12, 4)).astype(np.float32)
    expected = reference(x).numpy()
    assert expected.shape == (3, 3, 2, 5)
    for form in lowering.FORMS:
        lowered = [lowering.ColumnSparseConv2D.from_conv(
            c.get_config(), lowering.kept_rows(c.get_weights()[0] != 0), form) for c in convs]
        model = keras.Model(inputs, lowered[1](lowered[0](inputs)))
        for low, conv in zip(lowered, convs):
            low.set_weights(low.conv_weights(conv.get_weights()))
        interpreter = Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(
            model).convert())
        (detail,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(detail["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        np.testing.assert_allclose(interpreter.get_tensor(out["index"]), expected, atol=1e-5,
                                   err_msg=form)


def test_a_saved_lowered_model_loads_in_a_fresh_interpreter(tmp_path):
    """``final/compact.keras`` holds ColumnSparseConv2D layers: ``artifacts.load_model``
    (what every console script reads a model with) must know them without the caller
    importing ``lowering`` first."""
    import os
    import subprocess
    import sys

    rows = lowering.kept_rows(np.ones((3, 3, 2, 4), np.float32))
    inputs = keras.Input((6, 6, 2))
    conv = L.Conv2D(4, 3, padding="same", name="c").get_config()
    model = keras.Model(inputs, lowering.ColumnSparseConv2D.from_conv(conv, rows, "rows")(inputs))
    path = tmp_path / "lowered.keras"
    model.save(path)
    x = np.random.default_rng(0).normal(size=(1, 6, 6, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model(x).numpy())
    code = ("import numpy as np, sys; from tfautocompress import artifacts; "
            "m = artifacts.load_model(sys.argv[1]); "
            "np.testing.assert_allclose(m(np.load(sys.argv[2])).numpy(), np.load(sys.argv[3]))")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stderr[-2000:]
