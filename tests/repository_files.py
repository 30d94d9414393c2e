"""A playbook repository as people write them, made by tests: a role with handlers and templates, a
filter plugin, group_vars with a vault-encrypted variable, an ansible.cfg, and a requirements.yml that
names a role tarball kept in the repository; and bare git repositories to fetch it from."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

VAULT_PASSWORD = "repository-Vault-42"
SECRET_WORD = "open-sesame"

FILES = {
    "ansible.cfg": "[defaults]\ninterpreter_python = auto_silent\nretry_files_enabled = False\n",
    "site.yml": """\
- name: configure the web hosts
  hosts: web
  gather_facts: false
  roles:
    - webapp
    - vendored_tools
""",
    "all.yml": "- import_playbook: site.yml\n",
    "tasks_only.yml": "- name: a task\n  ansible.builtin.debug:\n    msg: hi\n",
    "vars.yml": "greeting: hello\n",
    "broken.yml": "- hosts: all\n  tasks: [\n",
    "inventories/lab.ini": "[web]\nlab-a\nlab-b\n",
    "group_vars/all/main.yml": "out_dir: /tmp/opsflow-repo-test\ngreeting: hello from group_vars\n",
    "filter_plugins/shout.py": """\
def shout(text):
    return str(text).upper() + "!"


class FilterModule:
    def filters(self):
        return {"shout": shout}
""",
    "roles/webapp/tasks/main.yml": """\
- name: write the config
  ansible.builtin.template:
    src: app.conf.j2
    dest: "{{ out_dir }}/{{ run_tag }}-{{ inventory_hostname }}.conf"
    mode: "0600"
  notify: config changed
  tags: [config]
- name: write the secret
  ansible.builtin.copy:
    content: "{{ secret_word }}"
    dest: "{{ out_dir }}/{{ run_tag }}-{{ inventory_hostname }}.secret"
    mode: "0600"
  tags: [secret]
- name: write the payload
  ansible.builtin.copy:
    content: "{{ payload | default('none') }}"
    dest: "{{ out_dir }}/{{ run_tag }}-{{ inventory_hostname }}.payload"
    mode: "0600"
  tags: [payload]
""",
    "roles/webapp/handlers/main.yml": """\
- name: config changed
  ansible.builtin.copy:
    content: "handled\\n"
    dest: "{{ out_dir }}/{{ run_tag }}-{{ inventory_hostname }}.handled"
    mode: "0600"
""",
    "roles/webapp/templates/app.conf.j2": (
        "greeting = {{ greeting | shout }}\nhost = {{ inventory_hostname }}\n"
    ),
}
TOOLS_ROLE = {
    "tools/meta/main.yml": "galaxy_info:\n  author: tests\n  description: vendored tools\n  license: MIT\n"
    "  min_ansible_version: '2.15'\n",
    "tools/tasks/main.yml": "- name: vendored role ran\n  ansible.builtin.copy:\n    content: vendored\n"
    '    dest: "{{ out_dir }}/{{ run_tag }}-{{ inventory_hostname }}.vendored"\n',
}
REQUIREMENTS = "- src: roles/vendor/tools.tar.gz\n  name: vendored_tools\n"


def vault_encrypted(value: str, password: str = VAULT_PASSWORD) -> str:
    from ansible.parsing.vault import VaultLib, VaultSecret

    text = VaultLib([("default", VaultSecret(password.encode()))]).encrypt(value).decode()
    return "!vault |\n" + "".join(f"  {line}\n" for line in text.splitlines())


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_site(root: Path, extra: dict[str, str] | None = None) -> Path:
    """The repository's files under `root`."""
    files = {
        **FILES,
        "group_vars/all/vault.yml": f"secret_word: {vault_encrypted(SECRET_WORD)}",
        "roles/requirements.yml": REQUIREMENTS,
        **(extra or {}),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "roles" / "vendor").mkdir(parents=True, exist_ok=True)
    (root / "roles" / "vendor" / "tools.tar.gz").write_bytes(tarball(TOOLS_ROLE))
    return root


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=tests", "-c", "user.email=tests@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


class BareRepository:
    """A bare git repository (file://), and a work tree that commits and pushes to it."""

    def __init__(self, where: Path) -> None:
        self.bare = where / "remote.git"
        self.work = where / "work"
        self.work.mkdir(parents=True)
        git(where, "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        git(self.work, "init", "--quiet", "--initial-branch=main")
        git(self.work, "remote", "add", "origin", str(self.bare))

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def commit(self, message: str, files: dict[str, str | None] | None = None, force: bool = False) -> str:
        """Commit these changes (None deletes a file) and push main; returns the commit id."""
        for name, text in (files or {}).items():
            path = self.work / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "--quiet", "--allow-empty", "-m", message)
        git(self.work, "push", "--quiet", *(["--force"] if force else []), "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def reset_to(self, commit: str) -> None:
        """Move main back to an earlier commit, as a force push does."""
        git(self.work, "reset", "--quiet", "--hard", commit)
        git(self.work, "push", "--quiet", "--force", "origin", "main")
