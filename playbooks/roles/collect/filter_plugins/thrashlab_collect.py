# Filters of the collect role.
from __future__ import annotations


def thrashlab_host_errors(hosts, hostvars):
    """`--host-error NAME=MESSAGE` arguments for the machines whose case play
    recorded a failure (case_runner_error, set by the case roles' rescue)."""
    out = []
    for name in hosts or []:
        try:
            err = hostvars[name].get("case_runner_error")
        except (KeyError, AttributeError):
            err = None
        if err:
            out += ["--host-error", "%s=%s" % (name, " ".join(str(err).split()))]
    return out


class FilterModule:
    def filters(self):
        return {"thrashlab_host_errors": thrashlab_host_errors}
