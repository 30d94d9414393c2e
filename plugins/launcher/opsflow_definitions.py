"""Ansible's own definition files, parsed once and read back as JSON by every run.

Every ansible-playbook parses two YAML files that change only with Ansible itself: its configuration
definitions (config/base.yml) and the routing of ansible.builtin (config/ansible_builtin_runtime.yml).
PyYAML's parse of them was about a sixth of a short run's CPU, before its first task (see
docs/performance.md). A worker writes a JSON copy of each once, when it starts (`python
opsflow_definitions.py DIRECTORY`), named by the SHA-256 of the bytes it parsed, and only when the copy
reads back as exactly the parsed value. The runs' ansible-playbook (the `ansible-playbook` beside this
file) reads the copy named by the bytes it has just read, and parses the file itself when there is none:
a changed Ansible finds no copy, and a run never writes one.

Imports nothing from the Opsflow service, and Ansible only when asked to.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

DIRECTORY_VAR = "OPSFLOW_ANSIBLE_DEFINITIONS"


def copy_path(directory: str, raw: bytes) -> str:
    return os.path.join(directory, hashlib.sha256(raw).hexdigest() + ".json")


def read_copy(raw: bytes) -> Any:
    """The parsed value of `raw` when a copy of it was written, else None."""
    directory = os.environ.get(DIRECTORY_VAR)
    if not directory:
        return None
    try:
        with open(copy_path(directory, raw), "rb") as copy:
            return json.loads(copy.read())
    except (OSError, ValueError):
        return None


def identical(parsed: Any, copied: Any) -> bool:
    """Whether `copied` is `parsed` down to each value's type (JSON would read a tuple back as a list,
    an integer key as a string)."""
    if type(parsed) is not type(copied):
        return False
    if isinstance(parsed, dict):
        return list(parsed) == list(copied) and all(identical(parsed[key], copied[key]) for key in parsed)
    if isinstance(parsed, list):
        return len(parsed) == len(copied) and all(map(identical, parsed, copied))
    return parsed == copied


def parsers() -> dict[str, Callable[[bytes], Any]]:
    """Each definition file by its path, with the parse ansible-playbook makes of it."""
    import ansible
    from ansible.module_utils.common.yaml import yaml_load
    from ansible.utils.collection_loader._collection_meta import _meta_yml_to_dict

    config = os.path.join(os.path.dirname(ansible.__file__), "config")
    return {
        os.path.join(config, "base.yml"): lambda raw: yaml_load(raw) or {},
        os.path.join(config, "ansible_builtin_runtime.yml"): lambda raw: _meta_yml_to_dict(
            raw, ("ansible.builtin", "runtime.yml")
        ),
    }


def write_copies(directory: str) -> list[str]:
    """Write the copy of each definition file that has none yet; the paths of the copies there are."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    written = []
    for path, parse in parsers().items():
        with open(path, "rb") as source:
            raw = source.read()
        target = copy_path(directory, raw)
        if not os.path.exists(target):
            parsed = parse(raw)
            text = json.dumps(parsed)
            if not identical(parsed, json.loads(text)):
                continue
            partial = f"{target}.{os.getpid()}"
            with open(partial, "w", encoding="utf-8") as copy:
                copy.write(text)
            os.replace(partial, target)
        written.append(target)
    return written


def install() -> None:
    """Make this ansible-playbook read the copies: through the collection loader's hook for parsing a
    collection's routing (it is there to be replaced), and the configuration's reader of its
    definitions. An Ansible without them runs as it is."""
    try:
        from ansible.config.manager import ConfigManager
        from ansible.utils.collection_loader import _collection_finder
    except ImportError:
        return

    parse_routing = getattr(_collection_finder, "_meta_yml_to_dict", None)
    parse_definitions = getattr(ConfigManager, "_read_config_yaml_file", None)

    def routing(yaml_string_data: bytes | str, content_id: Any) -> Any:
        raw = yaml_string_data if isinstance(yaml_string_data, bytes) else yaml_string_data.encode()
        copied = read_copy(raw)
        return copied if copied is not None else parse_routing(yaml_string_data, content_id)

    def definitions(self: ConfigManager, yml_file: str | bytes) -> Any:
        try:
            with open(yml_file, "rb") as source:
                copied = read_copy(source.read())
        except OSError:
            copied = None
        return copied if copied is not None else parse_definitions(self, yml_file)

    if parse_routing is not None:
        _collection_finder._meta_yml_to_dict = routing
    if parse_definitions is not None:
        ConfigManager._read_config_yaml_file = definitions


if __name__ == "__main__":
    for written in write_copies(sys.argv[1]):
        print(written)
