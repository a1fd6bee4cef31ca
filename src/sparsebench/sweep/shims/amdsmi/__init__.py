"""Stands in for an `amdsmi` package that cannot load its library.

zeus installs `amdsmi`, which raises KeyError (not ImportError) on import where AMD's
libamd_smi.so is absent; Ray probes for AMD GPUs with `import amdsmi` and only survives
an ImportError. The Ray executor puts this folder first on the path of the Ray processes
it starts, on such machines only.
"""

raise ImportError("amdsmi is unusable here: libamd_smi.so is not installed")
