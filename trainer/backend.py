"""The one place that loads TensorFlow and Keras, quietly.

TensorFlow 2.20+ prints oneDNN and "no CUDA driver" notes from C++ before its log level
applies, so the first import runs with the process's stderr pointed at /dev/null, unless
the user set TF_CPP_MIN_LOG_LEVEL themselves. Python errors still propagate.
"""
from __future__ import annotations

import os
import sys

_USER_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_quietly():
    if "tensorflow" in sys.modules or _USER_LEVEL:
        import keras
        import tensorflow
        return tensorflow, keras
    import logging

    # Python-side chatter too (retracing notes when a study builds model after model).
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras
            import tensorflow
            tensorflow.config.list_physical_devices("GPU")  # the CUDA probe prints too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow, keras


def tf():
    return _import_quietly()[0]


def keras():
    return _import_quietly()[1]
