"""The README's configuration table, generated from the settings model (a test keeps them in step).

`python -m connector.commands.configdoc` prints it; `--write README.md` replaces the marked block.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from connector.config import ENV_PREFIX, PlatformSettings, PlatformsSettings, Settings

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def _rows(model: type[BaseModel], prefix: str, only: set[str] | None = None) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if only is not None and name not in only:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation is not PlatformsSettings:
                rows += _rows(annotation, f"{prefix}{name.upper()}__")
            continue
        rows.append(f"| `{prefix}{name.upper()}` | {_default(field)} | {field.description or ''} |")
    return rows


def render() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += _rows(Settings, ENV_PREFIX)
    lines.append("")
    lines.append(
        f"Per platform, `NAME` one of {', '.join(f'`{n.upper()}`' for n in PlatformsSettings.model_fields)}:"
    )
    lines.append("")
    lines += ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += _rows(PlatformSettings, f"{ENV_PREFIX}PLATFORMS__NAME__")
    lines.append("")
    lines.append("Platform-specific settings and defaults:")
    lines.append("")
    lines += ["| variable | default | meaning |", "| --- | --- | --- |"]
    base = PlatformSettings.model_fields
    for name, field in PlatformsSettings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, PlatformSettings)
        own = {
            n
            for n, f in model.model_fields.items()
            if n not in base or f.get_default() != base[n].get_default()
        }
        lines += _rows(model, f"{ENV_PREFIX}PLATFORMS__{name.upper()}__", own)
    return "\n".join(lines) + "\n"


def replace_block(text: str, table: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: list[str]) -> int:
    table = render()
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_block(path.read_text(encoding="utf-8"), table), encoding="utf-8")
        return 0
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
