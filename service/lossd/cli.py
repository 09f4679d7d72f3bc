"""The ``lossd`` command: ``losses``, ``compute``, ``evaluate``, ``serve`` and ``--version``.

    lossd losses [--json]                                  every loss: name, family, torch
    lossd compute LOSS --input x.npy --target y.npy [--TENSOR SOURCE ...] [-o KEY=VALUE ...]
                  [--grad out.npz] [--json]                one loss (and its gradients)
    lossd evaluate LOSS DATA.npz|DIR [--run-id ID] [--batch-size N] [-o KEY=VALUE ...]
                                                           a dataset-level loss, batch by batch
    lossd serve [--flag ...]                               the servers (lossd[server])

``losses`` and ``compute`` ask a server with ``--url URL`` (REST) or ``--grpc HOST:PORT``, and
without either use the in-process core (:mod:`lossd.losses`: the same registry and numbers, no
server, no network); ``evaluate`` needs a server. Every server command takes ``--api-key``
(default: the ``LOSSD_API_KEY`` variable), ``--tls``, ``--ca``, ``--cert``/``--key`` and
``--timeout``.

A tensor SOURCE is a ``.npy`` file, a ``.npz`` file (its only array, the array named after the
tensor, or ``file.npz:key``), a ``.json`` file, or inline JSON (``'[[0.5, 1.0]]'``): nested
lists (floats decode as float64, integers as int64, as over REST) or
``{"dtype": "float32", "shape": [2], "data": [...]}``. An option value is read as JSON when it
parses as a scalar (``-o ignore_index=1 -o label_smoothing=0.1 -o log_target=true``) and as a
string otherwise (``-o reduction=sum``).

Only this module and the client are loaded for ``losses``, ``compute`` and ``evaluate`` (no
server dependency: ``pip install lossd`` runs them); ``serve`` imports :mod:`lossd.serve`. A
refusal, from a server or from the core, prints ``lossd: CODE: message`` and exits 1; a usage
mistake prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import Client, GrpcClient, LossdError, __version__
from . import losses as core
from .client import LossInfo
from .errors import LossdError as CoreError

EXIT_REFUSED, EXIT_USAGE = 1, 2
API_KEY_ENV = "LOSSD_API_KEY"


class UsageError(Exception):
    """A mistake in the command line or its files: one line, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake reported in one line (and the closest flag for a misspelt
    one) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        """``lossd compute: unrecognized arguments: --gard (did you mean --grad?)``, exit 2."""
        unknown = [word.split("=")[0] for word in message.rpartition(":")[2].split()
                   if word.startswith("--")] if "unrecognized arguments" in message else []
        flags = _flags(self)
        close = [match for word in unknown for match in difflib.get_close_matches(word, flags, 1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (see {self.prog} --help)"
        print(f"{self.prog}: {message}{hint}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of ``parser`` and of its commands' parsers."""
    found: list[str] = []
    for action in parser._actions:
        found += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found += [flag for flag in _flags(command) if flag not in found]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lossd`` command on ``argv`` (default ``sys.argv[1:]``); returns its exit
    code (0, 1 for a refusal, 2 for a usage mistake, 130 when interrupted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        return _serve(args[1:])
    parser = build_parser()
    options = parser.parse_args(args)
    if getattr(options, "run", None) is None:  # bare `lossd`
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = options.run(options)
    except (LossdError, CoreError) as error:
        message = " ".join(str(error.message).split())
        print(f"lossd: {getattr(error.code, 'value', error.code)}: {message}", file=sys.stderr)
        return EXIT_REFUSED
    except UsageError as error:
        print(f"lossd: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


def build_parser() -> Parser:
    """The parser of every command but ``serve``'s flags (:mod:`lossd.serve` declares those;
    ``serve`` is listed here for ``lossd --help``)."""
    parser = Parser(prog="lossd", description="Deep-learning losses (and their gradients) as a "
                                              "service, exact to PyTorch.")
    parser.add_argument("--version", action="version", version=f"lossd {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    listing = commands.add_parser("losses", help="list every loss (name, family, torch)",
                                  description="Every loss lossd computes: from a server with "
                                              "--url/--grpc, else from this install's registry.")
    _connection_flags(listing)
    listing.add_argument("--json", action="store_true", help="one JSON list, with each loss's "
                                                             "tensors and options")
    listing.set_defaults(run=run_losses)

    compute = commands.add_parser(
        "compute", help="compute one loss (and its gradients)", allow_abbrev=False,
        description="Compute LOSS on tensors from .npy, .npz or .json files or inline JSON: on "
                    "a server with --url/--grpc, else in-process. Prints the loss.")
    compute.add_argument("loss", metavar="LOSS", help="wire name, e.g. cross_entropy")
    tensors = compute.add_argument_group(
        "tensors", "each a .npy file, a .npz file (its only array, the one named after the "
                   "tensor, or FILE.npz:KEY), a .json file or inline JSON")
    names = {t.name for spec in core.REGISTRY.values() for t in spec.tensors}
    for name in ["input", "target", *sorted(names - {"input", "target"})]:
        flags = [f"--{name.replace('_', '-')}"] + (["--" + name] if "_" in name else [])
        tensors.add_argument(*flags, dest=f"tensor:{name}", metavar="SOURCE",
                             help=_tensor_help(name))
    _option_flag(compute)
    compute.add_argument("--grad", metavar="OUT.npz",
                         help="also compute the gradients and write them to this .npz file")
    _connection_flags(compute)
    compute.add_argument("--json", action="store_true",
                         help='print {"loss", "dtype", "shape"[, "grads"]} as JSON')
    compute.set_defaults(run=run_compute)

    evaluate = commands.add_parser(
        "evaluate", help="a dataset-level loss over batches, on a server",
        description="The loss over a whole dataset, equal to one call on all of it: DATA.npz "
                    "holds the tensors by name (input, target, ...), split into batches of "
                    "--batch-size along each tensor's batch axis; a DIR holds one .npz per "
                    "batch (in name order). Streamed, or added to the run --run-id.")
    evaluate.add_argument("loss", metavar="LOSS", help="wire name, e.g. cross_entropy")
    evaluate.add_argument("data", metavar="DATA", type=Path, help="a .npz file or a directory "
                                                                  "of .npz files")
    evaluate.add_argument("--run-id", help="add the batches to this run (created if new, "
                                           "reused if it exists), each once by its id")
    evaluate.add_argument("--batch-size", type=int, default=1024,
                          help="samples per batch of a DATA.npz (default 1024)")
    _option_flag(evaluate)
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    _connection_flags(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print the aggregate as JSON")
    evaluate.set_defaults(run=run_evaluate)

    commands.add_parser("serve", add_help=False,
                        help="run the REST and gRPC servers (needs lossd[server]; "
                             "lossd serve --help lists the settings)")
    return parser


def _tensor_help(name: str) -> str:
    users = sorted(spec.name for spec in core.REGISTRY.values() if name in spec.tensor_map)
    shown = ", ".join(users[:4]) + (", ..." if len(users) > 4 else "")
    return f"tensor {name} ({shown})"


def _option_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a loss option, e.g. -o reduction=sum -o label_smoothing=0.1 "
                             "(JSON scalars, else strings)")


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    server = parser.add_mutually_exclusive_group()
    server.add_argument("--url", help="a lossd REST endpoint, e.g. http://localhost:8000")
    server.add_argument("--grpc", metavar="HOST:PORT", help="a lossd gRPC endpoint, e.g. "
                                                            "localhost:50051")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None,
                        help=f"API key (default: ${API_KEY_ENV})")
    parser.add_argument("--tls", action="store_true", default=None,
                        help="TLS with the system's roots (https:// URLs turn it on)")
    parser.add_argument("--ca", metavar="FILE", help="PEM CA the server's certificate chains to")
    parser.add_argument("--cert", metavar="FILE", help="PEM client certificate (mutual TLS)")
    parser.add_argument("--key", metavar="FILE", help="PEM private key of --cert")
    parser.add_argument("--timeout", type=float, metavar="S", help="seconds per call")


def _serve(argv: list[str]) -> int:
    """``lossd serve``: the flags of :func:`lossd.serve.add_arguments`, then its ``main``."""
    try:
        from . import serve as server
    except ImportError as error:
        print(f"lossd: serving needs the server extras (pip install 'lossd[server]'): "
              f"{error.name or error} is not installed", file=sys.stderr)
        return EXIT_REFUSED
    parser = Parser(prog="lossd serve", description="Serve REST and gRPC in one process. "
                    "Every flag is also a LOSSD_* variable; a flag wins.")
    server.add_arguments(parser)
    code: int = server.main(parser.parse_args(argv))
    return code


Connection = Client | GrpcClient


def connect(args: argparse.Namespace) -> Connection | None:
    """The client that ``--url`` or ``--grpc`` names, with the connection flags given (None
    without either)."""
    if args.url is None and args.grpc is None:
        return None
    kind: type[Connection] = Client if args.url is not None else GrpcClient
    flags = {"api_key": args.api_key, "tls": args.tls, "ca": args.ca, "cert": args.cert,
             "key": args.key, "timeout": args.timeout}
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return kind(args.url if args.url is not None else args.grpc, **given)
    except (ValueError, OSError) as error:  # e.g. --tls with an http:// URL, a missing --ca
        raise UsageError(str(error)) from None


def run_losses(args: argparse.Namespace) -> int:
    """``lossd losses``: a table of name, family and torch equivalent, or ``--json``."""
    client = connect(args)
    if client is None:
        described = [_describe_local(spec) for spec in core.REGISTRY.values()]
    else:
        with client:
            described = [_describe_remote(info) for info in client.losses()]
    described.sort(key=lambda loss: loss["name"])
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    rows = [("LOSS", "FAMILY", "TORCH")] + [(d["name"], d["family"], d["torch"])
                                            for d in described]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for name, family, torch in rows:
        print(f"{name:<{widths[0]}}  {family:<{widths[1]}}  {torch}")
    return 0


def _describe_local(spec: core.LossSpec) -> dict[str, Any]:
    """A registry entry in the shape :func:`_describe_remote` gives."""
    return {"name": spec.name, "family": spec.family, "summary": spec.summary,
            "torch": spec.torch,
            "tensors": [{"name": t.name, "role": t.role, "shape": t.shape,
                         "dtypes": list(t.accepted_dtypes), "differentiable": t.differentiable,
                         "optional": t.optional} for t in spec.tensors],
            "options": {o.name: o.json_schema() for o in spec.options}}


def _describe_remote(info: LossInfo) -> dict[str, Any]:
    """A server's LossInfo as JSON: name, family, summary, torch, tensors, options."""
    return {"name": info.name, "family": info.family, "summary": info.summary,
            "torch": info.torch,
            "tensors": [{**dataclasses.asdict(t), "dtypes": list(t.dtypes)}
                        for t in info.tensors],
            "options": dict(info.options)}


def run_compute(args: argparse.Namespace) -> int:
    """``lossd compute``: the loss on stdout (the gradients to ``--grad``'s file)."""
    tensors = {key.partition(":")[2]: load_tensor(key.partition(":")[2], source)
               for key, source in vars(args).items()
               if key.startswith("tensor:") and source is not None}
    options = parse_options(args.option)
    both = sorted(set(tensors) & set(options))
    if both:
        raise UsageError(f"{', '.join(both)} given both as a tensor and as an option")
    grad = args.grad is not None
    client = connect(args)
    if client is None:
        result = core.compute(args.loss, tensors, options, grad=grad)
        loss, grads = result.loss, result.grads
    else:
        with client:
            arguments: dict[str, Any] = {**tensors, **options}  # by name, as the client takes them
            answer = client.compute(args.loss, grad=grad, **arguments)
        loss, grads = np.asarray(answer.loss), answer.grads
    written = None
    if args.grad is not None:
        with open(args.grad, "wb") as out:
            named: dict[str, Any] = grads
            np.savez(out, **named)
        written = {"file": args.grad, "tensors": sorted(grads)}
    if args.json:
        print(json.dumps({"loss": to_json(loss), "dtype": loss.dtype.name,
                          "shape": list(loss.shape), **({"grads": written} if written else {})}))
    else:
        print(np.array2string(loss, separator=", ", floatmode="unique"))
        if written is not None:
            print(f"gradients of {', '.join(written['tensors']) or 'no tensor'} written to "
                  f"{args.grad}", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``lossd evaluate``: stream the batches (or add them to ``--run-id``), print the
    dataset-level loss."""
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1; got {args.batch_size}")
    options = parse_options(args.option)
    fixed, batches = read_batches(args.loss, args.data, args.batch_size)
    client = connect(args)
    if client is None:
        raise UsageError("evaluate needs a server: --url URL or --grpc HOST:PORT")
    tqdm = importlib.import_module("tqdm").tqdm  # untyped; imported only here
    aggregate: dict[str, Any]
    with client, tqdm(total=len(batches), unit="batch", file=sys.stderr,
                      disable=args.quiet or not sys.stderr.isatty()) as bar:
        def loaded() -> Iterator[tuple[str, dict[str, np.ndarray]]]:
            for batch_id, load in batches:
                yield batch_id, load()
                bar.update()

        if args.run_id is None:
            evaluation = client.evaluate(args.loss, ({**tensors, **fixed}
                                                     for _, tensors in loaded()), **options)
            aggregate = {"loss": args.loss, "reduction": evaluation.reduction,
                         "value": float(evaluation.loss), "dtype": evaluation.loss.dtype.name,
                         "batches": evaluation.batches, "samples": evaluation.samples}
        else:
            client.create_run(args.loss, run_id=args.run_id, expected_batches=len(batches),
                              **options, **fixed)
            for batch_id, tensors in loaded():
                batch: dict[str, Any] = tensors
                client.add_batch(args.run_id, batch_id, **batch)
            aggregate = client.run(args.run_id)["aggregate"]
    value = aggregate["value"]  # REST: a number or "NaN"; gRPC: a float
    aggregate["value"] = to_json(np.asarray(float(value), dtype=aggregate["dtype"]))
    if args.json:
        print(json.dumps(aggregate))
    else:
        print(aggregate["value"])
    return 0


Batch = tuple[str, Callable[[], dict[str, np.ndarray]]]  # (batch id, what loads its tensors)


def read_batches(loss: str, data: Path, batch_size: int
                 ) -> tuple[dict[str, np.ndarray], list[Batch]]:
    """The batches of ``data``, each ``(batch_id, load)``, and the per-call tensors that every
    batch shares (class weights: the registry's tensors without a batch axis).

    A directory: one batch per ``.npz`` file, in name order, its id the file name, each loaded
    when it is sent. A ``.npz`` file: its arrays split into slices of ``batch_size`` along each
    tensor's batch axis (the registry's; axis 0 for a tensor this install does not know), ids
    ``"0"``, ``"1"``, ...; data in torch's unbatched form (one sample) is one batch.
    """
    if data.is_dir():
        files = sorted(data.glob("*.npz"))
        if not files:
            raise UsageError(f"{data}: no .npz files in this directory")
        fixed, _ = _per_call(loss, _npz_arrays(files[0]))

        def load(file: Path) -> dict[str, np.ndarray]:
            mine, rest = _per_call(loss, _npz_arrays(file))
            if mine.keys() != fixed.keys() or not all(
                    np.array_equal(mine[name], fixed[name]) for name in fixed):
                raise UsageError(f"{file}: its {', '.join(sorted(mine | fixed))} differ from "
                                 f"{files[0].name}'s; every batch shares one")
            return rest
        return fixed, [(file.name, functools.partial(load, file)) for file in files]
    if not data.is_file():
        raise UsageError(f"{data}: no such file or directory")
    fixed, arrays = _per_call(loss, _npz_arrays(data))
    spec = core.REGISTRY.get(loss)
    known = {} if spec is None else spec.tensor_map
    axes = {name: (known[name].batch_axis or 0) if name in known else 0 for name in arrays}
    if not all(arrays[name].ndim >= (known[name].batch_ndim if name in known else 1)
               for name in arrays):  # one sample, in torch's unbatched form
        return fixed, [("0", lambda: arrays)]
    sizes = {arrays[name].shape[axis] for name, axis in axes.items()}
    if len(sizes) > 1:
        shapes = ", ".join(f"{name} {arrays[name].shape}" for name in axes)
        raise UsageError(f"{data}: the tensors disagree on the number of samples: {shapes}")
    samples = sizes.pop() if sizes else 0
    batches: list[Batch] = []
    for i, start in enumerate(range(0, max(samples, 1), batch_size)):
        rows = np.arange(start, min(start + batch_size, samples))
        part = {name: np.take(arrays[name], rows, axis=axis) for name, axis in axes.items()}
        batches.append((str(i), functools.partial(dict, part)))
    return fixed, batches


def _per_call(loss: str, arrays: dict[str, np.ndarray]
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``arrays`` split into the per-call tensors (no batch axis in the registry) and the rest."""
    spec = core.REGISTRY.get(loss)
    fixed = {name: array for name, array in arrays.items() if spec is not None
             and name in spec.tensor_map and spec.tensor_map[name].batch_axis is None}
    return fixed, {name: array for name, array in arrays.items() if name not in fixed}


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: not a readable .npz file ({error})") from None


def load_tensor(name: str, source: str) -> np.ndarray:
    """Tensor ``name`` from ``source``: a ``.npy``, ``.npz`` (its only array, the one named
    ``name``, or ``file.npz:key``) or ``.json`` file, or inline JSON.

    Example:
        >>> load_tensor("input", "[[0.5, 1.0]]")
        array([[0.5, 1. ]])
        >>> load_tensor("target", '{"dtype": "float32", "shape": [2], "data": [0, 1]}')
        array([0., 1.], dtype=float32)
    """
    path, _, key = source.rpartition(":") if ".npz:" in source else (source, "", "")
    file = Path(path)
    try:
        if file.suffix == ".npy" and file.is_file():
            array: np.ndarray = np.load(file, allow_pickle=False)
            return array
        if file.suffix == ".npz" and file.is_file():
            arrays = _npz_arrays(file)
            chosen = key or (name if name in arrays else
                             next(iter(arrays)) if len(arrays) == 1 else "")
            if chosen not in arrays:
                raise UsageError(f"--{name}: {file} holds {', '.join(arrays) or 'no array'}; "
                                 f"name one as {file}:KEY")
            return arrays[chosen]
        if file.suffix == ".json" and file.is_file():
            return _json_tensor(name, json.loads(file.read_text()))
    except (OSError, ValueError) as error:
        raise UsageError(f"--{name}: cannot read {source}: {error}") from None
    if file.suffix in (".npy", ".npz", ".json"):
        raise UsageError(f"--{name}: no such file: {file}")
    try:
        value = json.loads(source)
    except ValueError:
        raise UsageError(f"--{name}: {source} is neither a .npy, .npz or .json file nor "
                         f"JSON") from None
    return _json_tensor(name, value)


def _json_tensor(name: str, value: Any) -> np.ndarray:  # noqa: ANN401 - parsed JSON
    """A JSON tensor: nested lists (or a number), or ``{"dtype", "shape", "data"}``."""
    try:
        if isinstance(value, dict):
            return np.asarray(value["data"], dtype=value["dtype"]).reshape(value["shape"])
        if isinstance(value, (list, int, float)) and not isinstance(value, bool):
            return np.asarray(value)
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"--{name}: not a tensor: {error}") from None
    raise UsageError(f"--{name}: expected nested lists of numbers or "
                     f'{{"dtype", "shape", "data"}}; got {type(value).__name__}')


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``-o key=value`` pairs as options: JSON scalars where they parse, strings otherwise.

    Example:
        >>> parse_options(["reduction=sum", "ignore_index=1", "label_smoothing=0.1",
        ...                "log_target=true"])
        {'reduction': 'sum', 'ignore_index': 1, 'label_smoothing': 0.1, 'log_target': True}
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"-o {pair}: expected KEY=VALUE")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        options[key] = value if isinstance(value, (bool, int, float)) or value is None else text
    return options


def to_json(array: np.ndarray) -> Any:  # noqa: ANN401 - a JSON value
    """A number or nested lists, non-finite numbers as ``"NaN"``/``"Infinity"``/``"-Infinity"``
    (the wire's JSON mapping), float32 values in their shortest form.

    Example:
        >>> to_json(np.array([0.1, np.nan, -np.inf], dtype=np.float32))
        [0.1, 'NaN', '-Infinity']
    """
    def number(value: Any) -> Any:  # noqa: ANN401 - a NumPy scalar
        if isinstance(value, np.floating):
            if not math.isfinite(value):
                return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return float(str(value))  # float32's shortest repr, not its float64 expansion
        return value.item()

    def walk(a: np.ndarray) -> Any:  # noqa: ANN401 - a JSON value
        return number(a[()]) if a.ndim == 0 else [walk(row) for row in a]

    return walk(np.asarray(array))
