"""Every tensor of the registry declares its shapes as named dims and its value range; bounds
name dims of the loss, and integer ranges come with an integer dtype."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lossd.losses import ANY, REGISTRY, Kind, TensorSpec, Values
from lossd.losses._spec import check_tensors

NAMED = [(loss, t) for loss in sorted(REGISTRY) for t in REGISTRY[loss].tensors]


@pytest.mark.parametrize(("loss", "tensor"), NAMED, ids=[f"{n}.{t.name}" for n, t in NAMED])
def test_every_tensor_declares_dims_and_values(loss: str, tensor: TensorSpec) -> None:
    assert tensor.dims, "no dims"
    for form in tensor.dims:
        assert all(isinstance(d, int) and d > 0 or isinstance(d, str) and d for d in form)
        assert form.count(ANY) <= 1
    dims = {d for t in REGISTRY[loss].tensors for form in t.dims for d in form}
    values = tensor.values
    if values is not None:
        assert set(values.dim_names) <= dims
        assert values.choices is None or values.low is values.high is None
    if tensor.kind is Kind.INDEX or values is not None and values.integer:
        assert values is not None and values.integer and tensor.preferred_dtype == "int64"
    else:
        assert tensor.preferred_dtype == "float32"


def test_ranges_as_documented() -> None:
    index = Values(0, "C", high_open=True, integer=True)
    assert REGISTRY["cross_entropy"].tensor_map["target"].values == index
    assert REGISTRY["multi_margin"].tensor_map["target"].values == index
    assert REGISTRY["multilabel_margin"].tensor_map["target"].values == Values(
        -1, "C", high_open=True, integer=True)
    assert REGISTRY["cosine_embedding"].tensor_map["target"].values == Values(choices=(-1, 1))
    assert REGISTRY["binary_cross_entropy"].tensor_map["input"].values == Values(0, 1)
    assert REGISTRY["gaussian_nll"].tensor_map["var"].values == Values(low=0, low_open=True)
    ctc = REGISTRY["ctc"].tensor_map
    assert ctc["targets"].values == Values(1, "C", high_open=True, integer=True)
    assert ctc["input_lengths"].values == Values(1, "T", integer=True)
    assert ctc["target_lengths"].values == Values(0, "S", integer=True)
    assert REGISTRY["complete_box_iou"].tensor_map["boxes1"].dims[0] == ("N", 4)


def test_registration_refuses_tensors_it_cannot_describe() -> None:
    spec = REGISTRY["cross_entropy"]
    target = spec.tensor_map["target"]
    cases = {
        "declares no dims": replace(target, dims=()),
        "more than once": replace(target, dims=((ANY, "N", ANY),)),
        "unknown dim 'K'": replace(target, values=Values(0, "K", integer=True)),
        "int64 among the dtypes": replace(target, dtypes=("float32",)),
        "holds integer values": replace(REGISTRY["nll"].tensor_map["target"], values=None),
    }
    for message, tensor in cases.items():
        with pytest.raises(ValueError, match=message):
            check_tensors(replace(spec, tensors=(spec.tensors[0], tensor)))


def test_values_take_choices_or_bounds() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        Values(0, 1, choices=(0, 1))
