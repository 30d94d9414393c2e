"""`copy`, trusting the source's SHA-1 it is given instead of hashing the source again for every host.

Ansible's copy hashes the controller's file once per host to compare it with the target's. Opsflow
knows each file's SHA-1 already (recorded at upload, or once per slice for fetched files), so pushing
one file to many hosts reads it from disk only to send it. The target still checks the received bytes
against that SHA-1 before renaming them into place, and an identical file on the target is left
unchanged. Imports nothing from the Opsflow service.
"""

from __future__ import annotations

from ansible.plugins.action import copy as builtin_copy

DOCUMENTATION = """
    name: opsflow_copy
    short_description: copy with a known source checksum
    description:
      - The arguments of ansible.builtin.copy; C(checksum), the source's SHA-1, is required.
"""


class ActionModule(builtin_copy.ActionModule):
    def run(self, tmp=None, task_vars=None):
        known = self._task.args.get("checksum")
        if not known:
            return {"failed": True, "msg": "opsflow_copy needs the checksum (SHA-1) of its source"}
        hash_source = builtin_copy.checksum
        # Worker processes run one host's task each: the substitution never reaches another task.
        builtin_copy.checksum = lambda path, *args, **kwargs: known
        try:
            return super().run(tmp, task_vars)
        finally:
            builtin_copy.checksum = hash_source
