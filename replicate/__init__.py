"""replicate: why Adam makes large language models' training loss spike, replicated at small scale.

Modules: ``train`` (the one loop), ``optim`` (transforms, variants, the torch.optim wrapper),
``models``, ``data``, ``results`` (run folders, ``load()``), ``report`` (figures).
"""

__version__ = "0.1.0"
