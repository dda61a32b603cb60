"""ADMM structured pruning of your own tf_keras model with plain ``model.fit``.

    python examples/admm_model_fit.py --output /tmp/pruned.keras

1. train your model; 2. ``fit`` with the ``ADMM`` callback; 3. hard prune;
4. masked retraining with ``fit``; 5. ``strip`` and save a plain model.
"""
from absl import app, flags

from tfautocompress import artifacts, data, keras
from tfautocompress.callbacks import masked_retraining
from tfautocompress.callbacks.admm import ADMM
from tfautocompress.schemes import Combined, Filter

flags.DEFINE_integer("epochs", 10, "Epochs of ordinary training.")
flags.DEFINE_integer("admm_epochs", 5, "Epochs of training with the ADMM callback.")
flags.DEFINE_integer("retrain_epochs", 5, "Epochs of masked retraining.")
flags.DEFINE_string("output", "pruned_model.keras", "Where the pruned model is saved.")
FLAGS = flags.FLAGS


def my_model(input_shape, num_classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def compile_model(model):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    splits = data.load("digits", batch_size=32)
    model = my_model(splits.input_shape, splits.num_classes)
    compile_model(model)
    model.fit(splits.train, epochs=FLAGS.epochs, verbose=2)

    # Half the filters of conv1; half the filters and a quarter of the columns of conv2.
    admm = ADMM({"conv1": Filter(0.5), "conv2": Combined(0.5, 0.25)})
    model.fit(splits.train, epochs=FLAGS.admm_epochs, callbacks=[admm], verbose=2)
    masks = admm.hard_prune()

    pruned = masked_retraining.wrap(model, masks)
    compile_model(pruned)
    pruned.fit(splits.train, epochs=FLAGS.retrain_epochs,
               callbacks=masked_retraining.callbacks(), verbose=2)
    final = masked_retraining.strip(pruned)
    compile_model(final)
    _, acc = final.evaluate(splits.test, verbose=0)
    artifacts.save_model(final, FLAGS.output)
    print(f"RESULT test_accuracy={acc:.4f} output={FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
