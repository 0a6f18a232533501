"""The committed *_pb2.py must match protos/: regenerate and compare."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PB_DIR = ROOT / "criu_model" / "images" / "pb"
SERIALIZED_RE = re.compile(r"AddSerializedFile\((b'.*?')\)\n")


def _load_generator():
    spec = importlib.util.spec_from_loader(
        "gen_protos", importlib.machinery.SourceFileLoader("gen_protos",
                                                          str(ROOT / "scripts" / "gen_protos")))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _descriptor(source: str) -> bytes:
    """The serialized FileDescriptorProto embedded in a generated module.

    Comparing it (not the whole text) tells a stale schema apart from a newer
    grpcio-tools that merely words its template differently.
    """
    match = SERIALIZED_RE.search(source)
    assert match, "generated module without AddSerializedFile"
    value = ast.literal_eval(match.group(1))
    assert isinstance(value, bytes)
    return value


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) regenerates the code")
    generated = _load_generator().generate(tmp_path)
    fresh = {p.name: _descriptor(p.read_text()) for p in generated if p.suffix == ".py"}
    committed = {p.name: _descriptor(p.read_text()) for p in PB_DIR.glob("*_pb2.py")}
    assert sorted(fresh) == sorted(committed), "a .proto was added or removed: run gen_protos"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code {stale}: run scripts/gen_protos"


def test_every_proto_is_imported_by_the_package() -> None:
    protos = {p.stem for p in (ROOT / "protos" / "criu_model" / "v1").glob("*.proto")}
    for stem in protos:
        module = importlib.import_module(f"criu_model.images.pb.{stem}_pb2")
        assert module.DESCRIPTOR.package == "criu_model.v1"
