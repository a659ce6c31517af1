"""The DequantizeLinear -> Softmax/LayerNorm -> QuantizeLinear checker on hand-made graphs."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_utils import find_dq_softmax_q
from quantize import check_int8_graph, depthwise_convs


def _graph(middle: list[tuple[str, dict]]):
    """x(int8) -> DQ -> middle ops... -> Q -> y(int8)."""
    inits = [
        numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), "z"),
        numpy_helper.from_array(np.ones(4, dtype=np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(4, dtype=np.float32), "beta"),
        numpy_helper.from_array(np.ones(4, dtype=np.float32), "c"),
    ]
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["t0"], name="dq")]
    cur = "t0"
    for k, (op, attrs) in enumerate(middle):
        extra = {"LayerNormalization": ["gamma", "beta"], "Add": ["c"], "Mul": ["c"]}.get(op, [])
        nodes.append(helper.make_node(op, [cur] + extra, [f"t{k + 1}"], name=f"{op.lower()}{k}", **attrs))
        cur = f"t{k + 1}"
    nodes.append(helper.make_node("QuantizeLinear", [cur, "s", "z"], ["y"], name="q"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.INT8, [2, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m


def test_flags_softmax_directly_between_dq_and_q():
    assert find_dq_softmax_q(_graph([("Softmax", {"axis": -1})])) == [["dq", "softmax0", "q"]]


def test_flags_layernorm_directly_between_dq_and_q():
    assert len(find_dq_softmax_q(_graph([("LayerNormalization", {"axis": -1})]))) == 1


def test_flags_softmax_in_a_unary_chain():
    assert len(find_dq_softmax_q(_graph([("Relu", {}), ("Softmax", {"axis": -1})]))) == 1


def test_does_not_flag_safe_graphs():
    assert find_dq_softmax_q(_graph([("Relu", {})])) == []  # element-wise: the lookup table is right
    assert find_dq_softmax_q(_graph([("Add", {}), ("Softmax", {"axis": -1})])) == []  # binary op breaks it
    assert find_dq_softmax_q(_graph([("Softmax", {"axis": -1}), ("Mul", {})])) == []


def test_int8_graph_check_reports_the_chain():
    problems = check_int8_graph(_graph([("Softmax", {"axis": -1})]))
    assert any("Softmax" in p for p in problems)
    assert check_int8_graph(_graph([("Relu", {})])) == []


def test_depthwise_convs_are_the_grouped_ones():
    inits = [numpy_helper.from_array(np.ones((4, 1, 3, 3), dtype=np.float32), "wd"),
             numpy_helper.from_array(np.ones((4, 4, 1, 1), dtype=np.float32), "wp")]
    nodes = [helper.make_node("Conv", ["x", "wd"], ["t"], name="dw", group=4, pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["t", "wp"], ["y"], name="pw")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])], inits)
    assert depthwise_convs(helper.make_model(g)) == ["dw"]
