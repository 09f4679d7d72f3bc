"""The REST API's schema: per-loss request models generated from the registry, and the
documented answers.

:func:`request_model` makes one pydantic model per loss, ``<Loss>Request``, with its tensors
(``<Loss>Inputs``: each a JSON tensor, described with its shape, dtypes and value range) and
options (``<Loss>Options``: torch's types, defaults, bounds and choices, from ``OptionSpec``).
They are the request schemas of ``/openapi.json`` and validate the envelope and options of
every native compute body (:func:`validate_request`). Tensor payloads are not walked by
pydantic (a million-element list must not become a million objects): the codec decodes them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from ...errors import MalformedRequest
from ...losses import REGISTRY, LossSpec, OptionSpec, TensorSpec, check_options

DESCRIPTION = (
    "Deep-learning losses and their gradients, computed exactly as PyTorch 2.13 does. "
    "Tensors are nested JSON lists, `{dtype, shape, data}` or `{dtype, shape, b64}` "
    "(little-endian bytes); non-finite numbers are the strings \"NaN\", \"Infinity\", "
    "\"-Infinity\". Answers use the request's encoding of `input` and torch's dtype.")
TAGS = [{"name": "losses", "description": "the losses"},
        {"name": "evaluation", "description": "dataset-level losses: streams and runs"},
        {"name": "v2", "description": "the Open Inference Protocol v2 (KServe v2): every loss "
                                     "is a model"},
        {"name": "health", "description": "liveness, readiness, metrics"}]

LossName = Annotated[str, Path(description="a loss (GET /v1/losses lists them); any other "
                                           "name answers 404",
                               json_schema_extra={"enum": sorted(REGISTRY)})]
DTYPES = ["float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "bool"]
NUMBER = {"anyOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity",
                                                                     "-Infinity"]}]}
NESTED = {"type": "array", "items": {}, "description": "nested list of numbers"}
TENSOR: dict[str, Any] = {
    "description": "a tensor: a nested list, or {dtype, shape, data} or {dtype, shape, b64}",
    "anyOf": [
        NUMBER, NESTED,
        {"type": "object", "required": ["dtype", "shape", "data"], "additionalProperties": False,
         "properties": {"dtype": {"type": "string", "enum": DTYPES},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "data": {"type": "array", "items": {}}}},
        {"type": "object", "required": ["dtype", "shape", "b64"], "additionalProperties": False,
         "properties": {"dtype": {"type": "string", "enum": DTYPES},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "b64": {"type": "string", "format": "byte"}}},
    ],
}
COMPUTE: dict[str, Any] = {
    "type": "object", "required": ["inputs"], "additionalProperties": False,
    "properties": {
        "inputs": {"type": "object", "additionalProperties": TENSOR,
                   "description": "tensors by torch argument name"},
        "options": {"type": "object", "description": "torch keyword arguments (see "
                    "GET /v1/losses/{name} for each loss's options)",
                    "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "string"},
                                                       {"type": "boolean"}, {"type": "null"},
                                                       TENSOR]}},
        "grad": {"type": "boolean", "default": False,
                 "description": "also return d(loss)/d(tensor) for differentiable tensors"},
    },
}
EXAMPLE = {"inputs": {"input": [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], "target": [0, 2]},
           "options": {"reduction": "mean", "label_smoothing": 0.1}, "grad": True}


def compute_body(spec: LossSpec) -> dict[str, Any]:
    """The documented body of ``POST /v1/losses/{spec.name}``: its request model."""
    content: dict[str, Any] = {"schema": {
        "$ref": f"#/components/schemas/{request_model(spec).__name__}"}}
    if spec.name in EXAMPLES:
        content["example"] = EXAMPLES[spec.name]
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


Anything = Annotated[SkipValidation[Any], WithJsonSchema({})]


class BatchItem(BaseModel):
    """One item of ``POST /v1/batch``: a compute body plus the loss name. The envelope is
    checked for the whole request (422); a wrong loss, tensor or option answers the item's own
    error."""

    model_config = ConfigDict(extra="forbid", strict=True)
    loss: str
    inputs: dict[str, Anything]
    options: dict[str, Anything] = Field(default_factory=dict)
    grad: bool = False


class BatchRequest(BaseModel):
    """``POST /v1/batch``: several computations, answered in order."""

    model_config = ConfigDict(extra="forbid", strict=True)
    requests: list[BatchItem]


def validate_batch(body: dict[str, Any]) -> None:
    """Check the envelope of a batch body (a 422 naming the field)."""
    try:
        BatchRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(f"[{p}]" if isinstance(p, int) else str(p)
                         for p in first["loc"]).replace(".[", "[")[:200]
        raise MalformedRequest(f"{where}: {first['msg']}", field=where) from None


def batch_body() -> dict[str, Any]:
    """The documented body of ``POST /v1/batch``."""
    schema = BatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs")
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": schema,
        "example": {"requests": [{"loss": "cross_entropy", **EXAMPLE},
                                 {"loss": "mse", "inputs": {"input": [1.0, 2.0],
                                                            "target": [1.5, 2.5]}}]}}}}}


class ErrorBody(BaseModel):
    """An error: its code, a message for humans, the offending field."""

    code: str = Field(examples=["INVALID_ARGUMENT"])
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """The body of every native error answer."""

    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in (
        (400, "invalid argument"), (404, "unknown loss"), (413, "payload too large"),
        (422, "malformed request"), (503, "queue full or draining"),
        (504, "deadline exceeded"))}


class ComputeResponse(BaseModel):
    """The answer of a compute call."""

    loss: Any = Field(description="a number, or a tensor when reduction='none'")
    dtype: str = Field(description="the loss's dtype (torch's result dtype), e.g. float32")
    grads: dict[str, Any] | None = Field(None, description="gradients, when grad=true")
    warnings: list[str] | None = Field(None, description="what torch warns of this call, in "
                                       "torch's words (absent when it does not warn)")


class BatchResponse(BaseModel):
    """The answers of a batch, in order (each a result or its own error)."""

    results: list[dict[str, Any]]


class TensorInfo(BaseModel):
    """One tensor of a loss, as ``/v1/losses`` lists it."""

    name: str
    role: str
    shape: str
    dtypes: list[str]
    differentiable: bool
    optional: bool
    description: str
    dims: list[list[str | int]] = Field(
        default_factory=list, description="each allowed shape, the most common first: dim "
        "names (one size per name across the loss's tensors), fixed sizes, \"*\" for any "
        "number of dims", examples=[[["N", "C"], ["C"], ["N", "C", "*"]]])
    values: dict[str, Any] | None = Field(
        None, description="the value range (null: any real number): low, high (numbers, "
        "dim names standing for their size, or null), low_open, high_open, integer, choices",
        examples=[{"low": 0, "high": "C", "low_open": False, "high_open": True,
                   "integer": True, "choices": None}])


class LossInfo(BaseModel):
    """One loss, as ``/v1/losses`` lists it."""

    name: str
    summary: str
    family: str
    torch: str
    tensors: list[TensorInfo]
    options: dict[str, Any] = Field(description="JSON Schema of the options")
    differentiable: list[str]
    reductions: list[str]


class LossList(BaseModel):
    """Every loss."""

    losses: list[LossInfo]


# --- per-loss request models ---------------------------------------------------------------

def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _values_text(t: TensorSpec) -> str:
    v = t.values
    if v is None:
        return "any real"
    if v.choices is not None:
        return "one of " + ", ".join(f"{c:g}" for c in v.choices)
    low = "-inf" if v.low is None else str(v.low)
    high = "inf" if v.high is None else str(v.high)
    kind = "integers" if v.integer else "values"
    return (f"{kind} in {'(' if v.low_open or v.low is None else '['}{low}, {high}"
            f"{')' if v.high_open or v.high is None else ']'}")


def _tensor_field(t: TensorSpec) -> Any:
    """A tensor: documented as a JSON tensor of its shape, dtypes and values; not walked."""
    schema: dict[str, Any] = {
        "allOf": [{_TENSOR_MARK: True}],
        "description": f"{t.role}: shape {t.shape}; dtypes {', '.join(t.accepted_dtypes)}; "
                       f"{_values_text(t)}{'; has a gradient' if t.differentiable else ''}"}
    tensor: Any = Annotated[SkipValidation[Any], WithJsonSchema(schema)]  # type: ignore[misc]
    return (tensor, None)


def _option_field(o: OptionSpec) -> Any:
    """An option with torch's type, default, bounds and choices (strict: no "1" for 1)."""
    kind: Any = o.type
    if o.choices is not None:
        kind = Literal.__getitem__(tuple(o.choices))  # a Literal of the registry's choices
    if o.nullable or o.default is None:
        kind = kind | None
    cast = int if o.type is int else float
    bounds: dict[str, Any] = {}
    if o.minimum is not None:
        bounds["gt" if o.exclusive_minimum else "ge"] = cast(o.minimum)
    if o.maximum is not None:
        bounds["lt" if o.exclusive_maximum else "le"] = cast(o.maximum)
    return (kind, Field(o.default, description=o.description, **bounds))


_REQUEST_MODELS: dict[str, type[BaseModel]] = {}


def request_model(spec: LossSpec) -> type[BaseModel]:
    """:func:`build_request_model`, once per loss (looked up by name: hashing a LossSpec costs
    microseconds, a noticeable share of a small request)."""
    model = _REQUEST_MODELS.get(spec.name)
    if model is None:
        model = _REQUEST_MODELS[spec.name] = build_request_model(spec)
    return model


def build_request_model(spec: LossSpec) -> type[BaseModel]:
    """``<Loss>Request``: ``{"inputs": <Loss>Inputs, "options": <Loss>Options, "grad"}``.

    Inputs are optional to pydantic (a missing tensor is the core's error, worded as on every
    transport) and required in the schema; tensor options (class ``weight``) may also travel
    in ``options``.
    """
    name = _camel(spec.name)
    required = [t.name for t in spec.tensors if not t.optional]
    inputs = create_model(
        f"{name}Inputs", __config__=ConfigDict(extra="allow", json_schema_extra={
            "required": list(required), "additionalProperties": False}),
        **{t.name: _tensor_field(t) for t in spec.tensors})
    fixed = [t for t in spec.tensors if t.batch_axis is None]
    options = create_model(
        f"{name}Options", __config__=ConfigDict(extra="forbid", strict=True),
        **{o.name: _option_field(o) for o in spec.options},
        **{t.name: _tensor_field(t) for t in fixed})
    return create_model(
        f"{name}Request", __config__=ConfigDict(extra="forbid", strict=True),
        inputs=(inputs, ...), options=(options, Field(default_factory=options)),
        grad=(bool, Field(False, description="also return d(loss)/d(tensor) for every "
                                               "differentiable tensor")))


EXAMPLES = {"cross_entropy": EXAMPLE,
            "mse": {"inputs": {"input": [1.0, 2.0], "target": [1.5, 2.5]}}}
TENSOR_REF = {"$ref": "#/components/schemas/Tensor"}
_TENSOR_MARK = "x-lossd-tensor"  # pydantic refuses a foreign $ref: marked, then swapped


def _swap_marks(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get(_TENSOR_MARK):
            return TENSOR_REF
        tensor = node.get("allOf") == [{_TENSOR_MARK: True}]  # no "default": null for tensors
        return {k: _swap_marks(v) for k, v in node.items() if not (tensor and k == "default")}
    if isinstance(node, list):
        return [_swap_marks(v) for v in node]
    return node


def components() -> dict[str, Any]:
    """Schemas that routes refer to: ``Tensor`` and every loss's request models."""
    schemas: dict[str, Any] = {"Tensor": TENSOR, "BatchItem": BatchItem.model_json_schema()}
    for spec in REGISTRY.values():
        model = request_model(spec)
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(_swap_marks(schema.pop("$defs", {})))
        schemas[model.__name__] = _swap_marks(schema)
    return schemas


def validate_request(spec: LossSpec, body: dict[str, Any], where: str = "") -> None:
    """Check a compute body's envelope and options against ``spec``'s request model.

    An error in ``options`` is answered in the core's words (the same on every transport); an
    option value the core accepts (``2.0`` for an int) passes. Anything else is a 422 naming
    the field (``where`` prefixes it, e.g. ``requests[2].``).
    """
    try:
        request_model(spec).model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where += ".".join(str(p) for p in first["loc"])[:200]
        options = body.get("options")
        if first["loc"][0] == "options" and isinstance(options, dict):
            check_options(spec, {k: v for k, v in options.items() if k not in spec.tensor_map})
            return  # the core's rules accept it (a tensor is checked with the tensors)
        raise MalformedRequest(f"{where}: {first['msg']}", field=where) from None


# --- the Open Inference Protocol v2 and the stream ------------------------------------------

V2_ERROR = {"type": "object", "required": ["error"],
            "properties": {"error": {"type": "string"}}}
V2_TENSOR = {
    "type": "object", "required": ["name", "datatype", "shape"],
    "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                   "shape": {"type": "array", "items": {"type": "integer"}},
                   "data": {"type": "array", "items": {}}, "parameters": {"type": "object"}}}
V2_INFER_REQUEST = {
    "type": "object", "required": ["inputs"],
    "properties": {
        "id": {"type": "string"}, "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "parameters": {"type": "object", "description": "the loss's scalar options, plus grad "
                       "(bool), timeout (microseconds) and binary_data_output (bool)"},
        "inputs": {"type": "array", "items": V2_TENSOR, "description": "the loss's tensors "
                   "(see GET /v2/models/{loss}); tensor options are inputs too"},
        "outputs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}}}}
V2_INFER_RESPONSE = {
    "type": "object", "required": ["model_name", "outputs"],
    "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                   "id": {"type": "string"},
                   "outputs": {"type": "array", "items": V2_TENSOR}}}
V2_EXAMPLE = {"inputs": [
    {"name": "input", "datatype": "FP32", "shape": [2, 3],
     "data": [2.0, 0.5, -1.0, 0.1, 0.2, 3.0]},
    {"name": "target", "datatype": "INT64", "shape": [2], "data": [0, 2]}],
    "parameters": {"label_smoothing": 0.1, "grad": True}}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A documented JSON answer."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def v2_responses(*statuses: int, ok: dict[str, Any] | None = None) -> dict[int | str, Any]:
    """Documented answers of a V2 route: ``ok`` for 200, the protocol's error body else."""
    texts = {400: "invalid request", 404: "unknown model or version", 413: "payload too large",
             503: "not ready: draining or overloaded", 504: "deadline exceeded"}
    answers: dict[int | str, Any] = {status: json_answer(V2_ERROR, texts[status])
                                     for status in statuses}
    if ok is not None:
        answers[200] = ok
    return answers


V2_INFER_OK = {"description": "the outputs (binary outputs after the JSON header when asked)",
               "content": {"application/json": {"schema": V2_INFER_RESPONSE},
                           "application/octet-stream": {"schema": {"type": "string",
                                                                   "format": "binary"}}}}


def v2_infer_body() -> dict[str, Any]:
    """The documented body of ``POST /v2/models/{loss}/infer``."""
    return {"requestBody": {"required": True, "description": "JSON; or, with the binary tensor "
            "data extension, the JSON header (its length in Inference-Header-Content-Length) "
            "followed by raw tensors", "content": {"application/json": {
                "schema": V2_INFER_REQUEST, "example": V2_EXAMPLE}}}}
