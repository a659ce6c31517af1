import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: E402

SHIPPED = os.path.join(common.MODELS, "person-detector.onnx")
SHIPPED_ALT = os.path.join(common.MODELS, "person-detector-alt.onnx")
SHIPPED_320 = os.path.join(common.MODELS, "person-detector-320.onnx")
SHIPPED_INT8 = os.path.join(common.MODELS, "person-detector.int8.onnx")


@pytest.fixture(scope="session")
def shipped():
    assert os.path.exists(SHIPPED), "models/person-detector.onnx missing: run make_nanodet.py"
    return SHIPPED


@pytest.fixture(scope="session")
def shipped_320():
    assert os.path.exists(SHIPPED_320), "models/person-detector-320.onnx missing: run make_nanodet.py --size 320"
    return SHIPPED_320


@pytest.fixture(scope="session")
def shipped_int8():
    assert os.path.exists(SHIPPED_INT8), "models/person-detector.int8.onnx missing: run quantize.py"
    return SHIPPED_INT8


@pytest.fixture(scope="session")
def ssdlite_candidate(tmp_path_factory):
    """The SSDLite conversion (not shipped: over 10 MB), built fresh."""
    import make_ssdlite
    return make_ssdlite.build(str(tmp_path_factory.mktemp("ssd") / "ssdlite-person.onnx"))
