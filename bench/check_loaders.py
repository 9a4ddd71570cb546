"""Load a balanced folder with torchvision's ImageFolder and Hugging Face's imagefolder, and
compare classes and counts with its manifest (Keras is checked in tests/test_loaders.py).

    python -m venv /tmp/loaders && /tmp/loaders/bin/pip install torch torchvision datasets
    HF_HUB_OFFLINE=1 /tmp/loaders/bin/python bench/check_loaders.py balanced/

Not part of the test suite: torchvision alone is several GB.
"""

import collections
import csv
import sys

import datasets
from torchvision.datasets import ImageFolder


def main(out: str) -> None:
    with open(f"{out}/manifest.csv", encoding="utf-8") as f:
        want = collections.Counter(row["label"] for row in csv.DictReader(f))
    tv = ImageFolder(out)
    got = collections.Counter(tv.classes[t] for t in tv.targets)
    print(
        f"torchvision ImageFolder: classes match {tv.classes == sorted(want)}, "
        f"counts match {got == want} ({len(tv)} images)"
    )
    hf = datasets.load_dataset("imagefolder", data_dir=out, split="train")
    names = hf.features["label"].names
    got = collections.Counter(names[i] for i in hf["label"])
    print(
        f"Hugging Face imagefolder: classes match {names == sorted(want)}, "
        f"counts match {got == want} ({len(hf)} images), columns {hf.column_names}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
