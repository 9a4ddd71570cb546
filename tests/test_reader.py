"""The reader decodes at the scale the model needs, and the cache decides by the memory there."""

import numpy as np
import pytest
from helpers import textured, write_image
from PIL import Image

from balancer.common.imageio import jpeg_scale, load
from balancer.common.opencv import cv2
from balancer.common.square import model_input, to_square


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Texture at every scale (a bare gradient would hide aliasing)."""
    rng = np.random.default_rng(seed)
    base = textured(h, w, seed=seed).astype(np.float32)
    fine = cv2.resize(rng.random((h // 4, w // 4, 3), dtype=np.float32), (w, h)) * 60
    return np.clip(base * 0.7 + fine, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "w, h, side, k",
    [(4000, 3000, 224, 8), (1200, 900, 224, 4), (600, 450, 224, 2), (440, 330, 224, 1)],
)
def test_the_largest_dct_scale_that_keeps_both_sides(w, h, side, k):
    assert jpeg_scale(w, h, side) == k
    assert -(-min(w, h) // k) >= side


def test_a_large_jpeg_is_decoded_small_and_upright_and_close_to_the_full_decode(tmp_path):
    image = photo(900, 1200)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert load(path, at_least=224).image.shape == (225, 300, 3)  # a quarter of each side
    assert load(path).image.shape == (900, 1200, 3)  # whole, when nobody asked for less
    ours = model_input(path, 224)
    full = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    bare = cv2.resize(full, (224, 224), interpolation=cv2.INTER_AREA)
    assert np.abs(ours.astype(int) - bare.astype(int)).mean() <= 4
    linear = cv2.resize(full, (224, 224), interpolation=cv2.INTER_LINEAR)
    assert (
        np.abs(ours.astype(int) - bare.astype(int)).mean()
        < np.abs(linear.astype(int) - bare.astype(int)).mean()
    )  # closer to the anti-aliased result than a bilinear shrink of the whole photo

    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1200 x 900, shown 900 x 1200
    Image.fromarray(image[:, :, ::-1]).save(turned, quality=92, exif=exif)
    assert load(turned, at_least=224).image.shape == (300, 225, 3)
    grey = tmp_path / "grey.jpg"
    cv2.imwrite(str(grey), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    assert load(grey, at_least=224).image.shape == (225, 300)
    lossless = write_image(tmp_path / "big.png", image)
    assert load(lossless, at_least=224).image.shape == (900, 1200, 3)  # only JPEG scales


def test_shrinking_is_area_averaged_and_enlarging_bilinear():
    image = photo(90, 120)
    small = to_square(image, 32)
    assert np.array_equal(small, cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA))
    large = to_square(image, 160)
    assert np.array_equal(large, cv2.resize(image, (160, 160), interpolation=cv2.INTER_LINEAR))


def test_cache_auto_keeps_what_fits_and_says_so(monkeypatch):
    import trainer.runtime as runtime

    monkeypatch.setattr(runtime, "available_memory", lambda: 10 * 2**30)
    fits = runtime.plan_cache("auto", 1000, 224)  # 0.14 GiB of 10 GiB
    assert fits.on and "stay in memory after the first epoch" in fits.describe()
    monkeypatch.setattr(runtime, "available_memory", lambda: 2**28)  # 0.25 GiB
    too_big = runtime.plan_cache("auto", 1000, 224)
    assert not too_big.on and "--cache on forces it" in too_big.describe()
    assert runtime.plan_cache("on", 10**6, 224).on and not runtime.plan_cache("off", 1, 8).on
    assert runtime.available_memory() > 0


def test_with_the_cache_every_epoch_after_the_first_is_read_from_memory(tmp_path):
    from trainer.pipeline import Batching, ImageBatches

    paths = [str(write_image(tmp_path / f"{i}.png", photo(20, 30, seed=i))) for i in range(6)]
    batches = ImageBatches(
        paths, [0, 1] * 3, Batching(n_classes=2, size=16, batch=4, shuffle=True, cache=True)
    )
    first = {tuple(x.ravel()) for i in range(len(batches)) for x in batches[i][0]}
    for p in paths:  # gone from disk: only memory can serve the next epoch
        __import__("os").unlink(p)
    batches.on_epoch_end()
    second = {tuple(x.ravel()) for i in range(len(batches)) for x in batches[i][0]}
    assert second == first and len(first) == 6


def test_old_run_folders_with_a_boolean_cache_still_read():
    from trainer.config import TrainConfig

    assert TrainConfig.from_dict({"cache": True}).cache == "on"
    assert TrainConfig.from_dict({"cache": False}).cache == "off"
    assert TrainConfig().cache == "auto"


def test_balanced_class_weights_reach_the_loss_as_sample_weights(tmp_path):
    from trainer.pipeline import Batching, ImageBatches, class_weights

    weights = class_weights([80, 15, 5, 0])
    assert weights[:3] == pytest.approx([100 / 320, 100 / 60, 100 / 20]) and weights[3] == 0
    paths = [str(write_image(tmp_path / f"{i}.png", photo(12, 12, seed=i))) for i in range(4)]
    batches = ImageBatches(
        paths, [0, 1, 2, 2], Batching(n_classes=4, size=8, batch=4), class_weights=weights
    )
    _, labels, w = batches[0]
    assert w.tolist() == pytest.approx([weights[k] for k in labels.argmax(1)])


def test_learning_rate_schedules_warm_up_and_decay():
    import keras

    from balancer.common.errors import TrainError
    from trainer.config import TrainConfig
    from trainer.models import learning_rate

    def at(schedule, step):
        return float(keras.ops.convert_to_numpy(schedule(step)))

    steps = 10  # per epoch
    assert learning_rate(TrainConfig(lr=0.1), 0.1, steps, epochs=5) == 0.1
    warm = learning_rate(TrainConfig(lr=0.1, warmup_epochs=2), 0.1, steps, epochs=5, warmup=2)
    assert (
        at(warm, 0) == 0
        and at(warm, 10) == pytest.approx(0.05)
        and at(warm, 40) == pytest.approx(0.1)
    )
    cosine = learning_rate(TrainConfig(lr=0.1, lr_schedule="cosine"), 0.1, steps, epochs=5)
    assert at(cosine, 0) == pytest.approx(0.1) and at(cosine, 25) == pytest.approx(0.05)
    assert at(cosine, 50) == pytest.approx(0, abs=1e-7)
    with pytest.raises(TrainError, match="warmup_epochs goes with lr_schedule"):
        TrainConfig(lr_schedule="plateau", warmup_epochs=1)


def test_a_resumed_callback_gets_its_counts_back():
    import keras

    from trainer.resume import resumable

    cls = resumable(keras.callbacks.ReduceLROnPlateau, ("wait", "best", "cooldown_counter"))
    cb = cls(monitor="val_loss", patience=3)
    cb.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    cb.restored = {"wait": 2, "best": 0.25, "cooldown_counter": 0}
    cb.on_train_begin()
    assert cb.state() == {"wait": 2, "best": 0.25, "cooldown_counter": 0}


def test_a_file_changed_under_the_reader_is_named_whatever_its_times_say(tmp_path):
    """The trainer's reader checks each file against the stamp the scan took (size,
    modification time, inode, change time): the same bytes written again with their times
    set back, or a copy moved over the file (`cp -p`, `mv`), are noticed, and with the cache
    on, a file changed after its first read is noticed as the next epoch starts."""
    import os
    import shutil

    from balancer.common.imageio import stamp_of
    from trainer.pipeline import Batching, DataChanged, ImageBatches

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        write_image(paths[-1], textured(16, 16, seed=i))

    def batches(**kw):
        stamps = [stamp_of(os.stat(p)) for p in paths]
        return ImageBatches(
            paths, [0, 0, 0], Batching(n_classes=1, size=8, batch=3, **kw), stamps=stamps
        )

    plain = batches()
    assert plain[0][0].shape == (3, 8, 8, 3)
    st = paths[1].stat()
    paths[1].write_bytes(paths[1].read_bytes())  # the same bytes again, times set back
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DataChanged, match=r"1\.png: changed after the scan \(its change time"):
        plain[0]
    plain = batches()
    shutil.copy2(paths[2], tmp_path / "copy.png")  # cp -p: same size, same times
    os.replace(tmp_path / "copy.png", paths[2])
    with pytest.raises(DataChanged, match=r"2\.png: replaced by another file"):
        plain[0]
    cached = batches(cache=True)
    cached[0]
    cached.check_unchanged()  # nothing changed
    paths[0].unlink()
    assert cached[0][0].shape == (3, 8, 8, 3)  # from memory
    with pytest.raises(DataChanged, match=r"0\.png: removed after the scan"):
        cached.check_unchanged()
