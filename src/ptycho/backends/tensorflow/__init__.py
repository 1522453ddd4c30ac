"""TensorFlow + Keras 3 backend (``backend='tensorflow'``). Imported only when selected."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
