import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

torch.set_num_threads(2)
torch.backends.mha.set_fastpath_enabled(False)


@pytest.fixture(scope="session")
def tiny_model():
    from model import build_model

    return build_model("test-tiny").eval()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_model):
    from export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "tiny.fp32.onnx"
    rep = export_onnx(tiny_model, out, verbose=False)
    return out, rep
