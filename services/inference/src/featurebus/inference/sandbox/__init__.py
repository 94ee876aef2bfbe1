"""The plugin sandbox: every piece of plugin code runs in a kernel-confined child process.

- :mod:`~featurebus.inference.sandbox.policy`: what the child may see and do; its command line.
- :mod:`~featurebus.inference.sandbox.supervisor`: the trusted side, in the Ray actor: starts the
  child, sends it frames and queries, brokers its blob reads, enforces the CPU budget.
- :mod:`~featurebus.inference.sandbox.child`: the untrusted side's bootstrap (limits, seccomp,
  guard, then the plugin).
"""
