"""The U-Net the shipped models use (Keras 3): built for training and for a bfloat16 copy at inference.

Kept apart from :mod:`cellscale.segment.model` so that reading a ``model.json`` never needs a network library.
"""

from __future__ import annotations

from cellscale.segment.model import ModelSpec


def build_unet(spec: ModelSpec):
    """A compact U-Net with one 4-channel head group per compartment.

    Returns an uncompiled ``keras.Model`` mapping (B, H, W, len(inputs)) float32
    to (B, H, W, 4 * len(compartments)).
    """
    import keras
    from keras import layers

    def block(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.Activation("relu")(x)

    inp = keras.Input((None, None, len(spec.inputs)), name="image")
    skips, x = [], inp
    for level in range(spec.depth):
        x = block(x, spec.base_filters * 2**level)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = block(x, spec.base_filters * 2**spec.depth)
    for level in reversed(range(spec.depth)):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.Concatenate()([x, skips[level]])
        x = block(x, spec.base_filters * 2**level)
    heads = []
    for comp in spec.compartments:
        h = layers.Conv2D(spec.base_filters, 3, padding="same", activation="relu", name=f"{comp}_neck")(x)
        dist = layers.Conv2D(1, 1, activation="sigmoid", name=f"{comp}_distance")(h)
        cls = layers.Conv2D(3, 1, activation="softmax", name=f"{comp}_classes")(h)
        heads += [dist, cls]
    out = layers.Concatenate(name="maps", dtype="float32")(heads)
    return keras.Model(inp, out, name=spec.name)
