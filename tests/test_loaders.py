"""The balanced folder is a product of its own: framework loaders read it unchanged."""

import numpy as np
from helpers import RunOptions, make_folder

from balancer import BuildSettings, build, read_manifest


def test_keras_loads_out_with_manifest_classes_and_counts(tmp_path):
    import keras

    src = make_folder(tmp_path / "src", {"anger": 7, "awe": 2, "fear": 3}, size=24)
    # a PNG class too, so both formats are read
    make_folder(tmp_path / "src", {"joy": 2}, size=24, ext=".png")
    out = tmp_path / "out"
    build(
        src,
        out,
        BuildSettings(nmin=6, transforms="rotate,zoom,cutout=8"),
        run=RunOptions(workers=2, progress=False),
    )
    m = read_manifest(out)
    ds = keras.utils.image_dataset_from_directory(
        out, image_size=(24, 24), batch_size=64, shuffle=False, label_mode="int"
    )
    assert ds.class_names == sorted(m.label.unique())
    labels = np.concatenate([y.numpy() for _, y in ds])
    counts = dict(
        zip(ds.class_names, np.bincount(labels, minlength=len(ds.class_names)), strict=False)
    )
    assert (
        counts == m.groupby("label").size().to_dict() == {"anger": 7, "awe": 6, "fear": 6, "joy": 6}
    )
