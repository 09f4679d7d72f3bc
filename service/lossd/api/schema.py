"""OpenAPI documentation of the REST API (pydantic models used for docs only, never to parse
request bodies)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

from ..losses import REGISTRY

DESCRIPTION = (
    "Deep-learning losses and their gradients, computed exactly as PyTorch 2.13 does. "
    "Tensors are nested JSON lists, `{dtype, shape, data}` or `{dtype, shape, b64}` "
    "(little-endian bytes); non-finite numbers are the strings \"NaN\", \"Infinity\", "
    "\"-Infinity\". Answers use the request's encoding of `input` and torch's dtype.")
TAGS = [{"name": "losses", "description": "the losses"},
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


def compute_body() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": COMPUTE, "example": EXAMPLE}}}}


def batch_body() -> dict[str, Any]:
    # The envelope is checked for the whole request (422); what is inside an item's inputs and
    # options (and its loss name) is checked per item, answered in that item's own error.
    item = {**COMPUTE, "required": ["loss", "inputs"],
            "description": "the body of POST /v1/losses/{name} plus the loss name; a wrong "
                           "loss, tensor or option answers this item's own error",
            "properties": {**COMPUTE["properties"], "loss": {"type": "string"},
                           "inputs": {"type": "object"}, "options": {"type": "object"}}}
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": ["requests"], "additionalProperties": False,
                   "properties": {"requests": {"type": "array", "items": item}}},
        "example": {"requests": [{"loss": "cross_entropy", **EXAMPLE},
                                 {"loss": "mse", "inputs": {"input": [1.0, 2.0],
                                                            "target": [1.5, 2.5]}}]}}}}}


class ErrorBody(BaseModel):
    code: str = Field(examples=["INVALID_ARGUMENT"])
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in (
        (400, "invalid argument"), (404, "unknown loss"), (413, "payload too large"),
        (422, "malformed request"), (503, "queue full or draining"),
        (504, "deadline exceeded"))}


class ComputeResponse(BaseModel):
    loss: Any = Field(description="a number, or a tensor when reduction='none'")
    grads: dict[str, Any] | None = Field(None, description="gradients, when grad=true")


class BatchResponse(BaseModel):
    results: list[dict[str, Any]]


class TensorInfo(BaseModel):
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
    name: str
    summary: str
    family: str
    torch: str
    tensors: list[TensorInfo]
    options: dict[str, Any] = Field(description="JSON Schema of the options")
    differentiable: list[str]
    reductions: list[str]


class LossList(BaseModel):
    losses: list[LossInfo]
