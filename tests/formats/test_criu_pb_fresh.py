"""The committed criu_model/formats/criu/pb/*_pb2.py must match protos/criu/."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

from tests.images.test_pb_fresh import _descriptor

ROOT = Path(__file__).resolve().parents[2]
PB_DIR = ROOT / "criu_model" / "formats" / "criu" / "pb"


def _load_generator():
    loader = importlib.machinery.SourceFileLoader("gen_criu_protos",
                                                  str(ROOT / "scripts" / "gen_criu_protos"))
    spec = importlib.util.spec_from_loader("gen_criu_protos", loader)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) regenerates the code")
    generated = _load_generator().generate(tmp_path)
    fresh = {p.name: _descriptor(p.read_text()) for p in generated if p.suffix == ".py"}
    committed = {p.name: _descriptor(p.read_text()) for p in PB_DIR.glob("*_pb2.py")}
    assert sorted(fresh) == sorted(committed), "a .proto was added or removed: run " \
                                                "scripts/gen_criu_protos"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code {stale}: run scripts/gen_criu_protos"


def test_every_proto_is_its_own_package() -> None:
    for proto in (ROOT / "protos" / "criu").glob("*.proto"):
        module = importlib.import_module(f"criu_model.formats.criu.pb.{proto.stem}_pb2")
        assert module.DESCRIPTOR.package == "criu_model.criu"
