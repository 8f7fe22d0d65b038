"""The model layer: manifest, integrity check, safe load, Coqui engine.

Modules: ``manifest`` (the manifest's schema), ``pins`` (pinned digests), ``layer`` (verify a
layer folder before any weight is read), ``engine`` (load and run the Coqui ``Vits`` model),
``convert`` and ``piper_onnx`` (build the default layer from the pinned Piper voice wheel).
"""
