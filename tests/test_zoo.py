"""The models on offer, as keras.applications has them: each one builds and trains a step at
32 px from scratch; its native side, input conversion and ImageNet file and address are
Keras' own (checked against the constants in Keras' application modules)."""

import numpy as np
import pytest

from trainer.config import IMAGENET_MODELS, MODELS, TrainConfig


def test_the_zoo_holds_at_least_twenty_keras_models_of_several_families():
    from trainer.zoo import family

    assert len(IMAGENET_MODELS) >= 20
    families = {family(m) for m in IMAGENET_MODELS}
    assert {"efficientnet", "efficientnet_v2", "convnext", "mobilenet_v3", "resnet_v2"} <= families
    assert {"densenet", "vgg16", "resnet"} <= families


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_builds_and_trains_a_step_at_32_px(model):
    import keras

    from trainer.models import build_model, make_loss

    config = TrainConfig(model=model, weights="none", image_size=32).resolved(8)
    net = build_model(config, 3)
    net.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=make_loss(config, [2, 1, 1]), run_eagerly=True
    )
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    head = net.trainable_weights[-1].numpy().copy()
    loss = float(net.train_on_batch(x, y))
    assert np.isfinite(loss) and not np.array_equal(net.trainable_weights[-1].numpy(), head)
    assert net.predict(x, verbose=0).shape == (4, 3)
    keras.backend.clear_session()


@pytest.mark.parametrize(
    "model, side",
    [
        ("efficientnet-b0", 224),
        ("efficientnet-b3", 300),
        ("efficientnet-b7", 600),
        ("efficientnetv2-s", 384),
        ("convnext-tiny", 224),
        ("mobilenetv3-small", 224),
    ],
)
def test_a_models_native_side_is_the_one_its_keras_code_defaults_to(model, side):
    """By hand, from Keras' documentation of each application's input size."""
    from trainer.zoo import native_side

    assert native_side(model) == side
    assert TrainConfig(model=model).size == side


def test_the_imagenet_files_and_addresses_are_the_ones_keras_fetches():
    """Against the constants of Keras' own modules: VGG16's and ResNet50's files live under
    tensorflow/keras-applications/<family>/, EfficientNet's under keras-applications/ (the
    hand-written table of 0.x had the first two wrong)."""
    from keras.src.applications import efficientnet, resnet, vgg16

    from trainer.zoo import imagenet_weights

    assert imagenet_weights("vgg16")["url"] == vgg16.WEIGHTS_PATH_NO_TOP
    r = imagenet_weights("resnet50")
    assert r["url"] == resnet.BASE_WEIGHTS_PATH + r["file"]
    assert r["file"] == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    b0 = imagenet_weights("efficientnet-b0")
    assert b0["url"] == efficientnet.BASE_WEIGHTS_PATH + "efficientnetb0_notop.h5"
    assert b0["path"].endswith("models/efficientnetb0_notop.h5")


@pytest.mark.parametrize("model", ["vgg16", "densenet121", "resnet50v2", "efficientnetv2-b0"])
def test_the_model_converts_uint8_as_its_familys_preprocess_input_does(model):
    import importlib

    import keras

    from trainer.models import ImageInput
    from trainer.zoo import family

    x = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3)).astype(np.uint8)
    module = importlib.import_module(f"keras.applications.{family(model)}")
    want = module.preprocess_input(x.astype(np.float32))
    got = keras.ops.convert_to_numpy(ImageInput(family(model))(x))
    assert np.allclose(got, want, atol=1e-4)
    if model == "vgg16":  # a run folder of 0.x names VGG16's conversion 'caffe'
        old = keras.ops.convert_to_numpy(ImageInput("caffe")(x))
        assert np.allclose(old, want, atol=1e-4)
