"""Compatibility layers: other runtimes' public APIs, built on abstractrt's kernel and stores.

``abstractrt_cli.compat.abstractruntime`` mirrors AbstractRuntime 0.2.0's module tree so
code written for it moves over with one line (see that package's docstring). Nothing
here is a second runtime: every run is ticked by ``abstractrt_cli.core.runtime.Runtime``
and kept by ``abstractrt_cli.storage``'s stores; this package only adapts names,
signatures and defaults where AbstractRuntime's differ.
"""
