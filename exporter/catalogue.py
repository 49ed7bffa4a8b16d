"""The optional flow catalogue: names, owners and expected intervals of known flows (YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from exporter.domain import ExporterError, FlowKey
from exporter.durations import parse_duration


class CatalogueError(ExporterError):
    """The catalogue file cannot be read or is invalid; the message names the file and entry."""


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


_Label = Annotated[str, Field(max_length=200)]


class CatalogueEntry(BaseModel):
    """One catalogued flow."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flow_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
    sandbox: Annotated[str, Field(min_length=1, max_length=128)]
    name: _Label = ""
    owner: _Label = ""
    source: _Label = ""
    severity: _Label = ""
    expected_interval: Annotated[float | None, BeforeValidator(_duration), Field(gt=0)] = None

    @property
    def key(self) -> FlowKey:
        """The flow this entry describes."""
        return FlowKey(self.sandbox, self.flow_id)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    flows: list[CatalogueEntry] = Field(default_factory=list)


class Catalogue:
    """Catalogued flows by (sandbox, flow id); empty when no file is configured."""

    def __init__(self, entries: list[CatalogueEntry] | None = None) -> None:
        self.entries: dict[FlowKey, CatalogueEntry] = {e.key: e for e in entries or []}

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: FlowKey) -> CatalogueEntry | None:
        """The entry of a flow, if catalogued."""
        return self.entries.get(key)


def load_catalogue(path: Path | None) -> Catalogue:
    """Read and validate the catalogue file (an empty catalogue when path is None)."""
    if path is None:
        return Catalogue()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogueError(f"catalogue {path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogueError(f"catalogue {path}: not valid YAML: {exc}") from None
    try:
        parsed = _File.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CatalogueError(f"catalogue {path}: {where}: {first['msg']}") from None
    seen: set[FlowKey] = set()
    for entry in parsed.flows:
        if entry.key in seen:
            raise CatalogueError(
                f"catalogue {path}: flow {entry.flow_id} in sandbox {entry.sandbox} listed twice"
            )
        seen.add(entry.key)
    return Catalogue(parsed.flows)
