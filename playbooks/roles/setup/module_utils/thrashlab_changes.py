# What one of the role's modules does to a machine, in order, and the check
# mode that only lists it. Shared by the swap helpers and the machine module.
from __future__ import annotations


class Changes:
    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.actions = []

    def note(self, what):
        """Record an action; True when it must also be done (not in check mode)."""
        self.actions.append(what)
        return not self.check

    def run(self, argv, what, ignore_errors=False):
        if self.note(what):
            rc, out, err = self.module.run_command(argv)
            if rc != 0 and not ignore_errors:
                self.fail("%s failed (rc=%d): %s" % (" ".join(argv), rc, (err or out).strip()))

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, actions=self.actions, **extra)
