"""Build and compile one CNN of the spec's family from a complete `TrialConfig` (Keras 3 only).

The model takes raw images: rescaling (and resizing, if the spec asks) are its first layers, so a saved
model needs no preprocessing code beside it.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from .space import Augmentation, TrialConfig


def build_model(
    config: TrialConfig,
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    value_max: float = 255.0,
    image_size: tuple[int, int] | None = None,
) -> keras.Model:
    """The functional model for `config`; its parameter count equals `feasibility.count_params`."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / value_max, name="rescale")(inputs)
    if image_size is not None and tuple(image_size) != tuple(input_shape[:2]):
        x = layers.Resizing(*image_size, name="resize")(x)
    for layer in augmentation_layers(config.augment):
        x = layer(x)
    for block in range(config.blocks):
        for conv in range(config.convs_per_block[block]):
            name = f"block{block + 1}_conv{conv + 1}"
            kernel, strides = config.convolution(block, conv)
            x = layers.Conv2D(config.filters[block], kernel, strides=strides, padding=config.padding, use_bias=not config.batch_norm, name=name)(x)
            if config.batch_norm:
                x = layers.BatchNormalization(name=f"{name}_bn")(x)
            x = layers.Activation(config.activation, name=f"{name}_{config.activation}")(x)
        if config.pooling == "max":
            x = layers.MaxPooling2D(2, name=f"block{block + 1}_maxpool")(x)
        elif config.pooling == "average":
            x = layers.AveragePooling2D(2, name=f"block{block + 1}_avgpool")(x)
        if config.block_dropout[block] > 0:
            x = layers.Dropout(config.block_dropout[block], name=f"block{block + 1}_dropout")(x)
    x = layers.Flatten(name="flatten")(x) if config.head == "flatten" else layers.GlobalAveragePooling2D(name="global_average")(x)
    if config.head_dropout > 0:
        x = layers.Dropout(config.head_dropout, name="head_dropout")(x)
    for index in range(config.dense_layers):
        x = layers.Dense(config.dense_units, activation=config.activation, name=f"dense{index + 1}")(x)
        if config.head_dropout > 0:
            x = layers.Dropout(config.head_dropout, name=f"dense{index + 1}_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tuning_cnn")


def augmentation_layers(augment: Augmentation) -> list[keras.layers.Layer]:
    """Keras preprocessing layers that act in training only (identity at inference), on images in [0, 1]."""
    out: list[keras.layers.Layer] = []
    if augment.flip != "none":
        out.append(layers.RandomFlip(augment.flip, name="augment_flip"))
    if augment.rotation > 0:
        out.append(layers.RandomRotation(augment.rotation, name="augment_rotation"))
    if augment.zoom > 0:
        out.append(layers.RandomZoom(augment.zoom, name="augment_zoom"))
    if augment.translation > 0:
        out.append(layers.RandomTranslation(augment.translation, augment.translation, name="augment_translation"))
    if augment.contrast > 0:
        # A single number would only ever raise contrast: Keras clamps its lower bound, -c, to 0.
        amount = (augment.contrast, augment.contrast)
        out.append(layers.RandomContrast(amount, value_range=(0.0, 1.0), name="augment_contrast"))
    return out


def make_optimizer(config: TrialConfig) -> keras.optimizers.Optimizer:
    kinds: dict[str, Any] = {
        "adam": lambda: keras.optimizers.Adam(config.learning_rate),
        "adamw": lambda: keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay),
        "sgd": lambda: keras.optimizers.SGD(config.learning_rate, momentum=config.momentum or 0.0),
        "rmsprop": lambda: keras.optimizers.RMSprop(config.learning_rate, momentum=config.momentum or 0.0),
    }
    return kinds[config.optimizer]()


def compile_model(model: keras.Model, config: TrialConfig, jit_compile: bool | str = False, steps_per_execution: int = 1) -> keras.Model:
    """Compile with one-hot labels, so label smoothing works with every optimizer and backend.

    Under the `mixed_float16` policy Keras wraps the optimizer in a LossScaleOptimizer itself.
    """
    model.compile(
        optimizer=make_optimizer(config),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def prepare_for_training(model: keras.Model, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Create every variable before the first traced step: the optimizer's (so a checkpoint's moments and
    step count load too) and the compiled metrics'. TensorFlow traces a step function a second time when its
    first trace created variables, as Keras' lazily built metrics do: about 1 s per trial on 2 cores."""
    model.optimizer.build(model.trainable_variables)
    symbolic_build = getattr(model, "_symbolic_build", None)  # Keras' own pre-fit build (private; skipped if renamed)
    if symbolic_build is not None:
        symbolic_build(data_batch=(np.zeros((1, *input_shape), "float32"), np.zeros((1, num_classes), "float32")))
